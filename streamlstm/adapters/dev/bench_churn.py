"""``bench memory --churn``: does a worker's state stay bounded when streams come and go?

A real ``StreamWorker`` (decode, score, alerts, checkpoints, ``evict_idle``) reads records
from memory instead of Kafka, in data time: every record's broker timestamp is its reading's
time, and the loop's clock is the newest record's, so checkpoints run every
``checkpoint.interval_s`` and eviction every ``state.evict_check_s`` of stream time, as the
actor calls them in wall time. One partition, one model group, seeded random weights (memory
does not depend on them).

Timeline: ``steady`` long-lived streams send every ``interval_s`` throughout. After a
warm-up (the baseline is measured there), ``arrivals_per_s`` short-lived streams start per
second of stream time, each sends ``per_stream`` readings ``interval_s`` apart and goes
silent, until ``churn`` of them have come; then the steady streams go on for the TTL and two
eviction checks more, and the state is measured again. Memory: the state table's bytes
(capacity rows), the snapshot bytes, the process's resident bytes, and the active streams.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson

from streamlstm.adapters.dev.bench_live import resident_bytes
from streamlstm.config import Config
from streamlstm.evaluation.bench import bench_detector
from streamlstm.record_parser import RecordParser
from streamlstm.records import RawRecord
from streamlstm.simulate.generate import generate
from streamlstm.stream.engine import Engine
from streamlstm.stream.loop import StreamWorker

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, epoch seconds


@dataclass
class Churn:
    churn: int = 100_000  # short-lived streams, in all
    steady: int = 1_000  # long-lived streams
    per_stream: int = 4  # readings of each short-lived stream
    interval_s: int = 10  # between two readings of a stream
    arrivals_per_s: int = 100  # short-lived streams starting per second of stream time
    ttl_s: float = 60.0  # state.evict_idle_s

    def warmup_s(self, check_s: float) -> int:
        return int(self.ttl_s + 2 * check_s + self.interval_s)

    def churn_s(self) -> int:
        """Seconds from the first short-lived stream's start to the last one's last reading."""
        starts = -(-self.churn // self.arrivals_per_s)
        return starts + (self.per_stream - 1) * self.interval_s


class _MemorySource:
    """Records of one partition from a generator, offsets in order, up to ``stop_at`` (epoch
    seconds, exclusive): the bench stops there to evict or measure at an exact data time."""

    def __init__(self, records: Iterator[tuple[int, bytes, bytes]], topic: str) -> None:
        self.records, self.topic = records, topic
        self.offset, self.now_s = 0, float(T0)
        self.stop_at = float("inf")
        self.next = next(self.records, None)

    @property
    def done(self) -> bool:
        return self.next is None

    def poll(self, timeout_s: float, max_records: int) -> list[RawRecord]:
        out = []
        while self.next is not None and self.next[0] < self.stop_at and len(out) < max_records:
            ts_s, key, value = self.next
            out.append(RawRecord(self.topic, 0, self.offset, key, value, ts_s * 1000))
            self.offset += 1
            self.now_s = float(ts_s)
            self.next = next(self.records, None)
        return out

    def seek(self, topic: str, partition: int, offset: int) -> None:
        pass

    def commit(self, offsets: dict) -> None:
        pass


class _CountingSink:
    def __init__(self) -> None:
        self.alerts = self.dlq = 0

    def send_alert(self, key: bytes, value: bytes) -> None:
        self.alerts += 1

    def send_dlq(self, record: RawRecord, stage: str, reason: str) -> None:
        self.dlq += 1

    def flush(self, timeout_s: float) -> None:
        pass


class _SizeStore:
    """Keeps only the size of each partition's latest snapshot."""

    def __init__(self) -> None:
        self.bytes = 0

    def save(self, tp, blobs: dict[str, bytes], next_offset: int) -> None:
        self.bytes = sum(len(b) for b in blobs.values())

    def load(self, tp):
        return None


