"""Data contracts (DESIGN §3): input parsing into ``Reading`` or ``Rejection``, alert events.

Reading values never appear in an exception text or a rejection reason: reasons are short
fixed codes, so patient data cannot leak into logs, DLQ headers or metric labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streamlstm.config import GroupConfig, InputConfig

# Rejection stages and reason codes: a closed set, used as DLQ headers and metric labels.
REASONS: dict[str, str] = {
    "oversized": "decode",
    "null_value": "decode",
    "bad_unicode": "decode",
    "not_json": "decode",
    "not_object": "schema",
    "no_stream": "schema",
    "stream_id_too_long": "schema",
    "key_mismatch": "schema",
    "no_timestamp": "schema",
    "bad_timestamp": "schema",
    "no_group": "schema",
    "no_features": "schema",
    "bad_batch": "schema",
    "bad_value": "schema",
    "non_finite": "range",
    "absurd_timestamp": "range",
    "future_timestamp": "range",
    "out_of_range": "range",
    "out_of_order": "order",
    "duplicate": "order",
    "other_partition": "order",
}


# A reading's position in its partition: (record offset, index in the record) as one int64,
# ``offset << POSITION_BITS | index``, so "applied before" stays one comparison per stream for
# single records (index 0) and batched ones alike. 16 bits: 65 536 readings per record, and
# offsets up to 2**47.
POSITION_BITS = 16
# Stream ids whose group is remembered before the cache starts afresh: ~180 bytes each, so
# short-lived streams (discharged patients, replaced sensors) cost at most ~9 MB here; a
# miss is one regex match per group (bench memory --churn measured +18 MB per 100k ids).
ROUTE_CACHE_MAX = 50_000
MAX_BATCH_READINGS = 1 << POSITION_BITS


def position(offset: int, index: int = 0) -> int:
    return offset << POSITION_BITS | index


def offset_of(position: int) -> tuple[int, int]:
    """(record offset, index in the record) of a reading's ``position``."""
    return position >> POSITION_BITS, position & (MAX_BATCH_READINGS - 1)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as a source delivered it; ``offset`` is its position in the partition.
    ``batch_index``: set on a dead letter for one reading of a batched record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0
    batch_index: int | None = None


