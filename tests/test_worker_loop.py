"""The live loop over plain in-memory sources (lists in, lists out): checkpoint order, DLQ,
counts reconcile, and restore-after-stop == uninterrupted. Real Kafka is in test_live_*."""

from __future__ import annotations

from pathlib import Path

import orjson

from streamlstm.adapters.ops.storage import SnapshotStore, decode_snapshot, encode_snapshot
from streamlstm.detect.state import table_rows
from streamlstm.record_parser import RecordParser
from streamlstm.records import RawRecord
from streamlstm.stream.engine import Engine
from streamlstm.stream.loop import StreamWorker
from tests.helpers import assert_same_state, interleave, series, tiny_config, tiny_model


class ListSource:
    def __init__(self, records: list[RawRecord], log: list):
        self.records, self.log, self.pos = records, log, {}

    def seek(self, topic, partition, offset):
        self.pos[(topic, partition)] = offset

    def poll(self, timeout_s, max_records):
        out = []
        for rec in self.records:
            tp = (rec.topic, rec.partition)
            if rec.offset >= self.pos.get(tp, 0) and len(out) < max_records:
                out.append(rec)
        for rec in out:
            self.pos[(rec.topic, rec.partition)] = rec.offset + 1
        return out

    def commit(self, offsets):
        self.log.append(("commit", dict(offsets)))


class ListSink:
    def __init__(self, log: list):
        self.log, self.alerts, self.dlq, self.pending = log, [], [], 0
        self.batch_index: list[int | None] = []  # of each dead letter

    def send_alert(self, key, value):
        self.alerts.append(orjson.loads(value))
        self.pending += 1

    def send_dlq(self, record, stage, reason):
        self.dlq.append((record.offset, stage, reason, record.value))
        self.batch_index.append(record.batch_index)
        self.pending += 1

    def flush(self, timeout_s):
        self.log.append(("flush", self.pending))


class LoggingStore(SnapshotStore):
    def __init__(self, root, log):
        super().__init__(str(root))
        self.log = log

    def save(self, tp, blobs, next_offset):
        super().save(tp, blobs, next_offset)
        self.log.append(("snapshot", tp, next_offset))


def _records() -> list[RawRecord]:
    readings = interleave(series("a", 60, seed=1), series("b", 60, seed=2))
    out = []
    for offset, r in enumerate(readings):
        value = {
            "stream": r.stream,
            "ts": int(r.ts * 1000),
            "values": dict(zip(["hr", "spo2", "rr"], r.values, strict=True)),
        }
        if r.stream == "a" and 70 <= offset <= 74:
            value["values"]["rr"] += 80.0  # an episode
        out.append(RawRecord("icu", 0, offset, r.stream.encode(), orjson.dumps(value)))
    out.insert(30, RawRecord("icu", 0, -1, b"a", b"{broken"))  # placeholder offset, fixed below
    return [RawRecord(r.topic, r.partition, i, r.key, r.value) for i, r in enumerate(out)]


def _worker(tmp: Path, records, log):
    cfg = tiny_config()
    engine = Engine.build(cfg, {"g": tiny_model()})
    clock = iter(range(10**6))
    return StreamWorker(
        engine,
        RecordParser(cfg.input, cfg.groups),
        ListSource(records, log),
        ListSink(log),
        LoggingStore(tmp, log),
        lambda: float(next(clock)),
        5.0,
    )


def _run(worker, polls: int, size: int):
    for _ in range(polls):
        worker.run_once(0.0, size)


def test_checkpoint_flushes_then_snapshots_then_commits(tmp_path: Path) -> None:
    log: list = []
    w = _worker(tmp_path, _records(), log)
    w.assign([("icu", 0)])
    _run(w, 12, 16)
    w.checkpoint()
    kinds = [entry[0] for entry in log]
    assert kinds and kinds.count("commit") >= 1
    for i, kind in enumerate(kinds):
        if kind == "commit":  # every commit follows a snapshot that follows a flush
            assert kinds[i - 1] == "snapshot" and "flush" in kinds[: i - 1]
            assert log[i][1][("icu", 0)] == log[i - 1][2]


def test_bad_record_goes_to_the_dlq_and_counts_reconcile(tmp_path: Path) -> None:
    records = _records()
    w = _worker(tmp_path, records, [])
    w.assign([("icu", 0)])
    _run(w, 20, 16)
    c = w.totals().outcomes()
    assert c.dlq == 1 and w.sink.dlq[0][2] == "not_json" and w.sink.dlq[0][3] == b"{broken"
    assert c.records == len(records) == c.scored + c.warming + c.dlq
    assert any(a["event"] == "open" and a["stream"] == "a" for a in w.sink.alerts)


