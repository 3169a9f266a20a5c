"""Health that tells the truth: per-partition progress, readiness, and the HTTP endpoints.

A worker's actor answering is not a worker scoring (issue 18: during a crash loop
``workers_up`` stayed green and so did probes on ``/metrics``). So each worker tracks, per
assigned partition, when its loop last polled and when it last committed, and the
supervisor's endpoint answers:

- ``/healthz``: the process is up (liveness: restarting it would not help otherwise);
- ``/readyz``: every input partition was polled within ``ray.heartbeat_timeout_s`` and has
  no records read but left uncommitted for longer than ``checkpoint.max_uncommitted_s``
  (an idle partition has nothing to commit, so it stays ready);
- ``/metrics``: Prometheus, as before.

The times are the workers' wall clocks as last reported to the supervisor: a supervisor
that stops pulling reports goes unready too.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

TP = tuple[str, int]


@dataclass(frozen=True)
class PartitionHealth:
    """One partition's progress as its worker last saw it (epoch seconds)."""

    polled_at: float
    committed_at: float | None  # None: no commit by this worker process yet
    uncommitted: int  # records read past the last commit (or the restored position)
    uncommitted_since: float | None  # when the oldest of those was read; None when 0

    def merged(self, older: PartitionHealth | None) -> PartitionHealth:
        """This report, keeping a commit time an earlier owner (or process) reported."""
        if older is None or older.committed_at is None:
            return self
        newest = max(older.committed_at, self.committed_at or 0.0)
        return PartitionHealth(self.polled_at, newest, self.uncommitted, self.uncommitted_since)


class PartitionProgress:
    """The actor's side: call ``polled`` after each poll of the loop (thread-safe reads)."""

    def __init__(self, starts: dict[TP, int], checkpoints: int) -> None:
        self._lock = threading.Lock()
        self._committed = dict(starts)  # the restored position counts as committed
        self._checkpoints = checkpoints  # the loop's checkpoint count when last seen
        self._health: dict[TP, PartitionHealth] = {}

    def polled(self, now: float, positions: dict[TP, int], checkpoints: int) -> None:
        """``positions``: the next offset per partition after the poll; ``checkpoints``:
        the loop's count of completed checkpoints (a new one committed ``positions``)."""
        committed_now = checkpoints != self._checkpoints
        self._checkpoints = checkpoints
        with self._lock:
            for tp, position in positions.items():
                old = self._health.get(tp)
                committed_at = old.committed_at if old else None
                if committed_now:
                    self._committed[tp], committed_at = position, now
                uncommitted = max(0, position - self._committed.get(tp, 0))
                since = None
                if uncommitted:
                    since = old.uncommitted_since if old and old.uncommitted_since else now
                self._health[tp] = PartitionHealth(now, committed_at, uncommitted, since)

    def report(self) -> list[list]:
        """Plain rows for the supervisor: [topic, partition, polled_at, committed_at,
        uncommitted, uncommitted_since]."""
        with self._lock:
            return [
                [t, p, h.polled_at, h.committed_at, h.uncommitted, h.uncommitted_since]
                for (t, p), h in self._health.items()
            ]


def from_report(rows: Iterable[list]) -> dict[TP, PartitionHealth]:
    return {(t, int(p)): PartitionHealth(*rest) for t, p, *rest in rows}


def unready(
    expected: Iterable[TP],
    health: dict[TP, PartitionHealth],
    now: float,
    poll_deadline_s: float,
    commit_deadline_s: float,
) -> list[str]:
    """Why the pipeline is not ready (one line per partition at fault); empty: ready."""
    out = []
    for tp in sorted(expected):
        where = f"{tp[0]}:{tp[1]}"
        h = health.get(tp)
        if h is None:
            out.append(f"{where}: not polled yet")
        elif now - h.polled_at > poll_deadline_s:
            out.append(f"{where}: last poll {now - h.polled_at:.0f} s ago")
        elif h.uncommitted_since is not None and now - h.uncommitted_since > commit_deadline_s:
            out.append(
                f"{where}: {h.uncommitted} records read but uncommitted for "
                f"{now - h.uncommitted_since:.0f} s"
            )
    return out


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:
        """Probes every few seconds would flood the log."""


def health_app(registry: CollectorRegistry, why_unready: Callable[[], list[str]]):
    """A WSGI app: ``/healthz``, ``/readyz`` (503 with the reasons), anything else metrics."""
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            reasons = why_unready()
            if reasons:
                return _text(start_response, "503 Service Unavailable", "\n".join(reasons) + "\n")
            return _text(start_response, "200 OK", "ready\n")
        return metrics(environ, start_response)

    return app


def _text(start_response, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def serve_health(
    registry: CollectorRegistry, why_unready: Callable[[], list[str]], host: str, port: int
):
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on host:port from a daemon thread;
    returns (server, thread)."""

    class Server(ThreadingWSGIServer):
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    httpd = make_server(host, port, health_app(registry, why_unready), Server, _QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="metrics-http")
    thread.start()
    return httpd, thread


def partition_families(health: dict[TP, PartitionHealth], prefix: str) -> list:
    """The per-partition gauges (labels topic, partition: bounded by the input partitions)."""
    from prometheus_client.core import GaugeMetricFamily

    labels = ["topic", "partition"]
    polled = GaugeMetricFamily(
        prefix + "partition_last_poll_timestamp_seconds",
        "When the partition's worker loop last polled",
        labels=labels,
    )
    committed = GaugeMetricFamily(
        prefix + "partition_last_commit_timestamp_seconds",
        "When the partition's offsets were last committed",
        labels=labels,
    )
    waiting = GaugeMetricFamily(
        prefix + "partition_uncommitted_records",
        "Records read from the partition but not committed yet",
        labels=labels,
    )
    for (topic, partition), h in sorted(health.items()):
        names = [topic, str(partition)]
        polled.add_metric(names, h.polled_at)
        if h.committed_at is not None:
            committed.add_metric(names, h.committed_at)
        waiting.add_metric(names, h.uncommitted)
    return [polled, committed, waiting]
