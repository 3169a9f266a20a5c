"""A replicated Kafka cluster (issue 20): the loss of a partition leader mid-stream.

Three KRaft nodes on this machine (``adapters/devkafka/cluster.py``: combined broker and
controller roles, one three-voter quorum), the worker's topics created with
``kafka.replication_factor: 3`` and ``kafka.min_insync_replicas: 2``; the alerts/DLQ
producer sends with ``acks=all``, so an alert is acknowledged only once two nodes hold it,
and a sink flush (which comes before every snapshot and commit) waits for that.

The chaos oracle's scenario runs fault-free on the cluster (the reference); then again, and
mid-stream the node leading the busiest input partition is killed with SIGKILL, the run goes
on with two nodes (a fresh probe must be scored while the node is down: that is the recovery
time), then the node is started again and must rejoin every partition's in-sync replicas. The
run must end like the reference (the ``make chaos`` criteria), and every alert that was
acknowledged before the kill must still be on the alerts topic after it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests import chaos_oracle as co
from tests import chaos_support as cs
from tests import live_helpers as lh

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.kafka, pytest.mark.ray]

REPLICATED = {"kafka.replication_factor": 3, "kafka.min_insync_replicas": 2}
# Small, slowed batches in the faulted run: the second half takes a few seconds to score, so
# the kill lands while records and alerts are in flight.
BUSY = {"kafka.max_poll_records": 50}
SLOW = {"STREAMLSTM_DELAY": "after_score:0.4"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from streamlstm.adapters.devkafka.cluster import DevKafkaCluster

    if shutil.which("java") is None:
        pytest.skip("no java on PATH: the local Kafka cluster needs a JDK 17+")
    root = tmp_path_factory.mktemp("kafka-cluster")
    nodes = DevKafkaCluster(root, nodes=3, heap_mb=384)
    try:
        nodes.start(timeout_s=180)
        yield nodes
    finally:
        nodes.kill()  # the data is this module's only: no need for a graceful stop
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def scenario():
    return co.build_scenario()


@pytest.fixture(scope="module")
def model(cluster, scenario, tmp_path_factory):
    cfg = co.chaos_config(cluster.bootstrap, tmp_path_factory.mktemp("m"))
    return lh.train_tiny(cfg, scenario[1], tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def reference(cluster, ray_local, scenario, model, tmp_path_factory) -> co.Outcome:
    tmp = tmp_path_factory.mktemp("ref")
    ref = co.reference_run(cluster.bootstrap, tmp, scenario[0], model, **REPLICATED)
    assert ref.alert_ids, "the scenario must open alerts"
    assert len(ref.dlq_sources) == scenario[0].n_bad
    return ref


def worker_topics(cfg) -> list[str]:
    return [*cfg.kafka.input_topics, cfg.kafka.alerts_topic, cfg.kafka.dlq_topic]


def test_the_worker_topics_are_replicated_on_all_three_nodes(cluster, tmp_path: Path) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    cfg = co.fresh_config(cluster.bootstrap, tmp_path, **REPLICATED)
    for topic in worker_topics(cfg):
        for part, (leader, isr) in cluster.describe(topic).items():
            assert leader in cluster.nodes and isr == {1, 2, 3}, (topic, part, leader, isr)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        wanted = [ConfigResource(ConfigResourceType.TOPIC, t) for t in worker_topics(cfg)]
        found = admin.describe_configs(wanted, config_filter="all")["topic"]
    finally:
        admin.close()
    assert {
        t: found[t]["min.insync.replicas"]["value"] for t in worker_topics(cfg)
    } == dict.fromkeys(worker_topics(cfg), "2")


def acknowledged_alert_ids(bootstrap: str, topic: str, timeout_s: float = 30.0) -> set[str]:
    """The alert ids on ``topic`` up to each partition's high watermark now: records there
    are on every in-sync replica, i.e. acknowledged to an ``acks=all`` producer."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        consumer.seek_to_beginning(*tps)
        ids: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"{topic} not read up to {ends} in {timeout_s} s"
            for records in consumer.poll(timeout_ms=500).values():
                ids.update(
                    orjson.loads(r.value)["alert_id"]
                    for r in records
                    if r.offset < ends[TopicPartition(r.topic, r.partition)]
                )
        return ids
    finally:
        consumer.close()


def unread(sup, cfg) -> dict[int, int]:
    """Input partition -> records not yet applied by its worker."""
    ends, pos = lh.end_offsets(cfg), co.positions(sup)
    return {int(tp.rsplit(":", 1)[1]): end - pos.get(tp, 0) for tp, end in ends.items()}


