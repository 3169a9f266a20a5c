"""Produce simulated readings to Kafka at a steady rate, in time order, keyed by stream id.

The simulated clock runs ahead of the wall clock: every stream advances one reading per
``1 / per_stream_rate`` wall seconds, so minutes of demo cover hours of patient data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson

from streamlstm.records import format_ts
from streamlstm.simulate.generate import bad_records

log = logging.getLogger(__name__)


@dataclass
class ProduceStats:
    sent: int = 0  # readings, in good records
    records: int = 0  # good records: ``sent`` / the readings per record
    bad: int = 0  # bad records, one reading's worth each (a bad record is rejected whole)
    steps: int = 0  # simulated time steps fully produced


def step_records(data, step: int) -> Iterator[tuple[bytes, bytes]]:
    """The records of simulated time step ``step``: one per stream, in the input contract."""
    for s, stream in enumerate(data.streams):
        ts = data.ts[s][step]
        row = data.values[s][step]
        values = {
            f: (None if np.isnan(v) else round(float(v), 3))
            for f, v in zip(data.features, row, strict=True)
        }
        payload = {"stream": stream, "ts": format_ts(float(ts)), "values": values}
        yield stream.encode(), orjson.dumps(payload)


def batch_value(stream: str, ts_s: list[float], rows: np.ndarray, features: list[str]) -> bytes:
    """One batched input record: ``rows`` (n, F) readings of ``stream``, columnar, times in
    epoch milliseconds, missing values null (the README's batched record)."""
    values = {
        f: [None if v != v else round(float(v), 3) for v in rows[:, j]]
        for j, f in enumerate(features)
    }
    ts_ms = [round(t * 1000) for t in ts_s]
    return orjson.dumps({"stream": stream, "ts": ts_ms, "values": values})


def batched_steps(data, first: int, count: int) -> Iterator[tuple[bytes, bytes]]:
    """Steps ``first`` .. ``first + count - 1`` of every stream, one batched record each."""
    for s, stream in enumerate(data.streams):
        ts = data.ts[s][first : first + count].tolist()
        yield (
            stream.encode(),
            batch_value(stream, ts, data.values[s][first : first + count], data.features),
        )


def produce(
    producer,
    topic: str,
    data,
    records_per_s: float,
    duration_s: float,
    bad_fraction: float = 0.0,
    seed: int = 0,
    stop: threading.Event | None = None,
    stats: ProduceStats | None = None,
    per_record: int = 1,
) -> ProduceStats:
    """Send steps in order at ``records_per_s`` readings/s until ``duration_s`` or the data
    run out; with ``per_record`` > 1, ``per_record`` steps of a stream per batched record.

    ``producer`` is a kafka-python ``KafkaProducer``; bad records (for DLQ demos and tests)
    are interleaved with the given probability, keyed like real ones.
    """

    stats = stats or ProduceStats()
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    length = min(len(t) for t in data.ts)
    for first in range(0, length, per_record):
        count = min(per_record, length - first)
        records = (
            step_records(data, first) if per_record == 1 else batched_steps(data, first, count)
        )
        for key, value in records:
            if stop is not None and stop.is_set():
                return stats
            if bad_fraction and rng.random() < bad_fraction * count:
                bad_key, bad_value, _ = bad_records(rng, 1, kind=data.domain)[0]
                producer.send(topic, key=bad_key if bad_key is not None else key, value=bad_value)
                stats.bad += 1
            producer.send(topic, key=key, value=value)
            stats.sent += count
            stats.records += 1
            _pace(started, stats.sent + stats.bad, records_per_s)
        stats.steps = first + count
        if time.monotonic() - started >= duration_s:
            break
    producer.flush()
    return stats


def _pace(started: float, sent: int, rate: float) -> None:
    """Sleep just enough to keep ``sent`` records at ``rate`` per second since ``started``."""
    ahead = sent / rate - (time.monotonic() - started)
    if ahead > 0.005:
        time.sleep(ahead)
