"""Every rejection case of DESIGN §3, and the happy paths, through RecordParser."""

from __future__ import annotations

import dataclasses
import math
from math import nan

import orjson
import pytest

from streamlstm import config as config_mod
from streamlstm.record_parser import RecordParser
from streamlstm.records import REASONS, AlertEvent, RawRecord, Reading, TopFeature, parse_ts
from tests.helpers import ALERT_FIELDS

CFG = config_mod.from_dict(
    {
        "groups": [
            {
                "name": "vitals",
                "features": ["hr", "spo2", "rr"],
                "topics": ["icu"],
                "feature_ranges": {"hr": [0, 350]},
            },
        ]
    }
)
PARSER = RecordParser(CFG.input, CFG.groups)


APPENDED_MS = 1_795_478_400_000  # the Kafka record timestamp: 2026-11-24T00:00:00Z


def parse(
    value: bytes | None, key: bytes | None = b"bed1", topic: str = "icu", at: int = APPENDED_MS
):
    return PARSER.parse(RawRecord(topic, 3, 42, key, value, at))


def good(**override) -> bytes:
    rec = {
        "stream": "bed1",
        "ts": "2026-11-23T19:40:06.120Z",
        "values": {"hr": 72, "spo2": 97, "rr": 16},
    }
    rec.update(override)
    return orjson.dumps(rec)


def test_a_good_record_becomes_a_reading() -> None:
    r = parse(good())
    assert isinstance(r, Reading)
    assert r.values == (72.0, 97.0, 16.0) and r.group == "vitals"
    assert (r.topic, r.partition, r.offset) == ("icu", 3, 42)
    assert r.ts == pytest.approx(parse_ts("2026-11-23T19:40:06.120+00:00"))


def test_missing_and_null_features_are_imputed_not_fatal() -> None:
    r = parse(good(values={"hr": 72, "spo2": None}))
    assert isinstance(r, Reading) and r.values[0] == 72 and math.isnan(r.values[1])
    assert math.isnan(r.values[2])


def test_epoch_millis_and_array_values() -> None:
    r = parse(good(ts=1_795_000_000_000, values=[70, 96, 15]))
    assert isinstance(r, Reading) and r.ts == 1_795_000_000.0 and r.values == (70, 96, 15)


CASES = [
    ("oversized", good(pad="x" * 70_000), b"bed1"),
    ("not_json", b"{not json", b"bed1"),
    ("bad_unicode", b"\xff\xfe\x00garbage", b"bed1"),
    ("bad_unicode", b'{"stream": "bed\\ud800", "ts": 1795000000000, "values": {"hr": 1}}', None),
    (
        "bad_unicode",
        b'{"stream": "bed1", "ts": 1795000000000, "values": {"\\udfff": NaN}}',
        b"bed1",
    ),
    ("null_value", None, b"bed1"),
    ("not_object", b"[1, 2, 3]", b"bed1"),
    ("no_stream", orjson.dumps({"ts": 1, "values": {"hr": 1}}), b"bed1"),
    ("no_stream", good(stream=""), b"bed1"),
    ("stream_id_too_long", good(stream="b" * 257), None),
    ("key_mismatch", good(), b"bed2"),
    ("no_timestamp", good(ts=None), b"bed1"),
    ("bad_timestamp", good(ts="yesterday-ish"), b"bed1"),
    ("absurd_timestamp", good(ts="1970-01-02T00:00:00Z"), b"bed1"),
    ("absurd_timestamp", good(ts="2200-01-01T00:00:00Z"), b"bed1"),
    ("future_timestamp", good(ts="2099-01-01T00:00:00Z"), b"bed1"),
    ("future_timestamp", good(ts="2026-11-24T00:05:00.001Z"), b"bed1"),
    ("no_features", good(values={"weight": 80}), b"bed1"),
    ("no_features", good(values={"hr": None}), b"bed1"),
    ("no_features", good(values=[1, 2]), b"bed1"),
    ("bad_value", good(values={"hr": "72"}), b"bed1"),
    ("bad_value", good(values={"hr": True}), b"bed1"),
    ("non_finite", b'{"stream": "bed1", "ts": 1795000000000, "values": {"hr": NaN}}', b"bed1"),
    ("non_finite", b'{"stream": "bed1", "ts": 1795000000000, "values": {"hr": Infinity}}', b"bed1"),
    ("out_of_range", good(values={"hr": 9000}), b"bed1"),
]


