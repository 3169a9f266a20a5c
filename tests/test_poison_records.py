"""Poison records (issue 18) without a broker: dead letters cut to fit, the loop going on past
a record the sink can never deliver, and the supervisor's restart backoff policy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from streamlstm.adapters.kafka.dead_letters import FRAMING_BYTES, _size, dlq_headers, fit_to_limit
from streamlstm.adapters.ray.supervisor import death_reason, restart_delay
from streamlstm.records import RawRecord
from streamlstm.stream.engine import Engine
from streamlstm.stream.loop import StreamWorker
from streamlstm.stream.metric_counts import MetricCounts
from streamlstm.stream.ports import Counters, UndeliverableRecord
from tests.helpers import FEATURES, interleave, series, tiny_config, tiny_model
from tests.test_worker_loop import ListSink, _records, _run, _worker

LIMIT = 1_048_576


def test_a_record_that_fits_is_written_unchanged() -> None:
    headers = dlq_headers(RawRecord("icu", 3, 12, b"k", b"{}"), "decode", "not_json")
    value, out = fit_to_limit(b"k", b"x" * 1000, headers, LIMIT)
    assert value == b"x" * 1000 and out == headers


def test_an_oversized_value_is_cut_with_its_size_and_digest() -> None:
    original = bytes(range(256)) * 8192  # 2 MiB
    headers = dlq_headers(RawRecord("icu", 3, 12, b"bed-1", original), "decode", "oversized")
    value, out = fit_to_limit(b"bed-1", original, headers, LIMIT)
    named = dict(out)
    assert original.startswith(value) and len(value) > LIMIT - 2 * FRAMING_BYTES
    assert _size(b"bed-1", value, out) <= LIMIT
    assert named["original.size"] == str(len(original)).encode()
    assert named["original.sha256"] == hashlib.sha256(original).hexdigest().encode()
    assert named["truncated"] == b"true" and named["error.reason"] == b"oversized"


class RefusingSink(ListSink):
    """Refuses the dead letter of one offset, as the Kafka producer refuses a huge record."""

    def __init__(self, log: list, refuse_offset: int):
        super().__init__(log)
        self.refuse_offset = refuse_offset

    def send_dlq(self, record, stage, reason):
        if record.offset == self.refuse_offset:
            raise UndeliverableRecord("larger than max_request_size")
        super().send_dlq(record, stage, reason)


def test_an_undeliverable_dead_letter_is_logged_counted_and_skipped(tmp_path: Path, caplog) -> None:
    records = _records()
    w = _worker(tmp_path, records, [])
    w.sink = RefusingSink([], refuse_offset=30)  # the broken record of _records()
    w.metrics = MetricCounts()
    w.assign([("icu", 0)])
    _run(w, 20, 16)
    c = w.totals().outcomes()
    assert c.records == len(records) == c.scored + c.warming + c.dlq  # it went on past it
    assert w.sink.dlq == [] and c.by_reason == {"not_json": 1}
    counters = {(n, tuple(lab)): v for n, lab, v in w.metrics.drain()["counters"]}
    assert counters[("dlq_failures", ("not_json",))] == 1
    assert "icu:0@30 (reason not_json) refused" in caplog.text


def test_restart_delay_doubles_up_to_its_cap() -> None:
    delays = [restart_delay(n, 1.0, 60.0) for n in range(1, 10)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert restart_delay(10_000, 0.5, 30.0) == 30.0


def test_death_reason_names_the_error_and_its_message() -> None:
    class Wrapped(Exception):
        cause = ValueError("send to 'dlq' refused: too large\n")

    assert death_reason(Wrapped("traceback ...")) == "ValueError: send to 'dlq' refused: too large"
    assert death_reason(KeyError()) == "KeyError"


def _two_partition_records() -> list[RawRecord]:
    """Keyless records of stream "a": every third on partition 1, the rest on partition 0."""
    out, next_offset = [], {0: 0, 1: 0}
    for i, r in enumerate(series("a", 90, seed=1)):
        partition = 1 if i % 3 == 2 else 0
        value = {
            "stream": "a",
            "ts": int(r.ts * 1000),
            "values": dict(zip(FEATURES, r.values, strict=True)),
        }
        out.append(RawRecord("icu", partition, next_offset[partition], None, orjson.dumps(value)))
        next_offset[partition] += 1
    return out


def test_a_stream_on_two_partitions_is_read_from_the_first_and_the_rest_dead_lettered(
    tmp_path: Path,
) -> None:
    records = _two_partition_records()
    on_p1 = sum(r.partition == 1 for r in records)
    w = _worker(tmp_path, records, [])
    w.assign([("icu", 0), ("icu", 1)])
    _run(w, 10, 16)
    c = w.totals().outcomes()
    assert c.records == len(records) and c.by_reason == {"other_partition": on_p1}
    assert c.scored + c.warming == len(records) - on_p1  # none of partition 0's was dropped
    assert {offset for offset, *_ in w.sink.dlq} == set(range(on_p1))

    # After a restart the home comes from the snapshot, even when partition 1 is read first.
    w.checkpoint()
    later = [RawRecord(r.topic, r.partition, r.offset + 1000, None, r.value) for r in records]
    again = _worker(tmp_path, sorted(later, key=lambda r: -r.partition), [])
    again.assign([("icu", 0), ("icu", 1)])
    _run(again, 10, 16)
    # its counts go on from the snapshot's (the first run's on_p1 included)
    by_reason = again.totals().outcomes().by_reason
    assert set(by_reason) <= {"other_partition", "duplicate", "out_of_order"}
    assert by_reason["other_partition"] == 2 * on_p1


def test_a_future_dated_reading_goes_to_the_dlq_and_does_not_block_its_stream(
    tmp_path: Path,
) -> None:
    stamped = []
    for r in _records():  # Kafka record timestamps = reading timestamps (a live producer)
        obj = orjson.loads(r.value) if r.value != b"{broken" else {"ts": 0}
        stamped.append(RawRecord(r.topic, r.partition, r.offset, r.key, r.value, obj["ts"]))
    future = orjson.loads(stamped[40].value) | {"ts": "2099-01-01T00:00:00Z"}
    stamped.insert(
        40, RawRecord("icu", 0, 40, stamped[40].key, orjson.dumps(future), stamped[40].timestamp_ms)
    )
    records = [
        RawRecord(r.topic, 0, i, r.key, r.value, r.timestamp_ms) for i, r in enumerate(stamped)
    ]
    w = _worker(tmp_path, records, [])
    w.assign([("icu", 0)])
    _run(w, 20, 16)
    c = w.totals().outcomes()
    assert c.by_reason == {"not_json": 1, "future_timestamp": 1}  # no later one out_of_order
    assert c.scored + c.warming == len(records) - 2


def test_a_restart_of_the_loop_in_the_same_process_counts_each_record_once(
    tmp_path: Path,
) -> None:
    records = _records()
    counters, metrics = Counters(), MetricCounts()

    def loop() -> StreamWorker:  # the process's counters and metrics kept, as workers.py does
        w = _worker(tmp_path, records, [])
        return StreamWorker(
            w.engine,
            w.parser,
            w.source,
            w.sink,
            w.store,
            w.clock,
            5.0,
            metrics,
            None,
            None,
            counters,
        )

    first = loop()
    first.assign([("icu", 0)])
    _run(first, 3, 16)
    first.checkpoint()
    _run(first, 2, 16)  # scored, not committed: the run task fails here
    again = loop()
    assert again.assign([("icu", 0)]) == {("icu", 0): 48}  # it replays 32 records
    _run(again, 20, 16)
    # The replayed records count onto the ledger restored from the snapshot at 48, once.
    c = again.totals().outcomes()
    assert c.records == len(records) == c.scored + c.warming + c.dlq
    assert c.dlq == 1
    sent_before = [a for a in first.sink.alerts if a["source"]["offset"] < 48]
    assert c.alerts == len(sent_before) + len(again.sink.alerts) > 0


def _stamped(readings, kafka_ms: int | None = None) -> list[RawRecord]:
    """Records whose Kafka timestamps are the readings' own (a live producer), or all
    ``kafka_ms`` (a backfill, or ``simulate --bootstrap``: produced now, stamped long ago)."""
    out = []
    for offset, r in enumerate(readings):
        ts_ms = int(r.ts * 1000)
        value = {
            "stream": r.stream,
            "ts": ts_ms,
            "values": dict(zip(FEATURES, r.values, strict=True)),
        }
        key, kafka_ts = r.stream.encode(), ts_ms if kafka_ms is None else kafka_ms
        out.append(RawRecord("icu", 0, offset, key, orjson.dumps(value), kafka_ts))
    return out


def test_an_idle_stream_is_evicted_left_out_of_snapshots_and_returns_cold(tmp_path: Path) -> None:
    # "b" sends for 20 minutes, then only "a" for 100 more; then "b" comes back.
    early = interleave(series("a", 20, seed=1), series("b", 20, seed=2))
    later = series("a", 100, seed=1)[20:]
    back = series("b", 130, seed=2)[125:]
    records = _stamped(early + later + back)
    w = _worker(tmp_path, records[: len(early) + len(later)], [])
    w.assign([("icu", 0)])
    _run(w, 20, 16)
    table = w.engine.tables["g"]
    assert w.evict_idle(idle_s=7200.0) == 0  # "b" idle for 80 minutes
    assert w.evict_idle(idle_s=3600.0) == 1 and table.row("b") is None
    assert table.row("a") is not None and w.counters.evicted == 1
    w.checkpoint()
    blobs, _ = w.store.load(("icu", 0))
    assert set(table_rows_of(blobs["g"])) == {"a"}

    w.source.records = records  # "b" sends again: a new stream, in warm-up
    warming = w.totals().outcomes().warming
    _run(w, 2, 16)
    c = w.totals().outcomes()
    assert c.warming - warming == len(back) and c.by_reason == {}


def table_rows_of(blob: bytes) -> list[str]:
    engine = Engine.build(tiny_config(), {"g": tiny_model()})
    streams, _ = engine.tables["g"].restore(blob)
    return streams


def test_idle_is_judged_in_reading_time_not_kafka_time(tmp_path: Path) -> None:
    # Readings from 2026-01-01 in records stamped ~340 days later (the wall clock of a
    # bootstrap run): against Kafka time every stream would be idle under a 7-day TTL.
    early = interleave(series("a", 20, seed=1), series("b", 20, seed=2))
    later = series("a", 100, seed=1)[20:]
    produced_ms = int((later[-1].ts + 340 * 86_400) * 1000)
    records = _stamped(early + later, kafka_ms=produced_ms)
    w = _worker(tmp_path, records, [])
    w.assign([("icu", 0)])
    _run(w, 20, 16)
    w.checkpoint()  # both streams in the snapshot
    table = w.engine.tables["g"]
    assert w.evict_idle(idle_s=604_800.0) == 0 and len(table) == 2
    assert w.evict_idle(idle_s=3600.0) == 1 and table.row("b") is None  # 80 min behind "a"

    # A restarted worker judges from its snapshot's readings, before it reads any record.
    restarted = _worker(tmp_path, [], [])
    restarted.store = w.store
    restarted.assign([("icu", 0)])
    assert len(restarted.engine.tables["g"]) == 2
    assert restarted.evict_idle(idle_s=3600.0) == 1
    assert restarted.engine.tables["g"].row("b") is None


@pytest.mark.chaos  # a row of docs/reliability.md; fast: CI runs it too
def test_a_new_stream_beyond_max_streams_is_dead_lettered_and_the_held_ones_keep_scoring(
    tmp_path: Path,
) -> None:
    held = interleave(series("a", 30, seed=1), series("b", 30, seed=2))
    late = series("c", 30, seed=3)[10:]  # "c" first sends once "a" and "b" are held
    records = _stamped(interleave(held, late))
    w = _worker(tmp_path, records, [])
    w.homes.max_streams = 2  # state.max_streams, as workers.py passes it
    w.metrics = MetricCounts()
    w.assign([("icu", 0)])
    _run(w, 10, 16)
    c = w.totals().outcomes()
    assert c.records == len(records) and c.by_reason == {"too_many_streams": len(late)}
    assert c.scored + c.warming == len(held)  # every reading of the held streams
    assert {(stage, reason) for _, stage, reason, _ in w.sink.dlq} == {
        ("state", "too_many_streams")
    }
    assert w.engine.tables["g"].row("c") is None and len(w.engine.tables["g"]) == 2
    assert w.totals().get("dlq", ("too_many_streams",)) == len(late)  # the exported count

    # Room again once a held stream is evicted: "c" is admitted, in warm-up.
    a_goes_on = series("a", 200, seed=1)[30:]  # "b" falls silent for 170 minutes
    c_again = series("c", 230, seed=3)[200:]
    everything = _stamped(interleave(held, late) + a_goes_on + c_again)
    w.source.records = everything[: -len(c_again)]
    _run(w, 20, 16)
    assert w.evict_idle(idle_s=3600.0) == 1 and w.engine.tables["g"].row("b") is None
    c = w.totals().outcomes()
    w.source.records, warming, scored = everything, c.warming, c.scored
    _run(w, 4, 16)
    c = w.totals().outcomes()
    assert c.records == len(everything) and c.by_reason == {"too_many_streams": len(late)}
    assert w.engine.tables["g"].row("c") is not None and c.warming > warming  # cold start
    assert c.warming - warming + c.scored - scored == len(c_again)
