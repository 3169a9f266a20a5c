"""The supervisor's side of the exporter: pulls worker reports and consumer lag into a
``MetricsHub`` and serves it, with ``/healthz`` and ``/readyz`` (``ops/health.py``)."""

from __future__ import annotations

import time

from prometheus_client.core import CollectorRegistry

from streamlstm.adapters.kafka.client import KafkaSource
from streamlstm.adapters.kafka.options import client_options
from streamlstm.adapters.ops.health import serve_health
from streamlstm.adapters.ops.prometheus import MetricsHub
from streamlstm.config import ConfigError


def serve(hub: MetricsHub, host: str, port: int, why_unready=lambda: []):
    """Serve ``hub`` on http://host:port/metrics beside /healthz and /readyz
    (``ops/health.py``); returns (server, thread) to shut down."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(hub)
    return serve_health(registry, why_unready, host, port)


class MetricsFeed:
    """The supervisor's side of the exporter: pulls worker reports and consumer lag into the
    hub every ``every_s`` and serves it; ``close`` stops serving."""

    def __init__(self, config, bootstrap: str, every_s: float = 2.0):

        self.hub = MetricsHub()
        self.every_s, self.last = every_s, 0.0
        self._known_files: dict | None = None
        self.restarts_before = 0  # restarts of supervisors replaced after a repartition
        self.handoffs_before = 0  # and their hand-offs
        self.source = KafkaSource(
            bootstrap, f"{config.kafka.group_id}-metrics", client_options(config.kafka)
        )
        host, port = config.metrics.host, config.metrics.port
        deadlines = (config.ray.heartbeat_timeout_s, config.checkpoint.max_uncommitted_s)
        try:
            self.server = serve(
                self.hub, host, port, lambda: self.hub.why_unready(time.time(), *deadlines)
            )
        except OSError as exc:
            self.source.close()
            raise ConfigError(
                [
                    f"metrics.port: cannot serve on {host}:{port} ({exc.strerror}); pick "
                    "another port (0: any free one) or set metrics.enabled: false"
                ]
            ) from None

    @property
    def port(self) -> int:
        """The bound port (``metrics.port: 0`` picks a free one)."""
        return self.server[0].server_port

    def tick(self, sup, now: float, files: dict, schedule=None) -> None:
        """Called by the supervisor loop; pulls at most every ``every_s``."""
        if now - self.last < self.every_s:
            return
        self.last = now
        if files is not self._known_files:  # a new model set (a swap): read its cards once
            self.hub.know_models(files)
            self._known_files = files
        if schedule is not None:
            self.hub.set_retrain(
                True,
                schedule.outcomes,
                schedule.last_success_at,
                schedule.paused_groups(),
                schedule.pinned_groups(),
            )
        self.pull(sup)

    def pull(self, sup) -> None:
        self.hub.expected = list(sup.partitions)
        self.hub.know_baselines(sup.ledger_baselines)  # before the reports: see there
        self.hub.add_reports(sup.metrics())
        self.hub.set_restarts(self.restarts_before + sup.restarts)
        self.hub.set_scale(sup.workers, self.handoffs_before + sup.handoffs)
        positions = self.hub.positions()
        if positions:
            ends = self.source.end_offsets(sorted(positions), timeout_s=5)
            self.hub.set_lag(
                {tp: max(0, ends[tp] - o) for tp, o in positions.items() if tp in ends}
            )

    def close(self) -> None:
        server, thread = self.server
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        self.source.close()
