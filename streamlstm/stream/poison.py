"""Poison records: one record that makes the loop fail must not stop its partition forever.

A failure inside a poll restarts the loop (the supervisor, with backoff) onto the same
records. The ledger remembers, across those restarts (it lives in the worker's process, as
its counters do), which record failed and in which stage:

1. a poll of several records fails: the culprit is unknown, so the partitions of that poll
   are read one record at a time up to its last offset (``poll_size``);
2. a poll of one record fails: that record failed that stage once more (another stage
   starts its count again);
3. at ``after`` failures of one stage, the next poll of the record sends it to the DLQ as
   ``poison`` (``is_poison``) and the partition moves past it;
4. a record that goes through is forgotten (``passed``).

Only the pure stages count (``decode``, ``group``, ``step``): a failure while fetching,
producing, snapshotting or committing is the infrastructure's (a broker down), not the
record's, and a healthy record must never be dead-lettered for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamlstm.records import RawRecord

TP = tuple[str, int]
# The stage after the last one the loop finished (``StageTimes.last``): where it failed.
FAILED_IN = {"fetch": "decode", "decode": "group", "group": "step", "step": "alerts"}
RECORD_STAGES = frozenset({"decode", "group", "step"})


@dataclass(frozen=True)
class Failure:
    stage: str
    count: int


class PoisonLedger:
    """Failures per record, across restarts of the loop; ``after`` None turns it off."""

    def __init__(self, after: int | None = 3) -> None:
        self.after = after
        self.one_by_one: dict[TP, int] = {}  # read one record at a time below this offset
        self.failures: dict[tuple[TP, int], Failure] = {}  # (partition, offset) -> failure

    def poll_size(self, max_records: int) -> int:
        """1 while a suspect is not yet behind the loop, else ``max_records``."""
        return 1 if self.one_by_one or self.failures else max_records

    def failed(self, records: list[RawRecord], last_stage: str | None) -> None:
        """The loop failed on ``records`` (one poll) after finishing ``last_stage``."""
        stage = FAILED_IN.get(last_stage or "fetch", last_stage or "decode")
        if self.after is None or stage not in RECORD_STAGES or not records:
            return
        if len(records) > 1:
            for rec in records:
                tp = (rec.topic, rec.partition)
                self.one_by_one[tp] = max(self.one_by_one.get(tp, 0), rec.offset + 1)
            return
        rec = records[0]
        key = ((rec.topic, rec.partition), rec.offset)
        before = self.failures.get(key)
        count = before.count + 1 if before is not None and before.stage == stage else 1
        self.failures[key] = Failure(stage, count)

    def poison(self, records: list[RawRecord]) -> Failure | None:
        """The failure of a one-record poll's record that failed ``after`` times, if so."""
        if self.after is None or len(records) != 1:
            return None
        rec = records[0]
        failure = self.failures.get(((rec.topic, rec.partition), rec.offset))
        return failure if failure is not None and failure.count >= self.after else None

    def passed(self, next_offset: Mapping[TP, int]) -> None:
        """Forget what the loop is past (done, or dead-lettered)."""
        for tp, end in list(self.one_by_one.items()):
            if tp not in next_offset or next_offset[tp] >= end:  # past it, or not ours now
                del self.one_by_one[tp]
        for key in [k for k in self.failures if next_offset.get(k[0], k[1] + 1) > k[1]]:
            del self.failures[key]
