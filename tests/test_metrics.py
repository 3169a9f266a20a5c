"""Prometheus metrics: counts kept by the workers, summed by the supervisor, served on one
endpoint; the names are docs/metrics.md's contract and the cardinality stays bounded."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamlstm.stream.metric_counts import SCORE_BUCKETS, Histogram, MetricCounts
from tests import live_helpers as lh

ROOT = Path(__file__).resolve().parents[1]


def documented_metrics() -> set[str]:
    table = (ROOT / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(streamlstm_[a-z_]+)`", table, flags=re.M))


def scrape(port: int) -> tuple[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return text, list(text_string_to_metric_families(text))


def samples(families: list) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


# --- pure: the counts ------------------------------------------------------------------------
def test_histogram_buckets_are_le_inclusive_and_cumulative() -> None:
    h = Histogram(SCORE_BUCKETS)
    h.observe(np.array([0.5, 1.0, 1.01, 7.0, 1000.0, np.nan]))  # NaN is not a score: dropped
    cum = dict(h.cumulative())
    assert cum["1.0"] == 2  # 0.5 and exactly 1.0 (le is inclusive)
    assert cum["2.0"] == 3
    assert cum["7.0"] == 4
    assert cum["50.0"] == 4
    assert cum["+Inf"] == 5 == h.count
    assert h.sum == pytest.approx(0.5 + 1.0 + 1.01 + 7.0 + 1000.0)


def test_counts_drain_deltas_and_keep_the_last_commit_time() -> None:
    clock = iter([100.0, 200.0])
    counts = MetricCounts(wall_clock=lambda: next(clock))
    counts.evicted(5)
    counts.evicted(2)
    counts.dead_letter_failed("oversized")
    counts.restored("cold")
    counts.checkpointed(0.2, {})
    first = counts.drain()
    assert {(name, tuple(labels)): v for name, labels, v in first["counters"]} == {
        ("evicted_streams", ()): 7.0,
        ("dlq_failures", ("oversized",)): 1.0,
        ("restores", ("cold",)): 1.0,
    }
    assert first["last_commit_at"] == 100.0
    second = counts.drain()  # nothing new: empty deltas, the commit time stays
    assert second["counters"] == []
    assert sum(second["histograms"]["snapshot"][0]) == 0
    assert second["last_commit_at"] == 100.0


# --- live: real broker, real Ray, the real endpoint -----------------------------------------
STREAMS = 10_000


@pytest.mark.kafka
@pytest.mark.ray
def test_endpoint_counts_reconcile_and_10k_streams_keep_cardinality_bounded(
    kafka_bootstrap, ray_local, tmp_path: Path
) -> None:
    from streamlstm.adapters.ops.metrics_feed import MetricsFeed

    cfg = lh.live_config(kafka_bootstrap, tmp_path)
    files = lh.train_tiny(cfg, lh.simulated(8, 200, seed=5, rate=0.0), tmp_path / "model")
    data = lh.simulated(STREAMS, 3, seed=9, rate=0.0)
    stream_ids = set(data.streams)
    assert len(stream_ids) == STREAMS
    bad = [(b"x", b"{not json"), (b"y", orjson.dumps({"stream": "y", "ts": "nope"}))]
    records = lh.records_of(data) + bad
    lh.setup_topics(cfg)
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records)
    sup = lh.start(cfg, files)
    feed = MetricsFeed(cfg, kafka_bootstrap)
    try:
        # the outcome counters advance at checkpoints (durable), the rest at once
        stats = lh.wait_consumed(sup, len(records), durable=True)
        lh.wait_caught_up(sup, lh.end_offsets(cfg))
        feed.hub.know_models(files)
        feed.pull(sup)
        text, families = scrape(feed.port)
    finally:
        feed.close()
        sup.stop()
    got = samples(families)

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    # The endpoint's counts are the workers' counts.
    scored = sum(s["scored"] for s in stats)
    warming = sum(s["warming"] for s in stats)
    assert value("streamlstm_readings_total", outcome="scored") == scored
    assert value("streamlstm_readings_total", outcome="warming") == warming
    assert value("streamlstm_readings_total", outcome="dlq") == 2
    assert value("streamlstm_records_total") == len(records)
    assert value("streamlstm_dlq_records_total", reason="not_json") == 1
    assert value("streamlstm_dlq_records_total", reason="bad_timestamp") == 1
    assert value("streamlstm_active_streams") == STREAMS
    assert value("streamlstm_score_count") == scored
    assert value("streamlstm_workers") == value("streamlstm_workers_up") == 2
    assert value("streamlstm_last_commit_timestamp_seconds") > 1.7e9
    for partition in range(2):
        lag = value("streamlstm_consumer_lag_records", topic=cfg.kafka.input_topics[0],
                    partition=str(partition))  # fmt: skip
        assert lag == 0
    version = next(iter(sup_models(files).values()))
    assert value("streamlstm_model_info", group="vitals", version=version) == 1

    # Bounded: the series count does not grow with 10,000 streams, and no label names one.
    assert len(got) < 200, f"{len(got)} series"
    label_values = {v for (_, labels) in got for _, v in labels}
    assert not label_values & stream_ids
    assert not [sid for sid in stream_ids if sid in text]  # nor any text of the scrape
    # The contract both ways: every exported family is documented, every documented one exported.
    exported = {f.name if f.type != "counter" else f.name + "_total" for f in families}
    assert exported == documented_metrics()


def sup_models(files: dict) -> dict[str, str]:
    return {g: orjson.loads(blobs["model.json"])["version"] for g, blobs in files.items()}
