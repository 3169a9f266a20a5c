"""A poll's records -> each model group's readings as columns, and what was rejected.

Two input shapes (DESIGN §3, README "Input record"): one reading per record, and a batched
record: many readings of one stream, columnar,
``{"stream": "bed1", "ts": [t0, t1, ...], "values": {"hr": [72, 73, ...], ...}}``.
A single record is decoded as a batch of one, so both shapes pass the same checks:

- per record (JSON, stream id, key, model group, batch shape): ``RecordParser.open`` and
  ``_batch_columns``; a failure rejects the whole record;
- per reading (timestamp, values, ranges): vectorised over the whole poll in ``_validate``;
  a failure rejects that reading alone, with its index in the record.

``RecordParser.build`` is the same per-reading check written for one reading (CSV input);
a test holds the two to the same verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamlstm.config import GroupConfig
from streamlstm.record_parser import RecordParser
from streamlstm.records import (
    MAX_BATCH_READINGS,
    POSITION_BITS,
    RawRecord,
    Reading,
    Rejection,
    offset_of,
    parse_ts,
)

# Per-reading rejections, in the order a single reading is checked (the first one wins).
READING_CHECKS = (
    "no_timestamp",
    "bad_timestamp",
    "absurd_timestamp",
    "future_timestamp",
    "bad_value",
    "non_finite",
    "no_features",
    "out_of_range",
)
_NUMBERS = {int, float}
_NUMBERS_OR_NULL = {int, float, type(None)}


@dataclass
class _Pending:
    """One group's readings while a poll is read: plain lists, extended per record."""

    streams: list[str] = field(default_factory=list)
    ts: list = field(default_factory=list)
    columns: list[list] = field(default_factory=list)  # per feature, raw JSON values
    record: list[int] = field(default_factory=list)  # index of its record in the poll
    index: list[int] = field(default_factory=list)  # index in its record


@dataclass
class GroupColumns:
    """A group's usable readings of one poll, in poll order (a stream's in its order)."""

    streams: list[str]
    ts: np.ndarray  # (N,) float64 epoch seconds
    values: np.ndarray  # (N, F) float64, NaN = missing
    record: np.ndarray  # (N,) int64 index of its record in the poll
    position: np.ndarray  # (N,) int64 offset << POSITION_BITS | index in its record


@dataclass
class Decoded:
    groups: dict[str, GroupColumns]
    # (record index in the poll, index in a batched record or None for the whole record, why)
    rejected: list[tuple[int, int | None, Rejection]]  # the index: None for a single record
    batched: set[int]  # indices of the poll's batched records


def decode_poll(parser: RecordParser, records: list[RawRecord]) -> Decoded:
    pending: dict[str, _Pending] = {}
    rejected: list[tuple[int, int | None, Rejection]] = []
    batched: set[int] = set()
    ts_field, values_field = parser.cfg.ts_field, parser.cfg.values_field
    for i, rec in enumerate(records):
        opened = parser.open(rec)
        if isinstance(opened, Rejection):
            rejected.append((i, None, opened))
            continue
        stream, group, obj = opened
        into = pending.get(group.name)
        if into is None:
            into = pending[group.name] = _Pending(columns=[[] for _ in group.features])
        raw_ts, raw = obj.get(ts_field), obj.get(values_field)
        if not isinstance(raw_ts, list):  # one reading: appended, not made a batch of one
            _append_single(into, group, stream, raw_ts, raw, i)
            continue
        got = _batch_columns(raw_ts, raw, group)
        if isinstance(got, Rejection):
            rejected.append((i, None, got))
            continue
        batched.add(i)
        n = len(raw_ts)
        into.streams.extend([stream] * n)
        into.ts.extend(raw_ts)
        for column, values in zip(into.columns, got, strict=True):
            column.extend(values)
        into.record.extend([i] * n)
        into.index.extend(range(n))
    by_name = {g.name: g for g in parser.groups}
    groups = {
        name: _validate(parser, by_name[name], into, records, rejected)
        for name, into in pending.items()
        if into.streams
    }
    rejected = [(i, index if i in batched else None, why) for i, index, why in rejected]
    return Decoded(groups, rejected, batched)


def readings_of(parser: RecordParser, records: list[RawRecord]) -> list[Reading]:
    """Every usable reading of ``records`` in record order, a batched record's expanded,
    each with its record's Kafka offset: cold-start and retraining data, where
    ``RecordParser.parse`` (one reading per record) would drop every batched record."""
    found: list[tuple[int, int, Reading]] = []  # (record index, index in it, reading)
    for group, cols in decode_poll(parser, records).groups.items():
        rows = zip(
            cols.streams,
            cols.ts.tolist(),
            cols.values.tolist(),
            cols.record.tolist(),
            cols.position.tolist(),
            strict=True,
        )
        for stream, ts, values, i, pos in rows:
            rec = records[i]
            reading = Reading(
                stream, ts, tuple(values), group, rec.topic, rec.partition, rec.offset
            )
            found.append((i, offset_of(pos)[1], reading))
    found.sort(key=lambda item: item[:2])
    return [reading for _, _, reading in found]


