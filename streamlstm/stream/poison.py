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

A record can also kill the worker's *process* (a segfault in a native library, the OOM
killer): no exception, and a new process with an empty ledger. So the loop tells a
``FlightRecorder`` (ports.py) which ``Poll`` it is about to handle and each stage it
finishes; the next process reads what its predecessor left unfinished and counts it here
(``failed_poll``), and the ledger's own ``state`` is kept there on every change.
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


@dataclass(frozen=True)
class Poll:
    """What one poll held: how many records, and per partition its first and last offset
    (what a failure of the poll must name, without the records themselves)."""

    records: int
    spans: dict[TP, tuple[int, int]]

    @classmethod
    def of(cls, records: list[RawRecord]) -> Poll:
        spans: dict[TP, tuple[int, int]] = {}
        for rec in records:  # offsets ascend within a partition
            tp = (rec.topic, rec.partition)
            first = spans[tp][0] if tp in spans else rec.offset
            spans[tp] = (first, rec.offset)
        return cls(len(records), spans)


class PoisonLedger:
    """Failures per record, across restarts of the loop; ``after`` None turns it off."""

    def __init__(self, after: int | None = 3) -> None:
        self.after = after
        self.one_by_one: dict[TP, int] = {}  # read one record at a time below this offset
        self.failures: dict[tuple[TP, int], Failure] = {}  # (partition, offset) -> failure

    def poll_size(self, max_records: int) -> int:
        """1 while a suspect is not yet behind the loop, else ``max_records``."""
        return 1 if self.one_by_one or self.failures else max_records

    def failed(self, records: list[RawRecord], last_stage: str | None) -> bool:
        """The loop failed on ``records`` (one poll) after finishing ``last_stage``."""
        return self.failed_poll(Poll.of(records), last_stage)

    def failed_poll(self, poll: Poll, last_stage: str | None) -> bool:
        """The loop failed (or its process died) on ``poll`` after finishing ``last_stage``;
        True when that changed the ledger (the caller keeps its ``state``)."""
        stage = FAILED_IN.get(last_stage or "fetch", last_stage or "decode")
        if self.after is None or stage not in RECORD_STAGES or not poll.spans:
            return False
        if poll.records > 1:
            for tp, (_, last) in poll.spans.items():
                self.one_by_one[tp] = max(self.one_by_one.get(tp, 0), last + 1)
            return True
        ((tp, (offset, _)),) = poll.spans.items()
        before = self.failures.get((tp, offset))
        count = before.count + 1 if before is not None and before.stage == stage else 1
        self.failures[(tp, offset)] = Failure(stage, count)
        return True

    def poison(self, records: list[RawRecord]) -> Failure | None:
        """The failure of a one-record poll's record that failed ``after`` times, if so."""
        if self.after is None or len(records) != 1:
            return None
        rec = records[0]
        failure = self.failures.get(((rec.topic, rec.partition), rec.offset))
        return failure if failure is not None and failure.count >= self.after else None

    def passed(self, next_offset: Mapping[TP, int]) -> bool:
        """Forget what the loop is past (done, or dead-lettered); True when it forgot any."""
        if not self.one_by_one and not self.failures:
            return False  # the common case, every poll: nothing to look at
        before = len(self.one_by_one) + len(self.failures)
        for tp, end in list(self.one_by_one.items()):
            if tp not in next_offset or next_offset[tp] >= end:  # past it, or not ours now
                del self.one_by_one[tp]
        for key in [k for k in self.failures if next_offset.get(k[0], k[1] + 1) > k[1]]:
            del self.failures[key]
        return len(self.one_by_one) + len(self.failures) != before

    # --- kept beside the flight recorder, so it outlives the process -------------------
    def state(self) -> dict:
        """Plain JSON-able lists (topic names are strings, so no tuple keys)."""
        return {
            "one_by_one": [[t, p, end] for (t, p), end in self.one_by_one.items()],
            "failures": [
                [t, p, offset, f.stage, f.count] for ((t, p), offset), f in self.failures.items()
            ],
        }

    def restore(self, state: Mapping) -> None:
        """Take over a dead process's ledger (``state``'s output)."""
        for t, p, end in state.get("one_by_one", []):
            self.one_by_one[(t, p)] = max(self.one_by_one.get((t, p), 0), int(end))
        for t, p, offset, stage, count in state.get("failures", []):
            self.failures[((t, p), int(offset))] = Failure(stage, int(count))
