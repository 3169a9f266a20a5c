"""Batched input records (one record, many readings of one stream, columnar) through the
poll decoder: each reading checked like a single one, a bad one rejected alone with its
index, and single records decoded to the same verdicts as ``RecordParser.parse``."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from streamlstm.records import RawRecord, Reading, position
from streamlstm.stream.decode import decode_poll
from tests.test_records import APPENDED_MS, CASES, PARSER, good

T0 = 1_795_000_000_000  # epoch ms, before APPENDED_MS


def batch(n: int = 4, **override) -> bytes:
    rec = {
        "stream": "bed1",
        "ts": [T0 + 1000 * k for k in range(n)],
        "values": {"hr": [70 + k for k in range(n)], "spo2": [97] * n, "rr": [16] * n},
    }
    rec.update(override)
    return orjson.dumps(rec)


def record(value: bytes | None, offset: int = 42, key: bytes | None = b"bed1") -> RawRecord:
    return RawRecord("icu", 3, offset, key, value, APPENDED_MS)


def test_a_batched_record_becomes_columns_in_order() -> None:
    got = decode_poll(PARSER, [record(good(), 41), record(batch(4), 42)])
    cols = got.groups["vitals"]
    assert got.rejected == [] and got.batched == {1}
    assert cols.streams == ["bed1"] * 5
    assert cols.values[1:, 0].tolist() == [70.0, 71.0, 72.0, 73.0]
    assert cols.ts[1:].tolist() == [T0 / 1000 + k for k in range(4)]
    assert cols.position.tolist() == [position(41)] + [position(42, k) for k in range(4)]
    assert cols.record.tolist() == [0, 1, 1, 1, 1]


def test_values_in_feature_order_and_nulls_in_a_batch() -> None:
    value = batch(2, values=[[70, None], [97, 98], [None, None]])
    cols = decode_poll(PARSER, [record(value)]).groups["vitals"]
    assert cols.values[0, :2].tolist() == [70.0, 97.0] and math.isnan(cols.values[1, 0])
    assert np.isnan(cols.values[:, 2]).all()


@pytest.mark.parametrize(
    ("reason", "at", "values"),
    [
        ("out_of_range", 2, {"hr": [70, 71, 9000, 73]}),
        ("bad_value", 1, {"hr": [70, "71", 72, 73]}),
        ("no_features", 3, {"hr": [70, 71, 72, None]}),
    ],
)
def test_one_bad_reading_is_rejected_alone_with_its_index(reason, at, values) -> None:
    got = decode_poll(PARSER, [record(batch(4, values=values))])
    assert [(i, index, r.reason) for i, index, r in got.rejected] == [(0, at, reason)]
    cols = got.groups["vitals"]
    assert cols.position.tolist() == [position(42, k) for k in range(4) if k != at]


def test_a_bad_timestamp_inside_a_batch_is_rejected_alone() -> None:
    ts = [T0, "yesterday", None, "2200-01-01T00:00:00Z", "2026-11-24T00:05:00.001Z", T0 + 5]
    got = decode_poll(PARSER, [record(batch(6, ts=ts))])
    reasons = {index: r.reason for _, index, r in got.rejected}
    assert reasons == {
        1: "bad_timestamp",
        2: "no_timestamp",
        3: "absurd_timestamp",
        4: "future_timestamp",
    }
    assert got.groups["vitals"].ts.tolist() == [T0 / 1000, (T0 + 5) / 1000]


@pytest.mark.parametrize(
    ("reason", "value"),
    [
        ("bad_batch", batch(3, values={"hr": [70, 71]})),  # shorter than ts
        ("bad_batch", batch(3, values={"hr": 70})),  # a scalar where an array belongs
        ("bad_batch", batch(0)),
        ("no_features", batch(2, values={"weight": [80, 81]})),
        ("key_mismatch", batch(2, stream="bed2")),
    ],
)
def test_a_malformed_batch_is_rejected_whole(reason: str, value: bytes) -> None:
    got = decode_poll(PARSER, [record(value)])
    assert [(index, r.reason) for _, index, r in got.rejected] == [(None, reason)]
    assert got.groups == {}


@pytest.mark.parametrize(("reason", "value", "key"), CASES)
def test_a_single_record_gets_the_verdict_of_the_single_parser(reason, value, key) -> None:
    got = decode_poll(PARSER, [record(value, key=key)])
    assert [(i, index, r.reason) for i, index, r in got.rejected] == [(0, None, reason)]


def test_a_good_single_record_decodes_to_the_parsers_reading() -> None:
    for value in (good(), good(values={"hr": 72, "spo2": None}), good(ts=T0, values=[70, 96, 15])):
        single = PARSER.parse(record(value))
        cols = decode_poll(PARSER, [record(value)]).groups["vitals"]
        assert isinstance(single, Reading)
        assert cols.ts.tolist() == [single.ts] and cols.streams == [single.stream]
        np.testing.assert_array_equal(cols.values[0], np.array(single.values))


def test_the_simulators_batched_records_hold_the_same_readings_as_its_single_ones() -> None:
    from streamlstm import config as config_mod
    from streamlstm.adapters.dev.sim_producer import batched_steps, step_records
    from streamlstm.record_parser import RecordParser
    from streamlstm.simulate.generate import generate

    data = generate("vitals", 3, 12, seed=4)
    cfg = config_mod.load(None)
    parser = RecordParser(cfg.input, cfg.groups)
    singles = [rec for t in range(12) for rec in step_records(data, t)]
    batched = [
        rec for first in (0, 5, 10) for rec in batched_steps(data, first, min(5, 12 - first))
    ]
    assert len(batched) == 9

    def columns(recs):
        raws = [RawRecord("", 0, i, k, v) for i, (k, v) in enumerate(recs)]
        got = decode_poll(parser, raws)
        assert got.rejected == []
        (cols,) = got.groups.values()
        order = np.lexsort((cols.ts, np.array(cols.streams)))
        return np.array(cols.streams)[order], cols.ts[order], cols.values[order]

    (s1, t1, v1), (s2, t2, v2) = columns(singles), columns(batched)
    assert (s1 == s2).all() and len(s1) == 36
    np.testing.assert_allclose(t1, t2, atol=1e-3)  # RFC 3339 vs epoch ms: both to the ms
    np.testing.assert_array_equal(v1, v2)


def test_readings_of_expands_batched_records_to_the_single_records_readings() -> None:
    """Cold-start and retraining data read the topic with ``readings_of``: a batched record
    yields its readings in order, as the same readings sent one per record would."""
    from streamlstm import config as config_mod
    from streamlstm.adapters.dev.sim_producer import batched_steps, step_records
    from streamlstm.record_parser import RecordParser
    from streamlstm.simulate.generate import generate
    from streamlstm.stream.decode import readings_of

    data = generate("vitals", 2, 7, seed=6)
    cfg = config_mod.load(None)
    parser = RecordParser(cfg.input, cfg.groups)
    singles = [
        RawRecord("", 0, i, k, v)
        for i, (k, v) in enumerate(rec for t in range(7) for rec in step_records(data, t))
    ]
    batched = [RawRecord("", 0, i, k, v) for i, (k, v) in enumerate(batched_steps(data, 0, 7))]
    broken = RawRecord("", 0, 2, b"x", b"{broken")
    from_batches = readings_of(parser, [*batched, broken])
    assert [r.offset for r in from_batches] == [0] * 7 + [1] * 7  # its record's offset
    expected = [parser.parse(rec) for rec in singles]
    for stream in data.streams:
        got = [r for r in from_batches if r.stream == stream]
        want = [r for r in expected if r.stream == stream]
        assert [r.ts for r in got] == pytest.approx([r.ts for r in want], abs=1e-3)
        np.testing.assert_array_equal(
            np.array([r.values for r in got]), np.array([r.values for r in want])
        )
    assert len(readings_of(parser, singles)) == 14
