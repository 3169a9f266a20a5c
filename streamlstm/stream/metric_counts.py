"""Metric counts kept where readings are scored, shipped to one exporter as plain data.

``MetricCounts`` implements the worker loop's ``Metrics`` hooks with counters and fixed-bucket
histograms in plain Python/numpy. A Ray worker ``drain``s it (the counts since the last
drain) for the supervisor, which adds the deltas up and serves them to Prometheus
(``adapters/ops/prometheus.py``). Deltas, not running totals, so a restarted worker never makes a
counter go backwards. Labels are closed sets (outcome, reason, event, severity): nothing
here ever sees a stream id.

These are at least once: what a process counted after its last drain dies with it, and a
replay after a restart observes its scores and latencies again. The outcome counters
(records, readings, dead letters, alert events) are not here but in the partitions' ledgers
(``stream/ledger.py``), saved with the snapshots: exact across restarts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

# Upper bounds (le) of the histogram buckets; +Inf is implied. docs/metrics.md lists them.
SCORE_BUCKETS = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 12.0, 15.0, 20.0, 30.0, 50.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SNAPSHOT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BUCKETS = {"score": SCORE_BUCKETS, "latency": LATENCY_BUCKETS, "snapshot": SNAPSHOT_BUCKETS}


class Histogram:
    """Counts per bucket (non-cumulative, last = +Inf), sum and count."""

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = np.asarray(bounds)
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)
        self.sum = 0.0

    def observe(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            # side="left": a value equal to a bound falls in that bucket (le is inclusive).
            self.counts += np.bincount(
                np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts)
            )
            self.sum += float(values.sum())

    def add(self, counts: list[int], total: float) -> None:
        self.counts += np.asarray(counts, dtype=np.int64)
        self.sum += total

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs as Prometheus exposes them, +Inf last."""
        cum = np.cumsum(self.counts)
        les = [repr(float(b)) for b in self.bounds] + ["+Inf"]
        return list(zip(les, (int(c) for c in cum), strict=True))

    @property
    def count(self) -> int:
        return int(self.counts.sum())


class MetricCounts:
    """The worker loop's ``Metrics``: thread-safe (the loop writes, a stats call drains)."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self.wall_clock = wall_clock  # stamps the last commit (epoch seconds)
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.counters: dict[tuple[str, tuple[str, ...]], float] = {}
        self.histograms = {name: Histogram(b) for name, b in BUCKETS.items()}
        self.last_commit_at: float | None = None  # epoch seconds; survives drains

    def _inc(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        key = (name, labels)
        self.counters[key] = self.counters.get(key, 0.0) + amount

    # --- the Metrics hooks --------------------------------------------------------------
    def checkpointed(self, seconds: float, committed: dict) -> None:
        with self._lock:
            self.histograms["snapshot"].observe(np.array([seconds]))
            self.last_commit_at = self.wall_clock()

    def latencies(self, seconds: np.ndarray) -> None:
        with self._lock:
            self.histograms["latency"].observe(seconds)

    def scores(self, values: np.ndarray) -> None:
        with self._lock:
            self.histograms["score"].observe(values)

    def restored(self, result: str, count: int = 1) -> None:
        with self._lock:
            self._inc("restores", (result,), count)

    def snapshot_failed(self) -> None:
        with self._lock:
            self._inc("snapshot_failures", ())

    def dead_letter_failed(self, reason: str) -> None:
        with self._lock:
            self._inc("dlq_failures", (reason,))

    def evicted(self, count: int) -> None:
        with self._lock:
            self._inc("evicted_streams", (), count)

    def fenced(self) -> None:
        """The actor's loop stopped on a stale generation (not a loop hook: ops/fencing.py)."""
        with self._lock:
            self._inc("fenced", ())

    # --- shipping -----------------------------------------------------------------------
    def drain(self) -> dict[str, Any]:
        """Counts since the previous drain, as plain lists and numbers (cheap to send)."""
        with self._lock:
            out = {
                "counters": [
                    [name, list(labels), v] for (name, labels), v in self.counters.items()
                ],
                "histograms": {
                    name: [h.counts.tolist(), h.sum] for name, h in self.histograms.items()
                },
                "last_commit_at": self.last_commit_at,
            }
            last = self.last_commit_at
            self._reset()
            self.last_commit_at = last
        return out
