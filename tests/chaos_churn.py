"""Data and bookkeeping for the churn chaos case (issue 18): short-lived streams beside the
oracle's scenario, in data time.

Every record carries a Kafka timestamp equal to its reading's time, and records are
produced in time order: idle eviction judges a stream against its partition's newest
applied reading, so data time advances with the records and which streams are idle at any
point of the input is known exactly (``idle_streams``), whatever the wall clock does.
The scenario's records keep their order and partitions, but churn records sit between them,
so their offsets differ from a run without churn: ``Origins`` maps a partition's offsets
back to scenario indices for the comparisons.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
from kafka import KafkaProducer

from streamlstm.adapters.kafka.client import ensure_topics
from streamlstm.config import Config
from streamlstm.records import format_ts, offset_of
from tests import chaos_oracle as co
from tests import live_helpers as lh

TTL_S = 600.0  # state.evict_idle_s: ten scenario intervals (the scenario sends every 60 s)
MAX_GAP_S = 900.0  # detector.max_gap_s (test.yaml): a longer gap re-warms without eviction
PER_STREAM, EVERY_S = 3, 20  # readings of a short-lived stream, seconds apart (data time)
T0 = 1_767_225_600  # the scenario's first reading (simulate's start_ts)
BOUNDARY = T0 + 9_000  # data time where the input is cut in two (phase 1 is before it)
CHURN_SPAN_S = 15_000  # short-lived streams start over [T0 + 60, T0 + 60 + span)
RETURNING = "extra-return"  # scores, falls idle past the TTL, then returns (re-warms)
RETURN_FIRST = (BOUNDARY - 2_140, 60, 25)  # first life: start, spacing, readings
RETURN_AGAIN = (BOUNDARY + 60, 60, 5)  # second life, 760 s later: < MAX_GAP_S, > TTL_S


@dataclass(frozen=True)
class Timed:
    key: bytes | None
    value: bytes
    ts: int  # seconds: the reading's time and the record's Kafka timestamp
    partition: int
    origin: int  # index in the scenario's records; -1 for a record the case adds
    stream: str | None  # None for the scenario's bad records


def reading(stream: str, ts: int, k: int) -> bytes:
    values = {"hr": 70 + k % 3, "spo2": 96 + k % 2, "rr": 15 + k % 4}  # no stuck sensor
    return orjson.dumps({"stream": stream, "ts": format_ts(float(ts)), "values": values})


def timed_scenario(records: list[tuple[bytes | None, bytes]], parts: int) -> list[Timed]:
    """The scenario's records in order; a bad record takes its predecessor's time (its
    own may be absurd) and names no stream (it goes to the DLQ)."""
    out, ts, bad = [], T0, bad_indices(len(records))
    for i, (key, value) in enumerate(records):
        stream = None
        if i not in bad:
            doc = orjson.loads(value)
            ts, stream = _epoch(doc["ts"]), str(doc["stream"])
        out.append(Timed(key, value, ts, co.partition_of(key, i, parts), i, stream))
    return out


def bad_indices(n_records: int) -> set[int]:
    """Where ``chaos_oracle.build_scenario`` inserted its bad records."""
    step = (n_records - co.BAD) // (co.BAD + 1)
    return {step * (k + 1) + k for k in range(co.BAD)}


def _epoch(ts: str | float) -> int:
    if isinstance(ts, int | float):
        return int(ts)
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


def churn_records(n: int, parts: int) -> list[Timed]:
    """``n`` short-lived streams of PER_STREAM readings, and the returning stream."""
    out = []
    for k in range(n):
        stream = f"extra-churn-{k:06d}"
        start = T0 + 60 + k * CHURN_SPAN_S // n
        for j in range(PER_STREAM):
            out.append(_added(stream, start + j * EVERY_S, k + j, parts))
    for start, every, count in (RETURN_FIRST, RETURN_AGAIN):
        out.extend(_added(RETURNING, start + i * every, i, parts) for i in range(count))
    return out


def _added(stream: str, ts: int, k: int, parts: int) -> Timed:
    key = stream.encode()
    return Timed(key, reading(stream, ts, k), ts, co.partition_of(key, 0, parts), -1, stream)


def in_time_order(scenario: list[Timed], added: list[Timed]) -> list[Timed]:
    """Merged by time; the scenario's records first at equal times, each list's order kept."""
    return sorted([*scenario, *added], key=lambda t: (t.ts, t.origin < 0))


def input_topic(cfg: Config) -> None:
    """The worker's topics; the input one keeps records of any age (these are 2026-01-01:
    the default retention would delete a rolled segment of them mid-test)."""
    ensure_topics(
        cfg.kafka.bootstrap,
        {cfg.kafka.input_topics[0]: cfg.kafka.input_partitions},
        configs={"retention.ms": "-1"},
    )
    lh.setup_topics(cfg)


def produce(cfg: Config, records: list[Timed]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=cfg.kafka.bootstrap, linger_ms=20, batch_size=1 << 18, acks="all"
    )
    topic = cfg.kafka.input_topics[0]
    for t in records:
        producer.send(
            topic, key=t.key, value=t.value, partition=t.partition, timestamp_ms=t.ts * 1000
        )
    producer.flush()
    producer.close()


class Origins:
    """Per partition, the scenario index of each offset (-1: a record the case added)."""

    def __init__(self, records: list[Timed], parts: int) -> None:
        self.of: dict[int, list[int]] = {p: [] for p in range(parts)}
        self.home: dict[str, int] = {}
        for t in records:
            self.of[t.partition].append(t.origin)
            if t.stream is not None:
                self.home.setdefault(t.stream, t.partition)

    def translate(self, run: co.Outcome) -> co.Outcome:
        """``run`` with offsets replaced by scenario indices (and alert ids by what they
        alert on): comparable with a run whose offsets differ."""
        run.last_offsets = {  # positions: (offset, index in a batched record)
            s: self.of[self.home[s]][offset_of(p)[0]] for s, p in run.last_offsets.items()
        }
        run.dlq_sources = {("", p, str(self.of[int(p)][int(o)])) for _, p, o in run.dlq_sources}
        return run

    def alerts(self, cfg: Config) -> set[str]:
        """Each alert event of the scenario's streams, by stream, event, times and source."""
        out = set()
        for e in lh.alert_events(cfg):
            if e["stream"].startswith(co.EXTRA_PREFIX):
                continue
            src = e["source"]
            origin = self.of[src["partition"]][src["offset"]]
            out.add(f"{e['stream']}|{e['event']}|{e['ts']}|{e['opened_ts']}|{origin}")
        return out


