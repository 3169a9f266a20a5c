"""Input parsing (DESIGN §3): a record's bytes into a ``Reading`` of the right model group,
or a ``Rejection`` with a fixed reason code (``records.REASONS``).

Reading values never appear in an exception text or a rejection reason, so patient data
cannot leak into logs, DLQ headers or metric labels.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from streamlstm.config import GroupConfig, InputConfig
from streamlstm.records import RawRecord, Reading, Rejection, parse_ts

# Stream ids whose group is remembered before the cache starts afresh: ~180 bytes each, so
# short-lived streams (discharged patients, replaced sensors) cost at most ~9 MB here; a
# miss is one regex match per group (bench memory --churn measured +18 MB per 100k ids).
ROUTE_CACHE_MAX = 50_000


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
