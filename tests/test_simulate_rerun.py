"""``simulate --bootstrap`` run twice on the same topic continues its streams in time order
(a real broker): a rerun that restarted at the same timestamps sent everything to the DLQ."""

from __future__ import annotations

import uuid

import orjson
import pytest

from streamlstm.adapters.kafka.client import KafkaSource
from streamlstm.records import parse_ts
from tests.cli_helpers import run_cli

pytestmark = pytest.mark.kafka


def _simulate(bootstrap: str, topic: str) -> str:
    return run_cli(
        "simulate", "--bootstrap", bootstrap, "--topic", topic, "--streams", "3",
        "--rate", "300", "--duration", "1", "--seed", "5",
    ).stdout  # fmt: skip


def _readings(bootstrap: str, topic: str) -> dict[str, list[float]]:
    """Each stream's timestamps in the order the broker holds them."""
    source = KafkaSource(bootstrap, f"test-{uuid.uuid4().hex[:6]}")
    try:
        tps = [(topic, p) for p in source.partitions_for(topic)]
        ends = source.end_offsets(tps)
        source.assign(tps)
        for t, p in tps:
            source.seek(t, p, 0)
        seen: dict[str, list[float]] = {}
        left = sum(ends.values())
        for _ in range(100):
            for rec in source.poll(0.5):
                record = orjson.loads(rec.value)
                seen.setdefault(record["stream"], []).append(parse_ts(record["ts"]))
                left -= 1
            if left <= 0:
                break
        return seen
    finally:
        source.close()


def test_a_rerun_continues_after_the_newest_reading_in_the_topic(kafka_bootstrap) -> None:
    topic = f"sim-rerun-{uuid.uuid4().hex[:6]}"
    _simulate(kafka_bootstrap, topic)
    first = _readings(kafka_bootstrap, topic)
    second_out = _simulate(kafka_bootstrap, topic)
    both = _readings(kafka_bootstrap, topic)
    newest_first = max(max(ts) for ts in first.values())
    assert sum(map(len, both.values())) > sum(map(len, first.values())) > 0
    for stream, ts in both.items():
        assert ts == sorted(ts) and len(set(ts)) == len(ts), stream  # in order, no repeats
        assert min(ts[len(first[stream]) :]) > newest_first
    assert "from " in second_out
