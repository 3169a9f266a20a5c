"""The demo scores everything it produced (issue 18 item 12): its end waits for the workers
to reach the input topic's end offsets, read from the real broker, and the summary line
says whether every reading is accounted for: records produced = in the topic = taken by the
workers, readings produced = scored + warming + DLQ (a batched record holds several)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from streamlstm.adapters.dev.demo_drain import DrainWatch, reconciled
from streamlstm.commands.demo import reconciliation


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _finished_thread() -> threading.Thread:
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    return thread


@pytest.mark.kafka
def test_the_demo_stops_only_once_every_partition_reached_its_end_offset(
    kafka_bootstrap: str, kafka_topic_factory, tmp_path: Path
) -> None:
    from kafka import KafkaProducer

    from tests.live_helpers import live_config

    config = live_config(kafka_bootstrap, tmp_path)
    topic = kafka_topic_factory(partitions=2, prefix="demo-in")
    config = config.model_copy(
        update={"kafka": config.kafka.model_copy(update={"input_topics": [topic]})}
    )
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for i in range(30):
        producer.send(topic, key=b"s", value=b"{}", partition=i % 2)  # 15 per partition
    stop, clock = threading.Event(), _Clock()
    running = threading.Thread(target=stop.wait)  # the simulator, still producing
    running.start()
    watch = DrainWatch(config, kafka_bootstrap, running, producer, stop, 60.0, clock)
    watch.check([])
    assert watch.ends is None and not stop.is_set()  # nothing read while it produces
    watch.simulator = _finished_thread()
    watch.check([{"positions": {f"{topic}:0": 15}}, {"positions": {f"{topic}:1": 9}}])
    assert watch.ends == {f"{topic}:0": 15, f"{topic}:1": 15}  # flushed, then read
    assert (watch.behind, stop.is_set()) == (6, False)
    clock.now += 7.5
    watch.check([{"positions": {f"{topic}:0": 15}}, {"positions": {f"{topic}:1": 15}}])
    assert stop.is_set()
    assert watch.report() == {
        "in_topic": 30,
        "drained_to_end_offsets": True,
        "records_behind": 0,
        "drain_seconds": 7.5,
    }
    running.join()
    producer.close()


@pytest.mark.kafka
def test_a_drain_that_times_out_says_how_many_records_were_not_taken(
    kafka_bootstrap: str, kafka_topic_factory, tmp_path: Path
) -> None:
    from kafka import KafkaProducer

    from tests.live_helpers import live_config

    config = live_config(kafka_bootstrap, tmp_path)
    topic = kafka_topic_factory(partitions=1, prefix=f"demo-{uuid.uuid4().hex[:4]}")
    config = config.model_copy(
        update={"kafka": config.kafka.model_copy(update={"input_topics": [topic]})}
    )
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for _ in range(4):
        producer.send(topic, value=b"{}")
    stop, clock = threading.Event(), _Clock()
    watch = DrainWatch(config, kafka_bootstrap, _finished_thread(), producer, stop, 60.0, clock)
    watch.check([{"positions": {f"{topic}:0": 1}}])
    clock.now += 61.0
    watch.check([{"positions": {f"{topic}:0": 1}}])
    producer.close()
    assert stop.is_set()
    report = watch.report()
    assert report["drained_to_end_offsets"] is False and report["records_behind"] == 3


@pytest.mark.kafka
def test_batched_demo_records_are_counted_and_read_back_as_readings(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """With --readings-per-record the topic holds records of several readings: the
    producer's counts must say both, and the cold-start read must expand them (it read none
    of them, and the demo could not train a first model)."""
    from kafka import KafkaProducer

    from streamlstm.adapters.dev.sim_producer import produce
    from streamlstm.adapters.kafka.topics import read_topic_readings
    from tests.live_helpers import live_config, setup_topics, simulated

    config = live_config(kafka_bootstrap, tmp_path)
    setup_topics(config)
    data = simulated(4, 25, seed=5)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    stats = produce(producer, config.kafka.input_topics[0], data, 1e6, 60.0, per_record=10)
    watch = DrainWatch(
        config, kafka_bootstrap, _finished_thread(), producer, threading.Event(), 60.0
    )
    watch.check([])
    producer.close()
    assert (stats.sent, stats.records, stats.bad) == (100, 12, 0)  # 10 + 10 + 5 per stream
    assert watch.report()["in_topic"] == stats.records
    readings = read_topic_readings(config, kafka_bootstrap, stats.sent, timeout_s=60.0)
    assert len(readings) == stats.sent
    first = data.streams[0]
    got = [r.ts for r in readings if r.stream == first]
    assert got == pytest.approx(data.ts[0][:25].tolist(), abs=1e-3)


def test_the_summary_line_names_every_count_and_whether_they_reconcile() -> None:
    summary = {
        "produced": 1202,
        "produced_records": 122,
        "in_topic": 122,
        "records_processed": 122,
        "scored": 1000,
        "warming": 200,
        "dlq": 2,
        "drained_to_end_offsets": True,
        "drain_seconds": 3.2,
        "records_behind": 0,
        "training_seconds": 20.0,
        "worker_seconds": 140.0,
        "total_seconds": 170.0,
        "reconciled": True,
    }
    line = reconciliation(summary)
    assert line.startswith("every reading accounted for: produced 1202 readings in 122 records")
    assert "records in the topic 122, taken by the workers 122" in line
    assert "readings scored 1000 + warming 200 + DLQ 2 = 1202" in line
    assert "end offsets 3.2 s after the simulator had stopped" in line
    short = reconciliation(
        summary | {"reconciled": False, "drained_to_end_offsets": False, "records_behind": 7}
    )
    assert short.startswith("NOT reconciled") and "7 records not taken" in short


def test_reconciled_compares_records_with_records_and_readings_with_readings() -> None:
    # 100 records of 10 readings and 2 bad records (one reading's worth each, rejected whole)
    even = {"produced": 1002, "produced_records": 102, "in_topic": 102, "records_processed": 102}
    assert reconciled(even | {"scored": 900, "warming": 100, "dlq": 2})
    assert not reconciled(even | {"scored": 900, "warming": 100, "dlq": 1})  # one unaccounted
    assert not reconciled(even | {"in_topic": 103, "scored": 900, "warming": 100, "dlq": 2})
    assert not reconciled(
        even | {"records_processed": 101, "scored": 900, "warming": 100, "dlq": 2}
    )
    assert not reconciled(even | {"produced": 1001, "scored": 900, "warming": 100, "dlq": 2})
    # one reading per record: the two counts are the same numbers
    single = {"produced": 12, "produced_records": 12, "in_topic": 12, "records_processed": 12}
    assert reconciled(single | {"scored": 6, "warming": 5, "dlq": 1})