def test_stop_and_restart_gives_the_same_state_and_alert_ids(tmp_path: Path) -> None:
    records = _records()
    ref = _worker(tmp_path / "ref", records, [])
    ref.assign([("icu", 0)])
    _run(ref, 30, 16)
    ref_ids = {a["alert_id"] for a in ref.sink.alerts}

    first = _worker(tmp_path / "run", records, [])
    first.assign([("icu", 0)])
    _run(first, 4, 16)
    first.checkpoint()
    _run(first, 1, 16)  # scored after the checkpoint: lost with the crash, then replayed
    second = _worker(tmp_path / "run", records, [])
    starts = second.assign([("icu", 0)])
    assert starts[("icu", 0)] == 64
    _run(second, 30, 16)
    ids = {a["alert_id"] for a in first.sink.alerts} | {a["alert_id"] for a in second.sink.alerts}
    assert ids == ref_ids and ref_ids
    for group in ref.engine.tables:
        assert_same_state(
            table_rows(second.engine.tables[group]), table_rows(ref.engine.tables[group])
        )


def test_snapshot_checksum_detects_a_torn_file_and_falls_back(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path))
    store.save(("t", 0), {"g": b"older"}, 10)
    store.save(("t", 0), {"g": b"newer-state"}, 20)
    newest = sorted((tmp_path / "t" / "0").iterdir())[-1]
    newest.write_bytes(newest.read_bytes()[:-3])  # torn
    assert store.load(("t", 0)) == ({"g": b"older"}, 10)
    blob = encode_snapshot({"g": b"x" * 10, "h": b""}, 7)
    assert decode_snapshot(blob) == ({"g": b"x" * 10, "h": b""}, 7)


def _batched(records: list[RawRecord], per_record: int) -> list[RawRecord]:
    """The same readings, ``per_record`` of a stream per batched record (columnar)."""
    by_stream: dict[str, list[dict]] = {}
    for rec in records:
        value = orjson.loads(rec.value) if rec.value.startswith(b'{"') else None
        if value is not None:
            by_stream.setdefault(value["stream"], []).append(value)
    out = []
    chunks = {
        s: [rs[k : k + per_record] for k in range(0, len(rs), per_record)]
        for s, rs in by_stream.items()
    }
    for k in range(max(len(c) for c in chunks.values())):
        for stream, parts in chunks.items():
            if k < len(parts):
                part = parts[k]
                value = {
                    "stream": stream,
                    "ts": [r["ts"] for r in part],
                    "values": {f: [r["values"][f] for r in part] for f in ("hr", "spo2", "rr")},
                }
                out.append(RawRecord("icu", 0, len(out), stream.encode(), orjson.dumps(value)))
    return out


def test_batched_records_score_as_their_readings_one_by_one(tmp_path: Path) -> None:
    singles = [r for r in _records() if r.value != b"{broken"]
    ref = _worker(tmp_path / "ref", singles, [])
    ref.assign([("icu", 0)])
    _run(ref, 30, 16)
    batched = _batched(singles, 7)
    w = _worker(tmp_path / "batched", batched, [])
    w.assign([("icu", 0)])
    _run(w, 30, 3)  # a stream's batches span polls, and a poll holds several of its batches
    c = w.totals().outcomes()
    assert c.records == len(batched) and c.dlq == 0
    assert c.scored + c.warming == len(singles)
    # the same state, but for where each reading came from (its record and index)
    where = {"last_offset", "a_open_offset", "a_id_hi", "a_id_lo"}
    assert_same_state(*(_without(table_rows(x.engine.tables["g"]), where) for x in (w, ref)))
    opened = [a for a in w.sink.alerts if a["event"] == "open"]
    assert opened and len(opened) == len([a for a in ref.sink.alerts if a["event"] == "open"])
    assert all(a["source"]["offset"] < len(batched) and "index" in a["source"] for a in opened)


