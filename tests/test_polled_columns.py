"""The live loop's columns (``decode_poll`` -> ``polled.group_columns``, no ``Reading`` per
reading) against the ``Reading`` path they replaced: every reading of a mixed poll parsed
alone by ``RecordParser.parse`` (a batched record's readings sent as single records) and
laid out by ``ReadingColumns.of``. The same columns, the same rejections, the same scores."""

from __future__ import annotations

import numpy as np
import orjson

from streamlstm.detect.scored import ReadingColumns
from streamlstm.records import RawRecord, Reading, Rejection, position
from streamlstm.stream.decode import decode_poll
from streamlstm.stream.eviction import StreamHomes
from streamlstm.stream.polled import group_columns
from tests.helpers import tiny_detector
from tests.test_records import APPENDED_MS, PARSER, good

T0 = 1_795_000_000_000  # epoch ms, before APPENDED_MS


def _batch(stream: str, n: int, start_ms: int, **values: list) -> bytes:
    columns = {"hr": [70 + k for k in range(n)], "spo2": [97] * n, "rr": [16] * n} | values
    ts = [start_ms + 1000 * k for k in range(n)]
    return orjson.dumps({"stream": stream, "ts": ts, "values": columns})


def _poll() -> list[RawRecord]:
    values = [
        ("bed1", good(ts=T0)),
        ("bed1", b"{broken"),
        ("bed2", _batch("bed2", 5, T0, hr=[70, 71, "x", 73, 74])),  # one bad reading
        ("bed3", good(stream="bed3", ts=T0, values={"hr": 900})),  # out of range
        ("bed1", good(ts=T0 + 1000, values=[71, None, 15])),
        ("bed3", _batch("bed3", 4, T0 + 2000, spo2=[96, None, 95, 96], hr=[80, 81, 82, 900])),
        ("bed1", good(ts=T0 + 500)),  # older than bed1's last: rejected by the detector
        ("bed2", _batch("bed2", 3, T0 + 9000)),
    ]
    out = [
        RawRecord("icu", 3, 40 + i, stream.encode(), value, APPENDED_MS)
        for i, (stream, value) in enumerate(values)
    ]
    # bed2 again, from another partition: its home is partition 3, so the record goes whole
    out.append(RawRecord("icu", 4, 7, b"bed2", _batch("bed2", 2, T0 + 20_000), APPENDED_MS))
    return out


def _singles(rec: RawRecord) -> list[tuple[int | None, RawRecord]]:
    """A record, or each reading of a batched record as a single record of its own."""
    obj = orjson.loads(rec.value) if rec.value and rec.value.startswith(b'{"') else None
    if obj is None or not isinstance(obj["ts"], list):
        return [(None, rec)]
    out = []
    for k, ts in enumerate(obj["ts"]):
        one = {"stream": obj["stream"], "ts": ts}
        one["values"] = {f: column[k] for f, column in obj["values"].items()}
        out.append((k, RawRecord(rec.topic, rec.partition, rec.offset, rec.key, orjson.dumps(one))))
    return out


def _reading_path(records: list[RawRecord]):
    """Readings (offset = position) and rejections (record, index, reason), one by one."""
    readings: list[Reading] = []
    rejected: list[tuple[int, int | None, str]] = []
    for i, rec in enumerate(records):
        for k, single in _singles(rec):
            got = PARSER.parse(
                RawRecord(
                    single.topic,
                    single.partition,
                    single.offset,
                    single.key,
                    single.value,
                    rec.timestamp_ms,
                )
            )
            if isinstance(got, Rejection):
                rejected.append((i, k, got.reason))
            else:
                got.offset = position(rec.offset, k or 0)
                readings.append(got)
    return readings, rejected


def test_the_columns_path_gives_the_reading_paths_columns_rejections_and_scores() -> None:
    records = _poll()
    decoded = decode_poll(PARSER, records)
    refused: list[tuple[int, str]] = []
    fresh = np.ones(len(records), bool)
    polled = group_columns(
        "vitals", decoded.groups["vitals"], records, fresh, StreamHomes().refusal, refused
    )
    assert refused == [(8, "other_partition")]
    cols = polled.cols

    readings, want_rejected = _reading_path(records[:8])
    want = ReadingColumns.of(readings)
    assert list(cols.streams) == list(want.streams)
    np.testing.assert_array_equal(cols.ts, want.ts)
    np.testing.assert_array_equal(cols.offsets, want.offsets)
    assert cols.values.dtype == want.values.dtype == np.float32
    np.testing.assert_array_equal(cols.values, want.values)  # NaN where missing, in place
    assert [cols.source(i) for i in range(len(readings))] == [
        (r.topic, r.partition, r.offset) for r in readings
    ]
    got_rejected = sorted((i, k, r.reason) for i, k, r in decoded.rejected)
    assert (
        got_rejected
        == sorted(want_rejected)
        == [
            (1, None, "not_json"),
            (2, 2, "bad_value"),
            (3, None, "out_of_range"),
            (5, 3, "out_of_range"),
        ]
    )
    assert polled.record.tolist() == [
        i for i, r in enumerate(records[:8]) for _ in range(_usable(i, r, want_rejected))
    ]

    det = tiny_detector()
    by_columns = det.score_columns(det.new_table(), cols)
    by_readings = det.score(det.new_table(), readings)
    assert by_columns.index == by_readings.index and len(by_columns.index) == len(readings) - 1
    assert by_columns.score == by_readings.score
    assert by_columns.warming == by_readings.warming
    assert [(i, r.reason) for i, r in by_columns.rejected] == [
        (i, r.reason) for i, r in by_readings.rejected
    ]
    assert [cols.offsets[i] for i, r in by_columns.rejected] == [position(46)]


def _usable(i: int, rec: RawRecord, rejected: list[tuple[int, int | None, str]]) -> int:
    """Readings of record ``i`` that were not rejected."""
    n = len(_singles(rec))
    return n - sum(1 for j, _, _ in rejected if j == i)