def pick_victim(cluster, cfg, lag: dict[int, int]) -> tuple[int, int, list[int]]:
    """(input partition, its leader, the alerts partitions that node leads): the busiest
    input partition whose leader also leads alerts partitions if there is one (its loss then
    hits the alerts being written too), else the busiest."""
    inputs = cluster.leaders(cfg.kafka.input_topics[0])
    alerts = cluster.leaders(cfg.kafka.alerts_topic)
    busiest = sorted(lag, key=lambda p: -lag[p])
    part = next((p for p in busiest if lag[p] and inputs[p] in alerts.values()), busiest[0])
    return part, inputs[part], sorted(a for a, node in alerts.items() if node == inputs[part])


def wait_new_alerts(sup, cfg, before: set[str], timeout_s: float = 60.0) -> set[str]:
    """Until alerts beyond ``before`` are acknowledged (on the alerts topic); returns all ids."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        co.WATCH_NOTES.extend(sup.watch())
        acked = acknowledged_alert_ids(cfg.kafka.bootstrap, cfg.kafka.alerts_topic)
        if acked - before:
            return acked
        time.sleep(0.1)
    raise AssertionError(f"no new alert acknowledged within {timeout_s} s")


def test_leader_of_a_busy_input_partition_killed_mid_stream_then_restarted(
    request, cluster, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    from streamlstm.adapters.kafka.client import KafkaSource

    records = scenario[0].records
    half = len(records) // 2
    cfg = co.fresh_config(cluster.bootstrap, tmp_path, **REPLICATED, **BUSY)
    topics = worker_topics(cfg)
    co.produce(cfg, records[:half])
    sup = co.start(cfg, model, SLOW)
    with cs.stop_on_failure(sup):
        co.wait_caught_up(sup, cfg)
        time.sleep(cfg.checkpoint.interval_s * 2)  # a checkpoint of the first half
        first_half = acknowledged_alert_ids(cfg.kafka.bootstrap, cfg.kafka.alerts_topic)
        co.produce(cfg, records[half:], first=half)
        # The kill lands once the second half's alerts are being written (the episode).
        acked = wait_new_alerts(sup, cfg, first_half)
        lag_at_kill = unread(sup, cfg)
        part, victim, alerts_led = pick_victim(cluster, cfg, lag_at_kill)
        cluster.kill_node(victim)
        killed_at = time.time()
        assert lag_at_kill[part] > 0, "the input partition was idle at the kill: not mid-stream"
        probed_at = co.probe(sup, cfg)  # scored with the node still down
        moved = cluster.leaders(cfg.kafka.input_topics[0])[part]
        cluster.start_node(victim)
        cluster.wait_in_sync(topics)  # the restarted node caught up on every partition
        co.wait_caught_up(sup, cfg)
        state = co.capture_state(sup)
        restarts, models = sup.restarts, sup.models()
        sup.stop()  # drain: the final snapshots and commits
    run = co.Outcome(
        **state,
        **co.capture_topics(cfg),
        restarts=restarts,
        recovery_s=probed_at - killed_at,
        models=models,
        notes=co._pop_watch_notes(),
    )
    source = KafkaSource(cfg.kafka.bootstrap, cfg.kafka.group_id)
    try:
        ends = source.end_offsets(co.input_tps(cfg))
        lag = {tp: end - (source.committed(*tp) or 0) for tp, end in ends.items()}
    finally:
        source.close()
    run.notes += [
        f"killed node {victim}, leader of input partition {part} "
        f"(records unread per partition {lag_at_kill}) "
        f"and of alerts partitions {alerts_led}; partition {part} then led by node {moved}",
        f"{len(acked)} alert ids acknowledged before the kill "
        f"({len(acked - first_half)} of them from the second half)",
    ]
    cs.RECOVERY[request.node.name] = run.recovery_s
    cs.NOTES[request.node.name] = [*run.notes, f"{run.restarts} restart(s)"]
    assert moved in cluster.nodes and moved != victim, moved
    assert acked <= run.alert_ids, f"acknowledged alerts lost: {sorted(acked - run.alert_ids)}"
    assert all(v == 0 for v in lag.values()), f"lag after the drain: {lag}"
    # The state was captured after the probe here (in the reference, before it): one record
    # more on the probe's partition.
    want = dict(reference.partition_offsets)
    want[co.partition_of(co.PROBE_STREAM.encode(), 0, cfg.kafka.input_partitions)] += 1
    assert run.partition_offsets == want, (run.partition_offsets, want)
    diffs = co.compare(reference, run, scenario[0].n_bad, same_partition_offsets=False)
    assert not diffs, "\n".join(diffs + run.notes)