# Not frozen: the live worker builds one per reading, and a frozen dataclass's __init__ costs
# 1.7 us against 0.3 us (7 fields, measured): at 250k readings/s that is 40 % of a core.
# unsafe_hash keeps it usable as a key, as it was; nothing mutates a Reading.
@dataclass(slots=True, unsafe_hash=True)
class Reading:
    """A usable reading. ``values`` follow the group's feature order; NaN = missing: a
    tuple, or in the live loop a row of the poll's float32 values array.
    ``offset``: the Kafka offset for a reading from ``RecordParser.parse``; the live loop
    sets its ``position`` (see above) so each reading of a batched record is ordered."""

    stream: str
    ts: float  # epoch seconds
    values: Sequence[float]
    group: str = ""
    topic: str = ""
    partition: int = 0
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Rejection:
    stage: str  # decode | schema | range | order
    reason: str  # one of REASONS

    @staticmethod
    def of(reason: str) -> Rejection:
        return Rejection(REASONS[reason], reason)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    alert_id: str
    event: str  # open | update | resolve | rebaseline
    stream: str
    ts: float
    score: float
    threshold: float
    severity: str  # warning | critical
    model_version: str
    top_features: tuple[tuple[str, float], ...]
    opened_ts: float
    kind: str = "anomaly"  # anomaly | signal_quality
    source: tuple[str, int, int] = ("", 0, 0)  # topic, partition, offset
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        topic, partition, offset = self.source
        return {
            "alert_id": self.alert_id,
            "event": self.event,
            "stream": self.stream,
            "ts": format_ts(self.ts),
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "severity": self.severity,
            "kind": self.kind,
            "model_version": self.model_version,
            "top_features": [{"name": n, "share": round(s, 4)} for n, s in self.top_features],
            "opened_ts": format_ts(self.opened_ts),
            "open_s": round(self.ts - self.opened_ts, 3),  # how long the alert has been open
            "source": {"topic": topic, "partition": partition, "offset": offset}
            | ({"index": self.extra["batch_index"]} if "batch_index" in self.extra else {}),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def format_ts(ts: float) -> str:
    """Epoch seconds -> RFC 3339 UTC with milliseconds, e.g. 2026-11-23T19:40:06.120Z."""
    stamp = datetime.fromtimestamp(round(ts, 3), tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def parse_ts(raw: Any) -> float | None:
    """RFC 3339 text (also 'YYYY-MM-DD HH:MM:SS', taken as UTC) or epoch milliseconds."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return raw / 1000.0 if math.isfinite(raw) else None
    if not isinstance(raw, str) or not raw:
        return None
    text = raw.strip()
    if text.isdigit():
        return int(text) / 1000.0
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


class RecordParser:
    """Turns raw bytes into a ``Reading`` of the right model group, or a ``Rejection``."""

    def __init__(self, input_config: InputConfig, groups: list[GroupConfig]):
        self.cfg = input_config
        self.groups = groups
        self.ts_min = parse_ts(input_config.ts_min)
        self.ts_max = parse_ts(input_config.ts_max)
        self._route_cache: dict[tuple[str, str], GroupConfig | None] = {}
        self.feature_index = {g.name: {f: i for i, f in enumerate(g.features)} for g in groups}
        self.ranges = {g.name: _range_vectors(g) for g in groups}

    def parse(self, record: RawRecord) -> Reading | Rejection:
        """A single-reading record (a batched one is ``stream.decode``'s)."""
        opened = self.open(record)
        if isinstance(opened, Rejection):
            return opened
        stream, group, obj = opened
        return self.build(
            stream, obj.get(self.cfg.ts_field), obj.get(self.cfg.values_field), group, record
        )

    def open(self, record: RawRecord) -> tuple[str, GroupConfig, dict] | Rejection:
        """The checks of the whole record: size, JSON, stream id, key, model group."""
        value = record.value
        if value is None:  # a tombstone: nothing to read
            return Rejection.of("null_value")
        if len(value) > self.cfg.max_payload_bytes:
            return Rejection.of("oversized")
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            return Rejection.of(_classify_bad_json(value))
        if not isinstance(obj, dict):
            return Rejection.of("not_object")
        stream = obj.get(self.cfg.stream_field)
        if not isinstance(stream, str) or not stream:
            return Rejection.of("no_stream")
        if len(stream) > self.cfg.max_stream_id_len:  # each id costs a row and a label of state
            return Rejection.of("stream_id_too_long")
        if record.key is not None and record.key != stream.encode():
            return Rejection.of("key_mismatch")
        group = self.route(record.topic, stream)
        if group is None:
            return Rejection.of("no_group")
        return stream, group, obj

    def route(self, topic: str, stream: str) -> GroupConfig | None:
        """First group whose topics (or any topic when empty) and stream pattern match."""
        cache_key = (topic, stream)
        if cache_key not in self._route_cache:
            import re

            found = None
            for group in self.groups:
                topic_ok = not group.topics or topic in group.topics or not topic
                if topic_ok and re.fullmatch(group.stream_pattern, stream):
                    found = group
                    break
            if len(self._route_cache) >= ROUTE_CACHE_MAX:
                self._route_cache.clear()
            self._route_cache[cache_key] = found
        return self._route_cache[cache_key]

    def build(
        self,
        stream: str,
        raw_ts: Any,
        raw_values: Any,
        group: GroupConfig,
        record: RawRecord | None = None,
    ) -> Reading | Rejection:
        """Validate timestamp and values; shared by the JSON path and CSV/file input."""
        if raw_ts is None:
            return Rejection.of("no_timestamp")
        ts = parse_ts(raw_ts)
        if ts is None:
            return Rejection.of("bad_timestamp")
        if not self.ts_min <= ts <= self.ts_max:
            return Rejection.of("absurd_timestamp")
        if self._from_the_future(ts, record):
            return Rejection.of("future_timestamp")
        values = self._values(raw_values, group)
        if isinstance(values, Rejection):
            return values
        topic, partition, offset = (
            (record.topic, record.partition, record.offset) if record else ("", 0, 0)
        )
        return Reading(stream, ts, values, group.name, topic, partition, offset)

    def _from_the_future(self, ts: float, record: RawRecord | None) -> bool:
        """Stamped more than ``max_future_s`` after its Kafka record (when it has one)."""
        limit = self.cfg.max_future_s
        if limit is None or record is None or record.timestamp_ms <= 0:
            return False
        return ts > record.timestamp_ms / 1000.0 + limit

    def _values(self, raw: Any, group: GroupConfig) -> tuple[float, ...] | Rejection:
        n_features = len(group.features)
        out = [math.nan] * n_features
        if isinstance(raw, dict):
            index = self.feature_index[group.name]
            pairs = [(index[k], v) for k, v in raw.items() if k in index]
        elif isinstance(raw, list) and len(raw) == n_features:
            pairs = list(enumerate(raw))
        else:
            return Rejection.of("no_features")
        usable = 0
        for i, v in pairs:
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float):
                return Rejection.of("bad_value")
            v = float(v)
            if not math.isfinite(v):
                return Rejection.of("non_finite")
            out[i] = v
            usable += 1
        if usable == 0:
            return Rejection.of("no_features")
        lows, highs = self.ranges[group.name]
        for i in range(n_features):
            if out[i] < lows[i] or out[i] > highs[i]:  # NaN compares False: missing is fine
                return Rejection.of("out_of_range")
        return tuple(out)


def _range_vectors(group: GroupConfig) -> tuple[list[float], list[float]]:
    lows = [group.feature_ranges.get(f, (-math.inf, math.inf))[0] for f in group.features]
    highs = [group.feature_ranges.get(f, (-math.inf, math.inf))[1] for f in group.features]
    return lows, highs


def _classify_bad_json(value: bytes) -> str:
    """Why orjson refused ``value``: not UTF-8 or a lone surrogate escape (``"\\ud800"``,
    which no UTF-8 text can hold), NaN/Infinity literals, or not JSON at all. The stdlib
    parser accepts the last two kinds of text, so it tells them apart."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "bad_unicode"
    constants: list[str] = []
    try:
        obj = json.loads(text, parse_constant=lambda name: constants.append(name) or 0.0)
    except (ValueError, RecursionError):
        return "not_json"
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "bad_unicode"
    return "non_finite" if constants else "not_json"
