"""A replicated local Kafka cluster: several DevKafka nodes (KRaft, combined broker+controller
roles) forming one static controller quorum, for tests of leader loss.

Every node is a voter, so the quorum survives one node of three; topics get replication
factor 3 and ``min.insync.replicas`` 2 by default, so an ``acks=all`` write is on two nodes
before it is acknowledged and the loss of any one node loses no acknowledged record.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from streamlstm.adapters.devkafka.broker import DevKafka, cluster_id
from streamlstm.adapters.devkafka.jars import DevKafkaError


def replicated_settings(nodes: int) -> dict[str, object]:
    """Broker settings for a cluster of ``nodes``: every topic, the consumer-offsets and the
    transaction log replicated to all of them, writes acknowledged by a majority."""
    min_isr = nodes // 2 + 1
    return {
        "default.replication.factor": nodes,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": nodes,
        "transaction.state.log.replication.factor": nodes,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": nodes,
        "share.coordinator.state.topic.min.isr": min_isr,
        # Never elect a leader from outside the ISR: that would drop acknowledged records.
        "unclean.leader.election.enable": "false",
    }


class DevKafkaCluster:
    """``nodes`` local brokers under ``data_dir/node-<id>``, one cluster id, one quorum."""

    def __init__(self, data_dir: Path, *, nodes: int = 3, heap_mb: int = 384) -> None:
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, got {nodes}")
        root = Path(data_dir).resolve()
        settings = replicated_settings(nodes)
        self.nodes = {
            i: DevKafka(root / f"node-{i}", heap_mb=heap_mb, node_id=i, settings=settings)
            for i in range(1, nodes + 1)
        }
        # Every node's ports are known once each DevKafka exists (fresh, or read back from a
        # config written before): the static quorum names all controllers.
        voters = ",".join(f"{i}@127.0.0.1:{n.controller_port}" for i, n in self.nodes.items())
        shared_id = cluster_id()
        for node in self.nodes.values():
            node.voters, node.cluster_id = voters, shared_id

    @property
    def bootstrap(self) -> str:
        """Every node's address: clients still reach the cluster when one is down."""
        return ",".join(n.bootstrap for n in self.nodes.values())

    def start(self, timeout_s: float = 120) -> str:
        """Start every node not running, then wait until each is registered and unfenced."""
        for node in self.nodes.values():
            if not node.is_running():
                node.launch()
        try:
            for node in self.nodes.values():
                node._wait_ready(timeout_s)
        except DevKafkaError:
            self.kill()  # never leave a half-started cluster behind
            raise
        return self.bootstrap

    def start_node(self, node_id: int, timeout_s: float = 120) -> None:
        """Start one node again on its own log dir and ports (after ``kill_node``)."""
        self.nodes[node_id].start(timeout_s)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node: an unclean crash of that machine's broker and controller."""
        self.nodes[node_id].kill()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def kill(self) -> None:
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.kill()

    def leaders(self, topic: str, timeout_s: float = 30) -> dict[int, int]:
        """Partition -> the node id leading it now (-1: no leader)."""
        return {p: leader for p, (leader, _) in self.describe(topic, timeout_s).items()}

    def describe(self, topic: str, timeout_s: float = 30) -> dict[int, tuple[int, set[int]]]:
        """Partition -> (leader node id, in-sync replica node ids), as the cluster says now."""
        from kafka import KafkaAdminClient  # lazy: keep importing this module cheap

        ms = int(timeout_s * 1000)
        admin = KafkaAdminClient(bootstrap_servers=self.running_bootstrap(), request_timeout_ms=ms)
        try:
            (found,) = admin.describe_topics([topic])
        finally:
            admin.close()
        return {
            p["partition_index"]: (p["leader_id"], set(p["isr_nodes"])) for p in found["partitions"]
        }

    def running_bootstrap(self) -> str:
        """The addresses of the nodes running now (a client would try a dead one first)."""
        return ",".join(n.bootstrap for n in self.nodes.values() if n.is_running())

    def wait_in_sync(self, topics: list[str], timeout_s: float = 120) -> None:
        """Until every partition of ``topics`` has all nodes in its ISR (a restarted node
        caught up), or raise DevKafkaError naming the ones that did not."""
        everyone = set(self.nodes)
        deadline = time.monotonic() + timeout_s
        while True:
            behind = {
                (t, p): isr
                for t in topics
                for p, (_, isr) in self.describe(t).items()
                if isr != everyone
            }
            if not behind:
                return
            if time.monotonic() >= deadline:
                raise DevKafkaError(f"not all in sync after {timeout_s} s: {behind}")
            time.sleep(0.5)