def _append_single(
    into: _Pending, group: GroupConfig, stream: str, raw_ts: object, raw: object, i: int
) -> None:
    """A single reading's fields onto the group's lists. A ``values`` of no usable shape
    reads as no values at all, so its timestamp is judged first, as ``RecordParser.build``
    does."""
    into.streams.append(stream)
    into.ts.append(raw_ts)
    into.record.append(i)
    into.index.append(0)
    if isinstance(raw, dict):
        get = raw.get
        for column, name in zip(into.columns, group.features, strict=True):
            column.append(get(name))
    elif isinstance(raw, list) and len(raw) == len(group.features):
        for column, value in zip(into.columns, raw, strict=True):
            column.append(value)
    else:
        for column in into.columns:
            column.append(None)


def _batch_columns(raw_ts: list, raw: object, group: GroupConfig) -> list | Rejection:
    """A batched record's values as one list per feature, each as long as ``raw_ts``."""
    n, n_features = len(raw_ts), len(group.features)
    if n == 0:
        return Rejection.of("bad_batch")
    if n > MAX_BATCH_READINGS:
        return Rejection.of("oversized")
    if isinstance(raw, dict):
        if not any(f in raw for f in group.features):
            return Rejection.of("no_features")
        columns = [raw.get(f) for f in group.features]
        columns = [[None] * n if c is None else c for c in columns]
    elif isinstance(raw, list) and len(raw) == n_features:
        columns = raw
    else:
        return Rejection.of("no_features")
    if any(not isinstance(c, list) or len(c) != n for c in columns):
        return Rejection.of("bad_batch")  # every feature an array as long as "ts"
    return columns


def _validate(
    parser: RecordParser,
    group: GroupConfig,
    into: _Pending,
    records: list[RawRecord],
    rejected: list,
) -> GroupColumns:
    """Check every reading of the group at once; reject the bad ones one by one."""
    n = len(into.streams)
    record = np.asarray(into.record, dtype=np.int64)
    failed = np.zeros((len(READING_CHECKS), n), dtype=bool)
    ts = _timestamps(into.ts, failed)
    failed[2] = ~((ts >= parser.ts_min) & (ts <= parser.ts_max))  # after 0 and 1: first wins
    limit = parser.cfg.max_future_s
    if limit is not None:
        stamp_ms = np.fromiter((r.timestamp_ms for r in records), np.float64, len(records))
        stamp_ms = stamp_ms[record]
        failed[3] = (stamp_ms > 0) & (ts > stamp_ms / 1000.0 + limit)
    values = np.empty((n, len(group.features)), dtype=np.float64)
    for f, column in enumerate(into.columns):
        values[:, f] = _numbers(column, failed)
    failed[5] |= np.isinf(values).any(axis=1)
    failed[6] = np.isnan(values).all(axis=1)
    lows, highs = (np.asarray(v, dtype=np.float64) for v in parser.ranges[group.name])
    failed[7] = ((values < lows) | (values > highs)).any(axis=1)  # NaN compares False
    bad = failed.any(axis=0)
    index = np.asarray(into.index, dtype=np.int64)
    for j in np.flatnonzero(bad):
        reason = READING_CHECKS[int(np.argmax(failed[:, j]))]
        rejected.append((int(record[j]), int(index[j]), Rejection.of(reason)))
    ok = ~bad
    offsets = np.fromiter((r.offset for r in records), np.int64, len(records))
    keep = np.flatnonzero(ok)
    return GroupColumns(
        [into.streams[j] for j in keep] if not ok.all() else into.streams,
        ts[ok],
        values[ok],
        record[ok],
        (offsets[record[ok]] << POSITION_BITS) | index[ok],
    )


def _timestamps(raw: list, failed: np.ndarray) -> np.ndarray:
    """Epoch seconds; marks failed[0] (missing) and failed[1] (unreadable)."""
    if set(map(type, raw)) <= _NUMBERS:  # epoch milliseconds: the common fast case
        try:
            return np.asarray(raw, dtype=np.float64) / 1000.0
        except OverflowError:
            pass
    ts = np.zeros(len(raw))
    for j, value in enumerate(raw):
        if value is None:
            failed[0, j] = True
            continue
        try:
            got = parse_ts(value)
        except (OverflowError, ValueError):
            got = None
        if got is None:
            failed[1, j] = True
        else:
            ts[j] = got
    return ts


def _numbers(column: list, failed: np.ndarray) -> np.ndarray:
    """A feature's values as float64 (null -> NaN); marks failed[4] (not a number) and
    failed[5] (too large for a float)."""
    if set(map(type, column)) <= _NUMBERS_OR_NULL:
        try:
            return np.asarray(column, dtype=np.float64)
        except OverflowError:
            pass
    out = np.full(len(column), np.nan)
    for j, value in enumerate(column):
        if value is None:
            continue
        if type(value) not in _NUMBERS:  # bool, text, arrays, objects
            failed[4, j] = True
            continue
        try:
            out[j] = float(value)
        except OverflowError:
            failed[5, j] = True
    return out
