"""The poison rule (issue 18): a record that makes the loop fail in the same stage
``input.poison_after`` times, across restarts of the loop, goes to the DLQ as ``poison`` and
its partition moves past it. Lists in, lists out: the loop restarted as the actor does, its
counters and poison ledger kept."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest

from streamlstm.record_parser import RecordParser
from streamlstm.records import RawRecord
from streamlstm.stream.engine import Engine
from streamlstm.stream.flight import LeftBehind, MemoryFlight, take_over
from streamlstm.stream.loop import StreamWorker
from streamlstm.stream.poison import Failure, PoisonLedger, Poll
from tests.helpers import FEATURES, series, tiny_config, tiny_model
from tests.test_worker_loop import ListSink, ListSource, LoggingStore

# In `make chaos` too (fast: CI runs them as well): the poison rows of docs/reliability.md.
pytestmark = [pytest.mark.chaos]

BAD_OFFSET = 20


class BuggyParser(RecordParser):
    """A decoder with a bug one record's bytes trigger (the stand-in for any such bug)."""

    def open(self, rec):
        if rec.value and b"trigger" in rec.value:
            raise RuntimeError("decoder bug")
        return super().open(rec)


def _records() -> list[RawRecord]:
    out = []
    for offset, r in enumerate(series("a", 40, seed=1)):
        values = dict(zip(FEATURES, r.values, strict=True))
        value = {"stream": "a", "ts": int(r.ts * 1000), "values": values}
        if offset == BAD_OFFSET:
            value["note"] = "trigger"
        out.append(RawRecord("icu", 0, offset, b"a", orjson.dumps(value)))
    return out


def _loop(tmp: Path, records, ledger: PoisonLedger, parser=None, flight=None) -> StreamWorker:
    cfg = tiny_config()
    clock = itertools.count()
    return StreamWorker(
        Engine.build(cfg, {"g": tiny_model()}),
        (parser or BuggyParser)(cfg.input, cfg.groups),
        ListSource(records, []),
        ListSink([]),
        LoggingStore(tmp, []),
        lambda: float(next(clock)),
        5.0,
        poison=ledger,
        flight=flight,
    )


def _run_to_the_end(new_loop, fails: type[BaseException], most: int = 10):
    """Run a loop from ``new_loop()`` to the end, and a new one after each ``fails`` (as the
    supervisor restarts the loop, or Ray the process); returns (failures, the last loop)."""
    for failures in range(most):
        w = new_loop()
        w.assign([("icu", 0)])
        try:
            for _ in range(60):
                w.run_once(0.0, 16)
            w.checkpoint()
            return failures, w
        except fails:
            continue
    raise AssertionError(f"still failing after {most} restarts")


def _run_with_restarts(tmp: Path, records, ledger: PoisonLedger, most: int = 10):
    """The loop restarted in the same process: the same poison ledger."""
    return _run_to_the_end(lambda: _loop(tmp, records, ledger), RuntimeError, most)


@pytest.mark.parametrize("after", [1, 3])
def test_a_record_failing_decode_n_times_is_dead_lettered_as_poison_and_the_rest_scored(
    tmp_path: Path, after: int
) -> None:
    records = _records()
    failures, w = _run_with_restarts(tmp_path, records, PoisonLedger(after))
    # One failure in a poll of many records (culprit unknown), then `after` of it alone.
    assert failures == 1 + after
    c = w.totals().outcomes()
    assert c.by_reason == {"poison": 1} and c.dlq == 1
    assert c.records == len(records) == c.scored + c.warming + c.dlq
    ((offset, stage, reason, value),) = w.sink.dlq
    assert (offset, stage, reason) == (BAD_OFFSET, "decode", "poison")
    assert value == records[BAD_OFFSET].value  # the original bytes
    assert w.store.load(("icu", 0))[1] == len(records)  # the partition moved past it
    assert w.poison.poll_size(16) == 16  # nothing suspect left: whole polls again


def test_without_the_rule_the_record_fails_every_restart(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="still failing"):
        _run_with_restarts(tmp_path, _records(), PoisonLedger(None), most=5)


