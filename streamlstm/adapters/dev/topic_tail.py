"""The newest reading timestamp already in a topic: ``simulate --bootstrap`` continues its
streams after it, so a rerun on the same streams is not all out of order (and in the DLQ)."""

from __future__ import annotations

import time

import orjson

from streamlstm.adapters.kafka.client import KafkaSource
from streamlstm.records import parse_ts


def newest_reading_ts(
    bootstrap: str, topic: str, ts_field: str = "ts", tail: int = 50, timeout_s: float = 10.0
) -> float | None:
    """The largest ``ts_field`` among the last ``tail`` records of each partition of
    ``topic`` (records that are not readings are passed over); None for an empty topic or
    one that does not exist yet."""
    source = KafkaSource(bootstrap, "streamlstm-simulate-tail")
    try:
        tps = [(topic, p) for p in source.partitions_for(topic)]
        if not tps:
            return None
        ends, starts = source.end_offsets(tps), source.beginning_offsets(tps)
        wanted = {tp: ends[tp] for tp in tps if ends[tp] > starts[tp]}
        if not wanted:
            return None
        source.assign(sorted(wanted))
        for (t, p), end in wanted.items():
            source.seek(t, p, max(starts[(t, p)], end - tail))
        newest: float | None = None
        deadline = time.monotonic() + timeout_s
        while wanted and time.monotonic() < deadline:
            for rec in source.poll(0.5):
                ts = _reading_ts(rec.value, ts_field)
                if ts is not None and (newest is None or ts > newest):
                    newest = ts
                if rec.offset + 1 >= wanted.get((rec.topic, rec.partition), 0):
                    wanted.pop((rec.topic, rec.partition), None)
        return newest
    finally:
        source.close()


def _reading_ts(value: bytes | None, ts_field: str) -> float | None:
    try:
        record = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return parse_ts(record.get(ts_field)) if isinstance(record, dict) else None
