"""Training data for a retrain, read from Kafka: the input topics over ``retrain.lookback_s``
(seeking by record timestamp), minus every reading that fell inside an alert episode of its
stream (the alerts topic says where: from ``opened_ts`` to the ``resolve`` event, or to now
while still open). Nothing is committed: this reader never moves the workers' offsets.
The selection itself is ``train.select``, which ``evaluate --retrain-every``
replays offline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from streamlstm.adapters.kafka.client import KafkaSource
from streamlstm.adapters.kafka.options import client_options
from streamlstm.config import Config
from streamlstm.record_parser import RecordParser
from streamlstm.records import Reading
from streamlstm.stream.decode import readings_of
from streamlstm.train.select import alert_episodes, normal_readings

TP = tuple[str, int]
DECODE_CHUNK = 5000  # records decoded at once (a batched one expands to its readings)


def topic_training_data(
    config: Config, bootstrap: str, now_s: float | None = None, timeout_s: float = 300.0
) -> tuple[list[Reading], dict[str, Any]]:
    """Readings (time-ordered) and counts: read, dropped inside episodes, episodes."""

    now_s = time.time() if now_s is None else now_s
    since_ms = int((now_s - config.retrain.lookback_s) * 1000)
    source = KafkaSource(
        bootstrap, f"{config.kafka.group_id}-retrain", client_options(config.kafka)
    )
    try:
        parser = RecordParser(config.input, config.groups)
        budget = RecordBudget(config.retrain.max_records, int(now_s // config.retrain.interval_s))
        records = _read_since(source, config.kafka.input_topics, since_ms, timeout_s, budget)
        readings = [
            reading
            for first in range(0, len(records), DECODE_CHUNK)
            for reading in readings_of(parser, records[first : first + DECODE_CHUNK])
        ]
        alerts = _read_since(source, [config.kafka.alerts_topic], since_ms, timeout_s)
        episodes = alert_episodes(orjson.loads(rec.value) for rec in alerts)
    finally:
        source.close()
    kept = normal_readings(readings, episodes)  # the same selection evaluate replays
    counts = {
        "read": len(readings),
        "dropped_in_episodes": len(readings) - len(kept),
        "episodes": sum(len(v) for v in episodes.values()),
    }
    return kept, counts


@dataclass(frozen=True)
class RecordBudget:
    """At most ``max_records`` input records per round, in whole sequences.

    The LSTM learns from each stream's consecutive readings, so the budget is not spread
    thinly over every partition (at a million streams that would be one reading each):
    partitions are taken whole (their lookback, newest first) one after another until the
    budget is spent. The first partition rotates with ``round_index``, so successive rounds
    see every partition's streams."""

    max_records: int
    round_index: int = 0

    def starts(
        self, tps: list[TP], starts: dict[TP, int | None], ends: dict[TP, int]
    ) -> dict[TP, int | None]:
        """Where each partition's read begins (None: not read this round)."""
        first = self.round_index % len(tps)
        left, out = self.max_records, {}
        for tp in tps[first:] + tps[:first]:
            begin = starts[tp]
            if begin is None or left <= 0:
                out[tp] = None
                continue
            out[tp] = max(begin, ends[tp] - left)
            left -= ends[tp] - out[tp]
        return out


def _read_since(
    source, topics: list[str], since_ms: int, timeout_s: float, budget: RecordBudget | None = None
) -> list:
    """The records of ``topics`` with timestamp >= since_ms, up to the current end (within
    ``budget`` when given)."""
    tps: list[TP] = [(t, p) for t in topics for p in source.partitions_for(t)]
    if not tps:
        return []
    ends = source.end_offsets(tps)
    starts = source.offsets_for_times(tps, since_ms)
    if budget is not None:
        starts = budget.starts(tps, starts, ends)
    todo = {tp: ends[tp] for tp in tps if starts[tp] is not None and starts[tp] < ends[tp]}
    if not todo:
        return []
    source.assign(list(todo))
    for (topic, partition), _ in todo.items():
        source.seek(topic, partition, starts[(topic, partition)])
    records: list = []
    deadline = time.monotonic() + timeout_s
    while todo and time.monotonic() < deadline:
        for rec in source.poll(0.5, 5000):
            tp = (rec.topic, rec.partition)
            if tp in todo and rec.offset < todo[tp]:
                records.append(rec)
        todo = {tp: end for tp, end in todo.items() if source.position(*tp) < end}
    if todo:
        raise TimeoutError(f"retrain data: still reading {sorted(todo)} after {timeout_s} s")
    return records