def test_the_ledger_counts_only_the_records_own_stages_and_one_stage_at_a_time() -> None:
    one = [RawRecord("icu", 0, 7, b"a", b"{}")]
    ledger = PoisonLedger(2)
    ledger.failed(one, "step")  # failed producing alerts: the broker's fault, not the record's
    ledger.failed(one, "fetch")  # failed in decode
    ledger.failed(one, "group")  # failed in step: another stage, the count starts again
    assert ledger.failures == {(("icu", 0), 7): Failure("step", 1)}
    assert ledger.poison(one) is None
    ledger.failed(one, "group")
    assert ledger.poison(one) == Failure("step", 2)
    ledger.passed({("icu", 0): 7})  # not past it yet
    assert ledger.poll_size(100) == 1
    ledger.passed({("icu", 0): 8})
    assert ledger.failures == {} and ledger.poll_size(100) == 100


class DownSink(ListSink):
    """The DLQ producer cannot reach the broker (a transient failure, not the record's)."""

    def send_dlq(self, record, stage, reason):
        raise ConnectionError("broker down")


def test_a_dead_letter_that_cannot_be_written_never_counts_against_its_record(
    tmp_path: Path,
) -> None:
    broken = [RawRecord("icu", 0, 0, b"a", b"{not json")]
    ledger = PoisonLedger(1)
    for _ in range(3):
        w = _loop(tmp_path, broken, ledger)
        w.sink = DownSink([])
        w.assign([("icu", 0)])
        with pytest.raises(ConnectionError):
            w.run_once(0.0, 16)
    assert ledger.failures == {}  # retried as it was: its reason stays not_json


# --- a record that kills the process (flight.py): a new ledger each time, the recorder kept


class ProcessDeath(BaseException):
    """Stands in for ``os._exit`` mid-poll: not an ``Exception``, so the loop's own failure
    handling never sees it, as it never sees a real process death."""


class DeadlyParser(RecordParser):
    def open(self, rec):
        if rec.value and b"trigger" in rec.value:
            raise ProcessDeath
        return super().open(rec)


def _run_with_deaths(tmp: Path, records, after: int, flight, most: int = 10):
    """Each death starts a new "process": a new poison ledger that only the flight recorder
    connects to the dead one."""

    def new_process() -> StreamWorker:
        ledger = PoisonLedger(after)
        take_over(ledger, flight, flight.left())
        return _loop(tmp, records, ledger, DeadlyParser, flight)

    return _run_to_the_end(new_process, ProcessDeath, most)


@pytest.mark.parametrize("after", [1, 3])
def test_a_record_that_kills_the_process_is_poison_after_n_deaths(
    tmp_path: Path, after: int
) -> None:
    records = _records()
    deaths, w = _run_with_deaths(tmp_path, records, after, MemoryFlight())
    assert deaths == 1 + after  # one in a poll of many records, then `after` of it alone
    ((offset, stage, reason, value),) = w.sink.dlq
    assert (offset, stage, reason) == (BAD_OFFSET, "decode", "poison")
    assert value == records[BAD_OFFSET].value
    assert w.store.load(("icu", 0))[1] == len(records)  # the partition moved past it
    # The last process's counts start from the ledger of the snapshot it restored: every
    # record counted once over all the deaths, and they reconcile.
    c = w.totals().outcomes()
    assert c.records == len(records) == c.scored + c.warming + c.dlq
    assert c.by_reason == {"poison": 1}
    assert w.poison.poll_size(16) == 16


def test_without_the_recorder_a_process_death_is_never_counted(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="still failing"):
        _run_with_deaths(tmp_path, _records(), 3, NoMemory(), most=6)


class NoMemory(MemoryFlight):
    """A recorder that forgets at every death (what each new process had before)."""

    def left(self) -> LeftBehind:
        return LeftBehind()


def test_a_death_after_scoring_is_not_the_records() -> None:
    flight = MemoryFlight()
    poll = Poll.of([RawRecord("icu", 0, 7, b"a", b"{}")])
    ledger = PoisonLedger(1)
    for last, counted in [("step", False), ("alerts", False), ("fetch", True)]:
        flight.took(poll)
        if last != "fetch":
            flight.lap(last)
        assert take_over(ledger, flight, flight.left()) is counted, last
        assert flight.left().poll is None  # counted once: the next process sees nothing
    assert ledger.failures == {(("icu", 0), 7): Failure("decode", 1)}
    assert flight.ledger == ledger.state()  # kept for the process after