def test_a_bad_reading_in_a_batch_goes_to_the_dlq_alone_and_a_restart_replays_none(
    tmp_path: Path,
) -> None:
    batched = _batched([r for r in _records() if r.value != b"{broken"], 5)
    value = orjson.loads(batched[3].value)
    value["values"]["hr"][2] = "seventy"  # not a number: this reading only
    batched[3] = RawRecord("icu", 0, 3, batched[3].key, orjson.dumps(value))
    w = _worker(tmp_path / "run", batched, [])
    w.assign([("icu", 0)])
    _run(w, 3, 2)
    w.checkpoint()
    _run(w, 1, 2)  # scored after the checkpoint: replayed by the next loop
    assert w.sink.dlq == [(3, "schema", "bad_value", batched[3].value)]
    assert w.sink.batch_index == [2]
    c = w.totals().outcomes()
    assert c.scored + c.warming == 5 * 8 - 1
    again = _worker(tmp_path / "run", batched, [])
    again.assign([("icu", 0)])
    _run(again, 30, 2)
    ref = _worker(tmp_path / "ref", batched, [])
    ref.assign([("icu", 0)])
    _run(ref, 30, 2)
    assert_same_state(table_rows(again.engine.tables["g"]), table_rows(ref.engine.tables["g"]))
    assert again.counters.replayed == 0 and again.sink.dlq == []


def _without(rows: dict, names: set[str]) -> dict:
    return {s: {k: v for k, v in cols.items() if k not in names} for s, cols in rows.items()}


def test_order_and_duplicates_are_judged_per_reading_inside_a_batch(tmp_path: Path) -> None:
    t0 = 1_767_225_600_000
    value = {
        "stream": "a",
        "ts": [t0, t0 + 60_000, t0 + 60_000, t0 + 30_000, t0 + 120_000],
        "values": {"hr": [70, 71, 72, 73, 74], "spo2": [97] * 5, "rr": [16] * 5},
    }
    records = [RawRecord("icu", 0, 0, b"a", orjson.dumps(value))]
    w = _worker(tmp_path, records, [])
    w.assign([("icu", 0)])
    _run(w, 1, 10)
    assert [(off, reason) for off, _, reason, _ in w.sink.dlq] == [
        (0, "duplicate"),
        (0, "out_of_order"),
    ]
    assert w.sink.batch_index == [2, 3]
    c = w.totals().outcomes()
    assert c.scored + c.warming == 3


def test_each_loop_stage_is_timed_with_an_injected_timer(tmp_path: Path) -> None:
    cfg = tiny_config()
    ticks = iter(range(10**6))
    clock = iter(range(10**6))
    w = StreamWorker(
        Engine.build(cfg, {"g": tiny_model()}),
        RecordParser(cfg.input, cfg.groups),
        ListSource(_records(), []),
        ListSink([]),
        LoggingStore(tmp_path, []),
        lambda: float(next(clock)),
        5.0,
        timer=lambda: float(next(ticks)),  # one "second" per reading of the timer
    )
    w.assign([("icu", 0)])
    w.run_once(0.0, 16)
    w.checkpoint()
    stages = ["fetch", "decode", "group", "step", "alerts", "produce", "snapshot", "commit"]
    assert list(w.counters.stage_s) == stages
    assert all(w.counters.stage_s[s] == 1.0 for s in stages)
    assert w.counters.polls == 1


def test_the_bench_profile_is_the_difference_between_two_stats() -> None:
    from streamlstm.adapters.dev.bench_profile import stage_profile

    gc0 = {"collections": 5, "full": 0, "pause_s": 0.01, "max_pause_s": 0.005}
    gc1 = {"collections": 9, "full": 1, "pause_s": 0.2, "max_pause_s": 0.15}
    before = [
        {"polls": 1, "records": 10, "stage_s": {"step": 1.0}, "stage_max_s": {"step": 1.0}}
        | {"gc": gc0}
    ]
    after = [
        {"polls": 3, "records": 30, "stage_s": {"step": 3.0}, "stage_max_s": {"step": 1.5}}
        | {"gc": gc1}
    ]
    got = stage_profile(before, after, per_record=10.0)
    assert got["polls"] == 2 and got["records_per_poll"] == 10.0
    assert got["stage_s"] == {"step": 2.0}
    assert got["stage_us_per_reading"] == {"step": 1e4}  # 2 s over 200 readings
    assert got["stage_ms_per_poll"] == {"step": 1000.0}
    assert got["stage_max_ms_whole_run"] == {"step": 1500.0}
    assert got["gc"] == {
        "collections": 4,
        "full": 1,
        "pause_ms": 190.0,
        "max_pause_ms_whole_run": 150.0,
    }
