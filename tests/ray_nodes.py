"""A real two-node Ray cluster on this machine, for the multi-node tests (issue 20).

Each node is a ``ray start --block`` process in a session of its own with its own temp dir,
worker-port range and a custom resource naming it (``node_a``, ``node_b``): its raylet,
object store and worker processes are all its descendants, so "the node dies" is
``kill_tree`` of that one process, and teardown touches no other Ray on the machine (``ray
stop`` would kill every Ray process here, other sessions' included).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos_support import kill_tree

# The GCS declares a silent node dead after threshold x period (Ray's defaults: 5 x 3 s); a
# node-loss case waits for that before the lost workers restart elsewhere.
HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
OBJECT_STORE_BYTES = 80_000_000  # the minimum Ray accepts is ~75 MB: two nodes stay small


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    name: str  # its custom resource, e.g. node_b
    proc: subprocess.Popen
    temp_dir: Path
    log: Path


@dataclass
class TwoNodes:
    address: str  # the head's GCS, for RAY_ADDRESS
    nodes: dict[str, Node] = field(default_factory=dict)

    def node_ids(self) -> dict[str, str]:
        """Custom resource name -> Ray node id, of the nodes the GCS says are alive."""
        out = {}
        for node in cluster_nodes(self.address):
            if node["Alive"]:
                for name in self.nodes:
                    if node["Resources"].get(name):
                        out[name] = node["NodeID"]
        return out

    def kill(self, name: str) -> None:
        """SIGKILL the node's whole process tree (raylet, object store, its workers)."""
        kill_tree(self.nodes[name].proc.pid)
        self.nodes[name].proc.wait(timeout=30)

    def stop(self) -> None:
        """Worker node first (SIGTERM lets ``ray start --block`` stop its children), then
        the head; whatever is left after 20 s is killed."""
        for node in sorted(self.nodes.values(), key=lambda n: n.name == "node_a"):
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(timeout=20)
            kill_tree(node.proc.pid)  # stragglers still parented to it
            shutil.rmtree(node.temp_dir, ignore_errors=True)


def _ray_start(args: list[str], name: str, root: Path, cpus: int, ports: tuple[int, int]) -> Node:
    # Not under pytest's tmp_path: Ray's socket paths inside must stay under 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
    log = root / f"{name}.log"
    cmd = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        *args,
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={temp}",
        f"--num-cpus={cpus}",
        f"--resources={json.dumps({name: 1})}",
        "--disable-usage-stats",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--min-worker-port={ports[0]}",
        f"--max-worker-port={ports[1]}",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_env() | HEALTH_CHECKS,
        )
    return Node(name, proc, temp, log)


def _env() -> dict[str, str]:
    from streamlstm.adapters.ray.supervisor import RAY_ENV

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # A head started by `ray start` turns token authentication on by itself when a token
    # file exists (~/.ray/auth_token), and a joining node without it is then refused: one
    # explicit mode for every process of these tests.
    return env | RAY_ENV | {"RAY_AUTH_MODE": "disabled"}


def start_two_nodes(root: Path, head_cpus: int = 2, second_cpus: int = 1) -> TwoNodes:
    """Head (``node_a``) and a second node (``node_b``) joined to it; waits until the GCS
    lists both alive (raises, after stopping them, if not within 90 s)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cluster = TwoNodes(f"127.0.0.1:{port}")
    try:
        head = ["--head", f"--port={port}", "--include-dashboard=false"]
        cluster.nodes["node_a"] = _ray_start(head, "node_a", root, head_cpus, (30000, 30499))
        # Not just the GCS port open: a node joining before the head finished starting is
        # refused (an authentication error) and gives up.
        started = cluster.nodes["node_a"].log
        _wait(lambda: b"Ray runtime started" in started.read_bytes(), cluster, "the head")
        joined = [f"--address={cluster.address}"]
        cluster.nodes["node_b"] = _ray_start(joined, "node_b", root, second_cpus, (30500, 30999))
        _wait(lambda: len(cluster.node_ids()) == 2, cluster, "both nodes alive")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait(ready, cluster: TwoNodes, what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        for node in cluster.nodes.values():
            if node.proc.poll() is not None:
                tail = node.log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"ray start for {node.name} exited: {tail}")
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(1.0)


NODES_SCRIPT = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print(json.dumps([{k: n[k] for k in ("NodeID", "Alive", "Resources")} for n in ray.nodes()]))
"""


def cluster_nodes(address: str) -> list[dict]:
    """``ray.nodes()`` as the cluster's GCS reports it, asked from a process of its own (this
    test process may hold a local Ray of its own already)."""
    out = subprocess.run(
        [sys.executable, "-c", NODES_SCRIPT, address],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    if out.returncode != 0:
        return []
    return json.loads(out.stdout.strip().splitlines()[-1])
