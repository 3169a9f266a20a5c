"""Retraining data from the real broker: the lookback window by record timestamp, and the
readings inside alert episodes left out."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from streamlstm.adapters.retrain.data import RecordBudget, topic_training_data
from streamlstm.records import format_ts
from streamlstm.train.select import alert_episodes
from tests import live_helpers as lh

pytestmark = pytest.mark.kafka


def _alert(event: str, stream: str, alert_id: str, ts: float, opened: float) -> dict:
    return {
        "alert_id": alert_id,
        "event": event,
        "stream": stream,
        "ts": format_ts(ts),
        "opened_ts": format_ts(opened),
    }


def test_alert_episodes_pair_opens_with_resolves_and_keep_open_ones_open() -> None:
    events = [
        _alert("open", "a", "x1", 100.0, 100.0),
        _alert("update", "a", "x1", 110.0, 100.0),
        _alert("resolve", "a", "x1", 130.0, 100.0),
        _alert("open", "b", "y1", 200.0, 200.0),
        {"unrelated": True},
    ]
    assert alert_episodes(events) == {"a": [(100.0, 130.0)], "b": [(200.0, float("inf"))]}


def test_topic_data_covers_the_lookback_and_drops_alert_episodes(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    cfg = lh.live_config(kafka_bootstrap, tmp_path)
    lh.setup_topics(cfg)
    data = lh.simulated(3, 60, seed=4, rate=0.0)
    records = lh.records_of(data)
    now_ms = int(time.time() * 1000)
    old_ms = now_ms - int(2 * cfg.retrain.lookback_s * 1000)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    topic = cfg.kafka.input_topics[0]
    for key, value in records[:9]:  # written long ago: outside the lookback
        producer.send(topic, key=key, value=value, timestamp_ms=old_ms)
    for key, value in records[9:]:
        producer.send(topic, key=key, value=value, timestamp_ms=now_ms)
    ts = data.ts
    s0, s1 = data.streams[0], data.streams[1]
    for event in (
        _alert("open", s0, "e1", float(ts[0][20]), float(ts[0][20])),
        _alert("resolve", s0, "e1", float(ts[0][29]), float(ts[0][20])),
        _alert("open", s1, "e2", float(ts[1][50]), float(ts[1][50])),  # still open
    ):
        producer.send(
            cfg.kafka.alerts_topic, key=event["stream"].encode(), value=orjson.dumps(event)
        )
    producer.flush()
    producer.close()

    readings, counts = topic_training_data(cfg, kafka_bootstrap)
    # records are interleaved step by step over 3 streams: the first 9 are steps 0-2
    assert counts["read"] == len(records) - 9
    assert counts["episodes"] == 2
    assert counts["dropped_in_episodes"] == 10 + 10  # s0 steps 20..29, s1 steps 50..59
    kept = {(r.stream, r.ts) for r in readings}
    assert (s0, float(ts[0][3])) in kept and (s0, float(ts[0][2])) not in kept
    assert (s0, float(ts[0][19])) in kept and (s0, float(ts[0][25])) not in kept
    assert (s0, float(ts[0][30])) in kept
    assert (s1, float(ts[1][49])) in kept and (s1, float(ts[1][55])) not in kept
    assert [r.ts for r in readings] == sorted(r.ts for r in readings)


def test_the_record_budget_takes_whole_partitions_newest_first_rotating_by_round() -> None:
    tps = [("t", 0), ("t", 1), ("t", 2)]
    ends = {("t", 0): 100, ("t", 1): 50, ("t", 2): 80}
    starts = {("t", 0): 10, ("t", 1): 0, ("t", 2): None}  # partition 2: nothing in the lookback
    # round 0: partition 0's 90 records, then partition 1's newest 30
    assert RecordBudget(120, 0).starts(tps, starts, ends) == {
        ("t", 0): 10,
        ("t", 1): 20,
        ("t", 2): None,
    }
    # round 1 starts at partition 1: all of its 50, then partition 0's newest 70
    assert RecordBudget(120, 1).starts(tps, starts, ends) == {
        ("t", 1): 0,
        ("t", 2): None,
        ("t", 0): 30,
    }
    assert RecordBudget(10**9, 0).starts(tps, starts, ends) == starts  # small data: all of it


def test_a_round_reads_at_most_max_records_the_newest(kafka_bootstrap: str, tmp_path: Path) -> None:
    """At a million readings a second a day's lookback cannot be read: the round takes the
    newest ``retrain.max_records``, in whole sequences."""
    cfg = lh.live_config(kafka_bootstrap, tmp_path)
    cfg = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update={"max_records": 30})})
    lh.setup_topics(cfg)
    data = lh.simulated(3, 40, seed=5, rate=0.0)
    records = lh.records_of(data)  # 120, interleaved over 3 streams
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    topic = cfg.kafka.input_topics[0]
    for key, value in records:
        producer.send(topic, key=key, value=value, partition=0)
    producer.flush()
    producer.close()

    readings, counts = topic_training_data(cfg, kafka_bootstrap)
    assert counts["read"] == 30  # one partition holds them all: its newest 30
    newest = {(r.stream, r.ts) for r in readings}
    assert (data.streams[0], float(data.ts[0][-1])) in newest
    assert (data.streams[0], float(data.ts[0][29])) not in newest
    assert {r.stream for r in readings} == set(data.streams)