def _records(plan: Churn, check_s: float) -> Iterator[tuple[int, bytes, bytes]]:
    """(epoch second, key, value) in time order: steady and short-lived streams."""
    data = generate("vitals", 1, 997, seed=11)  # plausible vitals, reused
    rows, features = data.values[0], data.features  # the parser takes values by name
    warm, every = plan.warmup_s(check_s), plan.interval_s
    end = warm + plan.churn_s() + int(plan.ttl_s + 2 * check_s + every)
    for t in range(end):
        for i in range(t % every, plan.steady, every):  # each steady stream once per interval
            yield T0 + t, *_record(f"steady-{i:05d}", t, rows[(i + t) % len(rows)], features)
        for j in range(plan.per_stream):  # short-lived streams that started j readings ago
            start = t - warm - j * every
            if start < 0:
                continue
            first = start * plan.arrivals_per_s
            for k in range(first, min(first + plan.arrivals_per_s, plan.churn)):
                yield T0 + t, *_record(f"churn-{k:07d}", t, rows[(k + j) % len(rows)], features)


def _record(stream: str, t: int, row: np.ndarray, features: list[str]) -> tuple[bytes, bytes]:
    values = {
        f: (None if v != v else round(float(v), 2)) for f, v in zip(features, row, strict=True)
    }
    value = {"stream": stream, "ts": (T0 + t) * 1000, "values": values}
    return stream.encode(), orjson.dumps(value)


def bench_churn(config: Config, plan: Churn) -> dict:
    import torch

    group = config.groups[0]
    topic = (group.topics or config.kafka.input_topics)[0]
    detector = bench_detector(config, torch.device("cpu"))
    engine = Engine({group.name: detector}, {group.name: detector.new_table()})
    check_s = config.state.evict_check_s
    source = _MemorySource(_records(plan, check_s), topic)
    sink, store = _CountingSink(), _SizeStore()
    worker = StreamWorker(
        engine,
        RecordParser(config.input, config.groups),
        source,
        sink,
        store,
        clock=lambda: source.now_s,  # data time: checkpoints every interval_s of it
        interval_s=config.checkpoint.interval_s,
    )
    worker.assign([(topic, 0)])
    table = engine.tables[group.name]
    warm = plan.warmup_s(check_s)
    marks = {  # measured just before the first record at or after these times
        "baseline": T0 + warm,
        "half_churn": T0 + warm + plan.churn_s() // 2,
        "churn_end": T0 + warm + plan.churn_s(),
    }
    seen: dict[str, dict] = {}
    peak, next_evict, started = 0, T0 + check_s, time.perf_counter()
    while not source.done:
        source.stop_at = min([next_evict, *(t for n, t in marks.items() if n not in seen)])
        if worker.run_once(0.0, config.kafka.max_poll_records):
            peak = max(peak, len(table))
            continue
        if source.stop_at == next_evict:  # as the actor does every evict_check_s
            worker.evict_idle(plan.ttl_s)
            next_evict += check_s
        for name, at in marks.items():
            if name not in seen and at == source.stop_at:
                seen[name] = _state(worker, table, store)
    worker.evict_idle(plan.ttl_s)
    seen["after"] = _state(worker, table, store)
    c, counted = worker.counters, worker.totals().summary()
    return {
        "bench": "memory --churn",
        "short_lived_streams": plan.churn,
        "steady_streams": plan.steady,
        "readings_per_short_lived_stream": plan.per_stream,
        "interval_s": plan.interval_s,
        "arrivals_per_s": plan.arrivals_per_s,
        "ttl_s": plan.ttl_s,
        "evict_check_s": check_s,
        "checkpoint_interval_s": config.checkpoint.interval_s,
        "stream_time_s": round(source.now_s - T0),
        **{k: counted[k] for k in ("records", "scored", "warming", "dlq")},
        "evicted": c.evicted,
        "peak_active_streams": peak,
        **seen,
        "after_over_baseline": {
            k: round(seen["after"][k] / max(seen["baseline"][k], 1), 3)
            for k in ("active_streams", "snapshot_bytes", "table_bytes", "rss_bytes")
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def _state(worker: StreamWorker, table, store: _SizeStore) -> dict:
    worker.checkpoint()  # a snapshot of what is held now
    return {
        "active_streams": len(table),
        "table_capacity_rows": table.capacity,
        "table_bytes": table.nbytes(),
        "snapshot_bytes": store.bytes,
        "rss_bytes": resident_bytes(),
    }
