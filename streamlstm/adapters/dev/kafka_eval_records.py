"""Readings in, rows out: the Kafka records of ``streamlstm evaluate --through-kafka``.

The file's readings as input-contract records (checked to parse back to the very same
reading, so the broker replays the data the offline path scores), sent in order; the alerts
and DLQ topics read back to their end offsets; and the replay rows rebuilt from them, aligned
with the file's readings exactly as ``evaluation.replay.replay`` aligns its own rows.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from streamlstm.adapters.kafka.client import _quiet_value_logging
from streamlstm.adapters.kafka.login import check_login
from streamlstm.adapters.kafka.options import client_options
from streamlstm.config import Config
from streamlstm.evaluation.replay import ReplayRow
from streamlstm.record_parser import RecordParser
from streamlstm.records import RawRecord, Reading, format_ts, parse_ts

Source = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes
    value: bytes


def ts_value(ts: float) -> int | float | str:
    """A timestamp field that parses back to exactly ``ts`` (epoch seconds, a float).

    Epoch milliseconds as an integer when that is exact (the usual case: ms-resolution
    timestamps); otherwise a float or microsecond RFC 3339 text. A value that cannot come
    back bit-exact would change the gap logic's inputs and break the comparison with the
    offline path, so it is an error rather than a silent rounding.
    """
    millis = round(ts * 1000)
    candidates: list[int | float | str] = [millis, ts * 1000.0, format_ts(ts)]
    if math.isfinite(ts):
        from datetime import UTC, datetime

        stamp = datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds")
        candidates.append(stamp.replace("+00:00", "Z"))
    for value in candidates:
        if parse_ts(value) == ts:
            return value
    raise ValueError("a timestamp has no exact text or epoch-ms form")


def encode_readings(
    readings: list[Reading], config: Config, topics_of_group: dict[str, list[str]]
) -> list[Outgoing]:
    """Input-contract records of ``readings`` (same order), keyed by stream.

    Each reading goes to the first of its group's topics on which the live parser routes its
    stream back to that group (a CSV picks its group by columns, the live worker by topic and
    stream pattern: a disagreement would score the stream with another model).
    """
    parser = RecordParser(config.input, config.groups)
    names = {g.name: list(g.features) for g in config.groups}
    fields = config.input
    topic_of: dict[tuple[str, str], str] = {}
    out = []
    for r in readings:
        route = (r.group, r.stream)
        if route not in topic_of:
            topic_of[route] = _topic_for(parser, topics_of_group.get(r.group, []), r)
        values = {
            f: (None if math.isnan(v) else v) for f, v in zip(names[r.group], r.values, strict=True)
        }
        payload = {fields.stream_field: r.stream, fields.ts_field: ts_value(r.ts)}
        payload[fields.values_field] = values
        record = Outgoing(topic_of[route], r.stream.encode(), orjson.dumps(payload))
        _check_round_trip(parser, record, r)
        out.append(record)
    return out


def _topic_for(parser: RecordParser, topics: list[str], r: Reading) -> str:
    for topic in topics:
        group = parser.route(topic, r.stream)
        if group is not None and group.name == r.group:
            return topic
    raise SystemExit(
        f"streamlstm evaluate: stream {r.stream!r} is scored by group {r.group!r} offline, but "
        f"on the input topics {topics} the live worker would route it to another group (or "
        "none): check the groups' topics and stream_pattern"
    )


def _check_round_trip(parser: RecordParser, record: Outgoing, r: Reading) -> None:
    got = parser.parse(RawRecord(record.topic, 0, 0, record.key, record.value))
    same = (
        isinstance(got, Reading)
        and (got.stream, got.ts, got.group) == (r.stream, r.ts, r.group)
        and all(
            a == b or (math.isnan(a) and math.isnan(b))
            for a, b in zip(got.values, r.values, strict=True)
        )
    )
    if not same:  # never print the values: they may be patient data
        raise RuntimeError(
            f"a reading of stream {r.stream!r} does not parse back unchanged from its record"
        )


def dlq_sources(records: list[Any]) -> set[Source]:
    """(topic, partition, offset) of the input records the workers sent to the DLQ."""
    out = set()
    for rec in records:
        h = {k: v.decode() for k, v in rec.headers or []}
        if "source.topic" in h:
            out.add((h["source.topic"], int(h["source.partition"]), int(h["source.offset"])))
    return out


def rows_from_alerts(
    readings: list[Reading],
    sources: list[Source],
    events: list[dict[str, Any]],
    dropped: set[Source],
    threshold: float,
) -> list[ReplayRow]:
    """Replay rows of the readings the workers scored, rebuilt from their alert events.

    ``sources[i]`` is where ``readings[i]`` was produced. A row is open (``is_anomaly``) from
    the reading of its ``open`` event up to, not including, that of its ``resolve``, as the
    detector's ``in_alert`` is (the state after the reading). The alerts topic carries no
    per-reading score, so ``score`` is the event's score on event readings and NaN elsewhere.
    Alerts are at-least-once: a worker restarted after a crash re-emits the same events
    with the same ids, so duplicates are dropped.
    """
    index = {src: i for i, src in enumerate(sources)}
    at: dict[int, list[dict[str, Any]]] = {}
    seen = set()
    for e in events:
        s = e["source"]
        src = (s["topic"], s["partition"], s["offset"])
        if (e["alert_id"], e["event"], src) in seen:
            continue
        seen.add((e["alert_id"], e["event"], src))
        at.setdefault(index[src], []).append(e)
    rows, open_now = [], set()
    for i, r in enumerate(readings):
        if sources[i] in dropped:
            continue  # rejected by the detector (out of order, duplicate): no row offline either
        row = ReplayRow(r.stream, r.ts, math.nan, threshold, False, False, math.nan)
        row.offset = r.offset
        for e in at.get(i, []):
            if row.alert_event != "open":  # an open outranks an update, as in evaluation.replay
                row.alert_event, row.alert_id = e["event"], e["alert_id"]
            if e["top_features"] and not row.top_feature:
                row.top_feature = e["top_features"][0]["name"]
                row.top_std_off = e["top_features"][0].get("std_off")
            row.score = e["score"]
            if e["event"] == "open":
                open_now.add(r.stream)
            elif e["event"] == "resolve":
                open_now.discard(r.stream)
        row.is_anomaly = r.stream in open_now
        rows.append(row)
    return rows


def produce_in_order(
    bootstrap: str, records: list[Outgoing], options: dict[str, Any], quiet: bool
) -> list[Source]:
    """Send in order; returns where each record landed (topic, partition, offset)."""
    from tqdm import tqdm

    _quiet_value_logging()  # record values (patient data) never reach a debug log
    check_login(bootstrap, options)
    # Idempotent with acks=all: a retried batch can neither be duplicated nor overtake the
    # next one, so each stream's readings arrive in the order they were sent.
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        batch_size=256 * 1024,
        **options,
    )
    try:
        futures = []
        with tqdm(
            total=len(records), desc="produce", unit="reading", disable=quiet, file=sys.stderr
        ) as bar:
            for n, rec in enumerate(records, 1):
                futures.append(producer.send(rec.topic, key=rec.key, value=rec.value))
                if n % 1000 == 0 or n == len(records):
                    bar.update(n - bar.n)
        producer.flush()
        return [(m.topic, m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close(timeout=10)


def read_to_end(cfg: Config, topic: str, timeout_s: float = 60.0) -> list:
    """Every record of ``topic`` up to its end offsets now (the workers have drained)."""

    _quiet_value_logging()
    consumer = KafkaConsumer(
        bootstrap_servers=cfg.kafka.bootstrap,
        enable_auto_commit=False,
        allow_auto_create_topics=False,
        **client_options(cfg.kafka),
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not read {topic} to its end in {timeout_s:.0f} s")
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()
