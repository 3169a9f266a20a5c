"""Outcome counts exactly once per record across worker *process* deaths (issue 18).

A process death is simulated in-process: at a crash point the worker loop raises, and the
worker, its counters and its metric counts are thrown away; a new one is built over the same
snapshot directory and input, as a restarted actor would be. Throughout, each live worker
reports to a ``MetricsHub`` as ``PartitionWorkerImpl.metrics`` does, after every poll (a dead
process's last reports reached the exporter, its later counts did not). The exported
outcome counters and the final worker's stats must equal the records, exactly.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streamlstm.adapters.ops.prometheus import MetricsHub
from streamlstm.adapters.ops.storage import SnapshotStore
from streamlstm.record_parser import RecordParser
from streamlstm.records import RawRecord
from streamlstm.stream.engine import Engine
from streamlstm.stream.ledger import Ledger, advance
from streamlstm.stream.loop import StreamWorker
from streamlstm.stream.metric_counts import MetricCounts
from tests.helpers import tiny_config, tiny_model
from tests.test_worker_loop import ListSink, ListSource, _records

TPS = [("icu", 0), ("icu", 1)]
POLL = 8  # records per poll: many polls and checkpoints per run


class Died(Exception):
    """The process ended here (os._exit in a real worker)."""


class DieAt:
    """``CrashPoints`` that end the simulated process at the ``nth`` pass of ``point``."""

    def __init__(self, point: str | None, nth: int):
        self.point, self.nth, self.seen = point, nth, 0

    def hit(self, name: str) -> None:
        if name == self.point:
            self.seen += 1
            if self.seen == self.nth:
                raise Died(name)

    def on_records(self, records: list[RawRecord]) -> None:
        """No record ends this process (``CrashPoints.on_records``'s hook)."""


def two_partitions() -> list[RawRecord]:
    """The loop tests' records (two streams, an episode, one broken record), stream "a" and
    the broken one on partition 0, stream "b" on partition 1."""
    out, next_offset = [], {0: 0, 1: 0}
    for rec in _records():
        partition = 1 if rec.key == b"b" else 0
        out.append(RawRecord("icu", partition, next_offset[partition], rec.key, rec.value))
        next_offset[partition] += 1
    return out


def process(tmp: Path, records: list[RawRecord], crash: DieAt) -> StreamWorker:
    """A fresh worker process: new counters and metric counts, the same snapshots."""
    cfg = tiny_config()
    clock = iter(range(10**6))
    return StreamWorker(
        Engine.build(cfg, {"g": tiny_model()}),
        RecordParser(cfg.input, cfg.groups),
        ListSource(records, []),
        ListSink([]),
        SnapshotStore(str(tmp), 3, crash.hit),
        lambda: float(next(clock)),
        5.0,
        metrics=MetricCounts(),
        crash=crash,
    )


def report(hub: MetricsHub, w: StreamWorker) -> None:
    """What the supervisor pulls from a worker (``PartitionWorkerImpl.metrics``)."""
    hub.add_reports(
        [
            {
                "worker": 0,
                "counts": w.metrics.drain(),
                "loop_alive": True,
                "ledgers": w.ledgers.report(),
            }
        ]
    )


def run_with_deaths(tmp: Path, records, point: str | None, nth: int, deaths: int):
    """Run to the end, the process dying ``deaths`` times at ``point``; returns the hub, the
    last worker (drained: a final checkpoint) and the deaths that happened."""
    hub, died = MetricsHub(), 0
    while True:
        crash = DieAt(point if died < deaths else None, nth)
        w = process(tmp, records, crash)
        w.assign(TPS)
        report(hub, w)
        try:
            while w.run_once(0.0, POLL):
                report(hub, w)
            w.checkpoint()  # the drain
            report(hub, w)
            return hub, w, died
        except Died:
            died += 1


def exported(hub: MetricsHub, name: str, labels: tuple[str, ...] = ()) -> float:
    return hub.counters.get((name, labels), 0.0)


CRASHES = {  # point -> nth pass: past the first checkpoint, records in flight
    "after_poll": 9,
    "after_score": 9,
    "after_flush": 2,
    "mid_snapshot": 3,  # half a snapshot file written, never renamed
    "after_snapshot_partition": 3,  # the second checkpoint: one partition's snapshot durable
    "after_snapshot": 2,  # snapshots durable, offsets not committed
}


@pytest.mark.parametrize("point", list(CRASHES))
def test_outcome_counts_are_exact_across_process_deaths(tmp_path: Path, point: str) -> None:
    records = two_partitions()
    _, ref, _ = run_with_deaths(tmp_path / "ref", records, None, 0, 0)
    want = ref.totals().outcomes()
    assert want.records == len(records) == want.scored + want.warming + want.dlq
    assert want.dlq == 1 and want.alerts > 0

    hub, w, died = run_with_deaths(tmp_path / "run", records, point, CRASHES[point], 2)
    assert died == 2, "the crash point must fire in two process lives"
    # The last process's stats: every record of its partitions, live and durable alike.
    assert w.totals().outcomes() == want
    assert w.totals(durable=True).outcomes() == want
    # The exporter's counters, summed from three processes' reports.
    assert exported(hub, "records") == len(records)
    for outcome in ("scored", "warming", "dlq"):
        assert exported(hub, "readings", (outcome,)) == getattr(want, outcome), outcome
    assert exported(hub, "dlq", ("not_json",)) == 1
    alerts = sum(v for (name, _), v in hub.counters.items() if name == "alert_events")
    assert alerts == want.alerts


def test_a_new_exporter_starts_from_the_restored_ledger(tmp_path: Path) -> None:
    """A supervisor restarted over old snapshots does not jump its counters to all-time
    totals: it counts from what its workers restored."""
    records = two_partitions()
    first_half = [r for r in records if r.offset < 30]
    run_with_deaths(tmp_path, first_half, None, 0, 0)
    hub, w, _ = run_with_deaths(tmp_path, records, None, 0, 0)
    assert w.totals().outcomes().records == len(records)
    assert exported(hub, "records") == len(records) - len(first_half)


def test_advance_counts_only_past_the_high_water_mark() -> None:
    seen = Ledger({("records", ()): 10})
    assert advance(seen, Ledger({("records", ()): 14, ("dlq", ("x",)): 1})) == {
        ("records", ()): 4,
        ("dlq", ("x",)): 1,
    }
    assert advance(seen, Ledger({("records", ()): 12})) == {}  # replaying an older snapshot
    assert advance(seen, Ledger({("records", ()): 15})) == {("records", ()): 1}


def test_the_ledger_round_trips_through_its_blob() -> None:
    ledger = Ledger()
    ledger.add("records", (), 3)
    ledger.add("readings", ("scored",), 2)
    ledger.add("dlq", ("not_json",))
    back = Ledger.from_blob(ledger.to_blob())
    assert back.counts == ledger.counts
    assert back.outcomes().by_reason == {"not_json": 1} and back.outcomes().records == 3
    assert orjson.loads(ledger.to_blob())["version"] == 1


def test_a_worker_that_dies_before_its_first_report_loses_no_counts(tmp_path: Path) -> None:
    """The exporter's first mark for a partition is what its first start restored (the
    supervisor notes it from ``start``), not the first report: a process that checkpointed
    and died before reporting leaves its counts to the next one to export."""
    records = two_partitions()
    hub = MetricsHub()
    first = process(tmp_path, records, DieAt(None, 0))
    first.assign(TPS)
    hub.know_baselines({(t, p): rows for t, p, rows in first.ledgers.restored_rows()})
    while first.run_once(0.0, POLL):
        pass
    first.checkpoint()  # durable, then the process dies unreported
    second = process(tmp_path, records, DieAt(None, 0))
    second.assign(TPS)  # restores the first one's ledgers: its own baseline is all of them
    hub.know_baselines({(t, p): rows for t, p, rows in second.ledgers.restored_rows()})
    report(hub, second)
    assert exported(hub, "records") == len(records)
    # Without the first start's mark the exporter would begin at the second's baseline.
    blind = MetricsHub()
    report(blind, second)
    assert exported(blind, "records") == 0