def idle_streams(records: list[Timed], parts: int, ttl_s: float) -> dict[int, set[str]]:
    """Per partition, the streams idle once ``records`` are consumed: last reading more
    than ``ttl_s`` before the partition's newest reading (as ``stream.eviction`` judges; a
    bad record has no reading)."""
    newest = dict.fromkeys(range(parts), 0)
    last: dict[str, tuple[int, int]] = {}
    for t in records:
        if t.stream is not None:
            newest[t.partition] = max(newest[t.partition], t.ts)
            last[t.stream] = (t.partition, t.ts)
    out: dict[int, set[str]] = {p: set() for p in range(parts)}
    for stream, (p, ts) in last.items():
        if ts < newest[p] - ttl_s:
            out[p].add(stream)
    return out


def totals(sup) -> dict[str, int]:
    """The workers' counters, summed."""
    keys = ("records", "scored", "warming", "dlq", "evicted", "streams", "checkpoints")
    stats = sup.stats()
    return {k: sum(int(s.get(k, 0)) for s in stats) for k in keys}


def wait_evicted(sup, want: int, timeout_s: float = 60.0) -> dict[str, int]:
    """Watch until the workers evicted ``want`` streams in all (or more: then the caller's
    assertion says so); returns the counters then."""
    deadline = time.monotonic() + timeout_s
    while True:
        co.WATCH_NOTES.extend(sup.watch())
        got = totals(sup)
        if got["evicted"] >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def snapshot_streams(path: Path) -> tuple[set[str], int]:
    """The streams a snapshot file holds, and its next offset."""
    from streamlstm.adapters.ops.storage import decode_snapshot
    from streamlstm.stream.ledger import LEDGER_BLOB

    blobs, offset = decode_snapshot(path.read_bytes())
    blobs.pop(LEDGER_BLOB)  # the outcome counts, beside the groups' state
    streams: set[str] = set()
    for blob in blobs.values():
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            streams.update(json.loads(npz["header"].tobytes())["streams"])
    return streams, offset


def newest_snapshots(
    cfg: Config, want: dict[int, set[str]], timeout_s: float = 60.0
) -> dict[int, int]:
    """Per partition, the bytes of the newest snapshot once it holds exactly ``want``'s
    streams at the end of the partition (polls: the next checkpoint writes it)."""
    from streamlstm.adapters.ops.storage import SnapshotStore

    store = SnapshotStore(cfg.checkpoint.dir, cfg.checkpoint.keep)
    ends = co.by_partition(lh.end_offsets(cfg))
    deadline, seen = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        sizes = {}
        for topic, part in co.input_tps(cfg):
            names = store._names((topic, part))
            if not names:
                break
            path = Path(store._dir((topic, part))) / names[0]
            try:
                streams, offset = snapshot_streams(path)
            except (OSError, ValueError):  # replaced while read: the next look sees it
                break
            seen[part] = (len(streams), offset)
            if offset != ends[part] or streams != want[part]:
                break
            sizes[part] = path.stat().st_size
        if len(sizes) == len(want):
            return sizes
        time.sleep(0.2)
    raise AssertionError(f"newest snapshots (streams, offset) {seen}, want {want} at {ends}")