@pytest.mark.parametrize(("reason", "value", "key"), CASES)
def test_each_rejection_case(reason: str, value: bytes, key: bytes) -> None:
    got = parse(value, key)
    assert not isinstance(got, Reading)
    assert (got.stage, got.reason) == (REASONS[reason], reason)


def test_the_future_is_judged_against_the_record_timestamp_not_the_wall_clock() -> None:
    at_limit = good(ts="2026-11-24T00:05:00Z")  # input.max_future_s (300 s) ahead: accepted
    assert isinstance(parse(at_limit), Reading)
    replayed = good(ts="2001-05-01T00:00:00Z")  # old data replayed: old record timestamps
    assert isinstance(parse(replayed, at=parse_ts_ms("2001-05-01T00:00:10Z")), Reading)
    assert parse(good(), at=parse_ts_ms("2026-11-23T19:30:00Z")).reason == "future_timestamp"
    assert isinstance(parse(good(ts="2099-01-01T00:00:00Z"), at=-1), Reading)  # no timestamp
    unchecked = config_mod.from_dict(CFG.model_dump() | {"input": {"max_future_s": None}})
    far = RawRecord("icu", 0, 0, b"bed1", good(ts="2099-01-01T00:00:00Z"), APPENDED_MS)
    assert isinstance(RecordParser(unchecked.input, unchecked.groups).parse(far), Reading)


def parse_ts_ms(text: str) -> int:
    return round(parse_ts(text) * 1000)


def test_no_group_for_an_unrouted_topic_and_reasons_never_hold_values() -> None:
    got = parse(good(), topic="other")
    assert got.reason == "no_group"
    canary = "987654.321"
    for _reason, value, key in CASES:
        got = parse(value.replace(b"9000", canary.encode()) if value else value, key)
        assert canary not in f"{got!r}"
    # every reason except the order ones (checked by the detector and loop) is covered above;
    # bad_batch is the batched shape's (tests/test_batched_records.py), too_many_streams and
    # poison the loop's (tests/test_poison_records.py, tests/test_poison_rule.py)
    covered = {c[0] for c in CASES} | {"no_group", "out_of_order", "duplicate", "other_partition"}
    covered |= {"bad_batch", "too_many_streams", "poison"}
    assert covered == set(REASONS)


def test_alert_event_json_has_the_contract_fields() -> None:
    event = AlertEvent(
        "id1",
        "open",
        "bed1",
        1795000000.5,
        7.9,
        5.0,
        "critical",
        "vitals-v3",
        (("spo2", 0.71), ("hr", 0.22)),
        1795000000.0,
        source=("icu", 3, 18211),
    )
    data = orjson.loads(event.to_json())
    assert set(data) >= ALERT_FIELDS
    # without how far it is off (a tuple of name and share): nulls, not NaN (JSON has none)
    assert data["top_features"][0] == {
        "name": "spo2",
        "share": 0.71,
        "value": None,
        "expected": None,
        "std_off": None,
    }
    named = (TopFeature("spo2", 0.71, 84.0, 97.0123456789, -6.12345), TopFeature("hr", 0.2, nan))
    off = dataclasses.replace(event, top_features=named)
    got = orjson.loads(off.to_json())["top_features"]
    assert got[0] == {
        "name": "spo2",
        "share": 0.71,
        "value": 84.0,
        "expected": 97.012346,
        "std_off": -6.12,
    }
    assert got[1]["value"] is None and got[1]["std_off"] is None
    assert data["source"] == {"topic": "icu", "partition": 3, "offset": 18211}
    assert data["ts"].endswith(".500Z") and parse_ts(data["ts"]) == 1795000000.5


def test_the_route_cache_stays_bounded_with_many_short_lived_streams() -> None:
    from streamlstm.record_parser import ROUTE_CACHE_MAX

    parser = RecordParser(CFG.input, CFG.groups)
    for k in range(ROUTE_CACHE_MAX + 10):
        assert parser.route("", f"bed-{k}") is not None
    assert len(parser._route_cache) <= ROUTE_CACHE_MAX
    assert parser.route("", "bed-1").name == CFG.groups[0].name  # still routed after a reset
