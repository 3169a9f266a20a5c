"""Wiring for ``streamlstm run`` and the demo: Kafka (existing or local), topics, the first
model (cold start), Ray and the supervisor loop with signal-driven draining."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from streamlstm.adapters.kafka.topics import input_partitions
from streamlstm.adapters.ops.metrics_feed import MetricsFeed
from streamlstm.adapters.ops.scale_control import ScaleControl
from streamlstm.adapters.ray.retrain_schedule import RetrainSchedule
from streamlstm.adapters.ray.serving_report import REPORT_S, report_serving
from streamlstm.adapters.ray.supervisor import Supervisor, init_ray
from streamlstm.config import Config

log = logging.getLogger(__name__)


PARTITION_CHECK_S = 30.0  # how often the supervisor looks for new input partitions
REGISTRY_CHECK_S = 5.0  # how often it looks for a newly promoted model version
SCALE_CHECK_S = 2.0  # how often it reads the operator's worker count (`streamlstm scale`)


def _swap_if_promoted(sup, registry, groups: list[str], served: dict, files: dict):
    """Stage the registry's current versions that differ from the served ones."""
    now = {g: registry.current(g) for g in groups}
    changed = [g for g in groups if now[g] and now[g] != served.get(g)]
    if not changed:
        return files, served
    fresh = registry.current_files(changed)
    log.warning("promoted %s: warming in shadow, then switching", [now[g] for g in changed])
    sup.stage(fresh)
    return {**files, **fresh}, now


class ScaleWatch:
    """The operator's worker count (``streamlstm scale``): the count to run, and whether a
    new request arrived since the last look (a refused one is not retried every poll)."""

    def __init__(self, config: Config) -> None:
        self.control = ScaleControl(config.checkpoint.dir, config.kafka.group_id)
        self.default = config.ray.workers
        self.seen = self.control.requested()
        if self.seen is not None:
            log.warning(
                "workers: %d, as `streamlstm scale` asked (by %s; ray.workers says %d)",
                self.seen["workers"],
                self.seen.get("by"),
                self.default,
            )

    def wanted(self) -> int:
        return self.seen["workers"] if self.seen else self.default

    def changed(self) -> bool:
        now = self.control.requested()
        if now == self.seen:
            return False
        self.seen = now
        log.warning(
            "scale request: %d workers (%s)",
            self.wanted(),
            f"by {now.get('by')}" if now else "request cleared: ray.workers",
        )
        return True


def _start(sup) -> None:
    for info in sup.start():
        log.info(
            "worker %s on %s (node %s) starts at %s",
            info["worker"],
            info["device"],
            info.get("node"),
            info["starts"],
        )


class StopFlag:
    """Set by SIGINT/SIGTERM (or a caller); the supervisor loop then drains and returns."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.event.set())


def supervise(
    config: Config,
    bootstrap: str,
    files: dict,
    stop: StopFlag,
    duration_s: float | None = None,
    on_status: Callable[[list[dict]], None] | None = None,
    status_every_s: float = 5.0,
    registry: Any = None,
) -> dict[str, Any]:
    """Run the workers until ``stop`` (or ``duration_s``); drain; return final numbers.

    With a ``registry``, a newly promoted version (by ``streamlstm retrain``, ``models
    promote`` or ``rollback``) is hot-swapped into the running workers.
    """

    init_ray(config)
    stop.install()  # after ray.init, which installs its own SIGTERM handler
    partitions = input_partitions(config, bootstrap)
    feed = _metrics_feed(config, bootstrap)  # first: a taken port fails fast
    scale = ScaleWatch(config)
    sup = Supervisor(config, bootstrap, files, partitions)
    sup.workers = scale.wanted()
    started_at = time.monotonic()
    _start(sup)
    last_status = last_check = last_registry = last_scale = started_at
    last_report = started_at - REPORT_S  # the first report goes out at once
    groups = [g.name for g in config.groups]
    served = {g: registry.current(g) for g in groups} if registry else {}
    schedule = _schedule(config, bootstrap, registry)
    undrained: list[int] = []  # workers whose drain failed, over every re-plan
    while not stop.event.is_set():
        now = time.monotonic()
        if duration_s is not None and now - started_at >= duration_s:
            break
        for note in sup.watch():
            log.warning(note)
        if now - last_check >= PARTITION_CHECK_S:
            last_check = now
            current = input_partitions(config, bootstrap)
            if current != partitions:  # topics grew: re-plan; state follows the partitions
                log.warning(
                    "input partitions changed (%d -> %d): reassigning",
                    len(partitions),
                    len(current),
                )
                sup.stop()
                undrained += sup.undrained
                if feed is not None:
                    feed.restarts_before += sup.restarts
                    feed.handoffs_before += sup.handoffs
                partitions = current
                sup = Supervisor(config, bootstrap, files, partitions, sup.generation + 1)
                sup.workers = scale.wanted()
                _start(sup)
        if now - last_scale >= SCALE_CHECK_S:
            last_scale = now
            if scale.changed():
                sup.resize(scale.wanted())
        if schedule is not None:
            schedule.poll()
        if registry is not None and now - last_registry >= REGISTRY_CHECK_S:
            last_registry = now
            files, served = _swap_if_promoted(sup, registry, groups, served, files)
        if registry is not None and now - last_report >= REPORT_S:
            last_report = now  # for `models list`: what each worker serves, what it warms
            report_serving(registry, config.kafka.group_id, sup.actors, served)
        if feed is not None:
            feed.tick(sup, now, files, schedule)
        if on_status and now - last_status >= status_every_s:
            on_status(sup.stats())
            last_status = now
        stop.event.wait(0.5)
    final = sup.stop()
    undrained += sup.undrained
    if feed is not None:
        feed.close()  # stays up while draining: a long drain is visible to the scrape
    return {
        "workers": final,
        "restarts": sup.restarts,
        "undrained": undrained,
        "retired": sup.retired,  # final stats of workers removed by scale-in
        "handoffs": sup.handoffs,
        "seconds": time.monotonic() - started_at,
        "retrains": schedule.outcomes if schedule is not None else {},
    }


def _metrics_feed(config: Config, bootstrap: str):
    """The Prometheus endpoint (``metrics.enabled``), fed from the workers (``tick``)."""
    if not config.metrics.enabled:
        return None

    feed = MetricsFeed(config, bootstrap)
    log.info("metrics on http://%s:%d/metrics", config.metrics.host, feed.port)
    return feed


def _schedule(config: Config, bootstrap: str, registry: Any):
    """Scheduled retraining needs a registry to promote into (not with a fixed --model)."""
    if registry is None or not config.retrain.enabled:
        return None

    return RetrainSchedule(config, bootstrap, registry)
