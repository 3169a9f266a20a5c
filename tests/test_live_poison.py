"""Poison records against a real broker and real Ray workers (issue 18): none of them stops
a worker, each lands in the DLQ with its reason, and the records after it are scored."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from streamlstm.adapters.dev.sim_producer import batched_steps
from streamlstm.adapters.kafka.client import ensure_topics
from tests import live_helpers as lh

pytestmark = [pytest.mark.kafka, pytest.mark.ray]

STREAMS, LENGTH = 4, 200


@pytest.fixture(scope="module")
def data():
    return lh.simulated(STREAMS, LENGTH, seed=7, rate=0.0)


@pytest.fixture(scope="module")
def model(kafka_bootstrap, data, tmp_path_factory):
    cfg = lh.live_config(kafka_bootstrap, tmp_path_factory.mktemp("m"))
    return lh.train_tiny(cfg, data, tmp_path_factory.mktemp("model"), first=120)


def _run_to_end(cfg, files) -> list[dict]:
    sup = lh.start(cfg, files)
    try:
        lh.wait_caught_up(sup, lh.end_offsets(cfg))
        restarts = sup.restarts
    finally:
        final = sup.stop()
    assert restarts == 0
    return final


def _dlq(cfg) -> list:
    return lh.read_all(cfg.kafka.bootstrap, cfg.kafka.dlq_topic)


def test_an_oversized_record_is_cut_into_the_dlq_and_the_worker_goes_on(
    kafka_bootstrap, ray_local, data, model, tmp_path: Path
) -> None:
    cfg = lh.live_config(kafka_bootstrap, tmp_path, workers=1, partitions=1)
    topic = cfg.kafka.input_topics[0]
    # The input topic takes records up to 4 MiB; the DLQ producer only 1 MiB (its default).
    ensure_topics(kafka_bootstrap, {topic: 1}, configs={"max.message.bytes": str(4 << 20)})
    lh.setup_topics(cfg)
    good = lh.records_of(data, topic_steps=100)
    stream = data.streams[0]
    poison = b'{"stream": "%s", "pad": "%s"}' % (stream.encode(), b"a" * (2 << 20))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=4 << 20)
    for key, value in [*good[:50], (stream.encode(), poison), *good[50:]]:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()

    final = _run_to_end(cfg, model)

    (dead,) = _dlq(cfg)
    headers = dict(dead.headers)
    assert headers["error.reason"] == b"oversized" and headers["truncated"] == b"true"
    assert headers["source.offset"] == b"50"
    assert headers["original.size"] == str(len(poison)).encode()
    assert headers["original.sha256"] == hashlib.sha256(poison).hexdigest().encode()
    assert poison.startswith(dead.value) and len(dead.value) > 1_000_000
    totals = {k: sum(w[k] for w in final) for k in ("records", "scored", "warming", "dlq")}
    assert totals["records"] == len(good) + 1 and totals["dlq"] == 1
    assert totals["scored"] + totals["warming"] == len(good)  # the records after it too
    assert totals["scored"] > 0


@pytest.mark.chaos  # a row of docs/reliability.md; fast: CI runs it too
def test_a_worker_that_keeps_dying_is_restarted_with_growing_delays(
    kafka_bootstrap, ray_local, data, model, tmp_path: Path
) -> None:
    """Every worker process dies at its first poll with records (a crash point that fires in
    each new process): the supervisor backs off instead of restarting at once, forever."""
    import time

    from streamlstm import config as config_mod
    from streamlstm.adapters.kafka.topics import input_partitions
    from streamlstm.adapters.ray.supervisor import Supervisor

    cfg = lh.live_config(kafka_bootstrap, tmp_path, workers=1, partitions=1)
    tree = cfg.model_dump(mode="json")
    tree["ray"] |= {"restart_backoff_s": 0.5, "restart_backoff_max_s": 60.0}
    cfg = config_mod.from_dict(tree)
    lh.setup_topics(cfg)
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], lh.records_of(data, topic_steps=2))
    env = {"STREAMLSTM_CRASHPOINT": "after_poll:1"}
    sup = Supervisor(
        cfg,
        kafka_bootstrap,
        model,
        input_partitions(cfg, kafka_bootstrap),
        actor_options={"runtime_env": {"env_vars": env}},
    )
    sup.start()
    notes: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while sum("restarting it in" in n for n in notes) < 4 and time.monotonic() < deadline:
            notes += sup.watch()
            time.sleep(0.1)
        restarts = sup.restarts
    finally:
        sup.stop()
    delays = [n.split("restarting it in ")[1] for n in notes if "restarting it in" in n]
    assert delays[:4] == ["0.5 s", "1.0 s", "2.0 s", "4.0 s"], notes
    assert restarts == 3  # one per delay that has passed, not one per check


def test_a_bad_reading_in_a_batched_record_goes_to_the_dlq_alone(
    kafka_bootstrap, ray_local, data, model, tmp_path: Path
) -> None:
    cfg = lh.live_config(kafka_bootstrap, tmp_path, workers=1, partitions=1)
    topic = cfg.kafka.input_topics[0]
    lh.setup_topics(cfg)
    per_record = 10
    records = [
        rec for first in range(0, 100, per_record) for rec in batched_steps(data, first, per_record)
    ]
    bad_at = 13  # the fourth reading of one record is not a number; the other nine are fine
    key, value = records[bad_at]
    batch = orjson.loads(value)
    feature = next(iter(batch["values"]))
    batch["values"][feature][3] = "n/a"
    records[bad_at] = (key, orjson.dumps(batch))
    lh.produce(kafka_bootstrap, topic, records)

    final = _run_to_end(cfg, model)

    (dead,) = _dlq(cfg)
    headers = dict(dead.headers)
    assert headers["error.reason"] == b"bad_value" and headers["source.offset"] == b"13"
    assert headers["streamlstm.batch_index"] == b"3"
    assert dead.value == records[bad_at][1]  # the record's bytes, unchanged
    totals = {k: sum(w[k] for w in final) for k in ("records", "scored", "warming", "dlq")}
    assert totals["records"] == len(records) and totals["dlq"] == 1
    assert totals["scored"] + totals["warming"] == len(records) * per_record - 1
    assert totals["scored"] > 0
