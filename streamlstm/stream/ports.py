"""The loop's ports: the small protocols Kafka, snapshot storage and metrics implement at the
edge, the counters it keeps, and the one error a sink may raise to say "never deliverable".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from streamlstm.records import RawRecord

TP = tuple[str, int]  # (topic, partition)


class UndeliverableRecord(Exception):
    """A sink can never deliver this one record (e.g. larger than the producer allows):
    retrying, or restarting onto it, would fail the same way. Transient failures (broker
    down) raise anything else, and the worker restarts and replays."""


class Source(Protocol):
    def poll(self, timeout_s: float, max_records: int) -> list[RawRecord]: ...
    def seek(self, topic: str, partition: int, offset: int) -> None: ...
    def commit(self, offsets: dict[TP, int]) -> None: ...


class Sink(Protocol):
    def send_alert(self, key: bytes, value: bytes) -> None: ...
    def send_dlq(self, record: RawRecord, stage: str, reason: str) -> None: ...
    def flush(self, timeout_s: float) -> None: ...


class SnapshotStore(Protocol):
    def save(self, tp: TP, blobs: dict[str, bytes], next_offset: int) -> None: ...
    def load(self, tp: TP) -> tuple[dict[str, bytes], int] | None: ...


class Metrics(Protocol):
    """Observer hooks; the Prometheus adapter implements them, tests may count. Outcome
    counts (readings, dead letters, alert events) are not hooks: they are the partitions'
    ledgers (``ledger.py``), exact across restarts; these are at least once."""

    def checkpointed(self, seconds: float, committed: dict[TP, int]) -> None: ...
    def latencies(self, seconds: np.ndarray) -> None: ...
    def scores(self, values: np.ndarray) -> None: ...
    def restored(self, result: str, count: int = 1) -> None: ...
    def snapshot_failed(self) -> None: ...
    def dead_letter_failed(self, reason: str) -> None: ...
    def evicted(self, count: int) -> None: ...


class NoMetrics:
    def checkpointed(self, seconds: float, committed: dict[TP, int]) -> None:
        pass

    def latencies(self, seconds: np.ndarray) -> None:
        pass

    def scores(self, values: np.ndarray) -> None:
        pass

    def restored(self, result: str, count: int = 1) -> None:
        pass

    def snapshot_failed(self) -> None:
        pass

    def dead_letter_failed(self, reason: str) -> None:
        pass

    def evicted(self, count: int) -> None:
        pass


class LatencyWindow:
    """The most recent record latencies (seconds), for quantiles on demand."""

    def __init__(self, size: int = 200_000):
        self.values = np.zeros(size)
        self.count = 0

    def add(self, values: np.ndarray) -> None:
        values = values[-len(self.values) :]
        self.values[(self.count + np.arange(len(values))) % len(self.values)] = values
        self.count += len(values)

    def quantiles(self, qs: tuple[float, ...] = (0.5, 0.99)) -> dict[str, float]:
        n = min(self.count, len(self.values))
        if n == 0:
            return {}
        data = self.values[:n]
        return {f"p{round(q * 100)}": float(np.quantile(data, q)) for q in qs} | {"n": n}

    def reset(self) -> None:
        self.count = 0


class StageTimes:
    """Seconds the loop spends in each stage (``bench e2e --profile``): the total and the
    longest single lap, into ``Counters.stage_s`` / ``stage_max_s``. Without a ``timer``
    (seconds, e.g. ``time.perf_counter``, injected like every clock) it measures nothing."""

    def __init__(self, counters: Counters, timer: Callable[[], float] | None = None):
        self.counters, self.timer = counters, timer
        self._last = 0.0
        self.last: str | None = None  # the stage finished last in this poll (poison.py)
        self.on_lap: Callable[[str], None] | None = None  # the flight recorder (flight.py)

    def start(self) -> None:
        self.last = None
        if self.timer is not None:
            self._last = self.timer()

    def lap(self, stage: str) -> None:
        """The time since the last lap (or ``start``) was spent in ``stage``."""
        self.last = stage
        if self.on_lap is not None:
            self.on_lap(stage)
        if self.timer is None:
            return
        now = self.timer()
        spent, self._last = now - self._last, now
        total, longest = self.counters.stage_s, self.counters.stage_max_s
        total[stage] = total.get(stage, 0.0) + spent
        longest[stage] = max(longest.get(stage, 0.0), spent)


@dataclass
class Counters:
    """The loop's own telemetry, kept by the caller across restarts of the loop in one
    process. Outcome counts are not here: they are the partitions' ledgers (``ledger.py``)."""

    replayed: int = 0  # readings a detector skipped as applied already (last_offset)
    checkpoints: int = 0
    swaps: int = 0  # models that took over after their shadow warm-up
    evicted: int = 0  # idle streams dropped from the tables
    polls: int = 0  # polls that returned records
    stage_s: dict[str, float] = field(default_factory=dict)  # see StageTimes
    stage_max_s: dict[str, float] = field(default_factory=dict)
