"""Past one machine (issue 20): `streamlstm run` on a real two-node Ray cluster.

Two ``ray start`` nodes on this machine (``tests/ray_nodes.py``), the scenario of the chaos
oracle on the session's real broker, snapshots on a directory both nodes reach. The
fault-free run is the reference: workers on both nodes, every record accounted for. Then the
second node's whole process tree is killed mid-stream: its partitions must restart on the
surviving node from their snapshots and end exactly like the reference (the ``make chaos``
criteria).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests import chaos_oracle as co
from tests import chaos_support as cs
from tests import live_helpers as lh
from tests import ray_nodes as rn

# The fault-free run on both nodes is CI's two-node smoke test (~40 s); the node kill is a
# slow chaos case for `make chaos`.
pytestmark = [pytest.mark.chaos, pytest.mark.kafka, pytest.mark.ray]

WORKER_TITLE = b"ray::PartitionWorker"  # the process title of a worker actor


@dataclass
class NodeRun:
    outcome: co.Outcome
    final: list[dict]  # each worker's final stats (the run's JSON line)
    seen_on: set[str]  # nodes whose process tree held a worker actor during the run


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    nodes = rn.start_two_nodes(tmp_path_factory.mktemp("ray-nodes"))
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def scenario():
    return co.build_scenario()


@pytest.fixture(scope="module")
def model_dir(kafka_bootstrap, scenario, tmp_path_factory) -> tuple[dict, Path]:
    cfg = co.chaos_config(kafka_bootstrap, tmp_path_factory.mktemp("m"))
    out = tmp_path_factory.mktemp("model")
    return lh.train_tiny(cfg, scenario[1], out), out


def spread_config(bootstrap: str, tmp: Path):
    """The chaos config, workers spread over the nodes; ``tmp`` (snapshots) is the
    directory both nodes reach."""
    return co.fresh_config(bootstrap, tmp, **{"ray.scheduling": "spread"})


def start_run(cluster: rn.TwoNodes, cfg, model: Path, tmp: Path) -> subprocess.Popen:
    """`streamlstm run` joined to the cluster (RAY_ADDRESS), its JSON line to run.out."""
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    args = ["run", "-c", str(tmp / "cfg.yaml"), "--model", str(model)]
    with open(tmp / "run.out", "wb") as out, open(tmp / "run.err", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "streamlstm", *args],
            cwd=lh.ROOT,
            stdout=out,
            stderr=err,
            env=rn._env() | {"RAY_ADDRESS": cluster.address},
            start_new_session=True,
        )


def workers_on(cluster: rn.TwoNodes) -> set[str]:
    """Nodes whose process tree holds a PartitionWorker actor process right now."""
    children: dict[int, list[int]] = {}
    titles: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                titles[int(entry.name)] = (entry / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found = set()
    for name, node in cluster.nodes.items():
        todo = [node.proc.pid]
        while todo:
            pid = todo.pop()
            if titles.get(pid, b"").startswith(WORKER_TITLE):
                found.add(name)
            todo.extend(children.get(pid, []))
    return found


def wait_workers_on(cluster: rn.TwoNodes, want: set[str], proc, timeout_s: float = 90.0):
    deadline = time.monotonic() + timeout_s
    while (seen := workers_on(cluster)) < want:
        assert proc.poll() is None, f"streamlstm run exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"workers on {seen}, want {want}"
        time.sleep(0.5)
    return seen


def finish(cfg, proc, tmp: Path, files: dict, since: float | None) -> tuple[co.Outcome, list]:
    """Probe, drain (SIGTERM), read the final state back from the snapshots and topics."""
    cs.wait_committed(cfg, proc)
    co.produce(cfg, [co.probe_record()])
    probed_at = cs.wait_committed(cfg, proc)
    proc.send_signal(signal.SIGTERM)  # drain: the final snapshots and commits
    code = proc.wait(timeout=120)
    assert code == 0, (tmp / "run.err").read_text()[-3000:]
    final = json.loads((tmp / "run.out").read_text().strip().splitlines()[-1])
    outcome = co.Outcome(
        **cs.state_from_snapshots(cfg, files),
        **co.capture_topics(cfg),
        restarts=final["restarts"],
        recovery_s=probed_at - (since if since is not None else probed_at),
        in_topic=sum(lh.end_offsets(cfg).values()),
    )
    # the final JSON after the drain = the snapshots' ledgers (co.compare checks those)
    assert co.counted(final["final"]) == outcome.counted, (final["final"], outcome.counted)
    return outcome, final["final"]


def stop_run(proc) -> None:
    if proc.poll() is None:
        cs.kill_tree(proc.pid)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def reference(cluster, kafka_bootstrap, scenario, model_dir, tmp_path_factory) -> NodeRun:
    """The fault-free run on both nodes."""
    files, model = model_dir
    tmp = tmp_path_factory.mktemp("ref")
    cfg = spread_config(kafka_bootstrap, tmp)
    co.produce(cfg, scenario[0].records)
    proc = start_run(cluster, cfg, model, tmp)
    try:
        seen = wait_workers_on(cluster, {"node_a", "node_b"}, proc)
        outcome, final = finish(cfg, proc, tmp, files, None)
    finally:
        stop_run(proc)
    assert outcome.alert_ids, "the scenario must open alerts"
    return NodeRun(outcome, final, seen)


def test_workers_run_on_both_nodes_and_every_record_is_accounted_for(
    request, cluster, scenario, reference: NodeRun
) -> None:
    ids = cluster.node_ids()
    assert reference.seen_on == {"node_a", "node_b"}
    assert {w["node"] for w in reference.final} == {ids["node_a"], ids["node_b"]}
    n_records = len(scenario[0].records) + 1  # and the probe
    totals = {
        k: sum(w[k] for w in reference.final) for k in ("records", "scored", "warming", "dlq")
    }
    assert totals["records"] == n_records, totals
    assert totals["scored"] + totals["warming"] + totals["dlq"] == n_records, totals
    assert totals["dlq"] == scenario[0].n_bad
    assert len(reference.outcome.dlq_sources) == scenario[0].n_bad
    assert reference.outcome.dlq_missing_headers == 0
    assert reference.outcome.restarts == 0
    cs.NOTES[request.node.name] = [f"totals {totals}", f"workers on {sorted(ids)}"]


@pytest.mark.slow
def test_second_node_killed_mid_stream_its_partitions_move_to_the_first(
    request, cluster, kafka_bootstrap, scenario, model_dir, reference: NodeRun, tmp_path: Path
) -> None:
    """kill -9 of node_b's whole process tree (its raylet, object store and worker) with
    records in flight; Ray restarts the worker on node_a, which restores the partitions'
    snapshots. Runs last in this module: the cluster is left with one node."""
    files, model = model_dir
    records = scenario[0].records
    half = len(records) // 2
    cfg = spread_config(kafka_bootstrap, tmp_path)
    co.produce(cfg, records[:half])
    proc = start_run(cluster, cfg, model, tmp_path)
    try:
        wait_workers_on(cluster, {"node_a", "node_b"}, proc)
        cs.wait_committed(cfg, proc)  # the first half scored and checkpointed
        co.produce(cfg, records[half:], first=half)
        time.sleep(0.3)  # records in flight on both nodes
        cluster.kill("node_b")
        killed_at = time.time()
        run, final = finish(cfg, proc, tmp_path, files, killed_at)
    finally:
        stop_run(proc)
    ids = cluster.node_ids()
    assert set(ids) == {"node_a"}, ids
    assert {w["node"] for w in final} == {ids["node_a"]}, final
    assert run.restarts >= 1
    cs.RECOVERY[request.node.name] = run.recovery_s
    cs.NOTES[request.node.name] = [f"{run.restarts} restart(s)", "node_b's tree killed"]
    assert run.partition_offsets == reference.outcome.partition_offsets
    diffs = co.compare(reference.outcome, run, scenario[0].n_bad)
    assert not diffs, "\n".join(diffs + run.notes)
