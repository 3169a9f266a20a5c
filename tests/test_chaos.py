"""The fault matrix (issue 6, DESIGN §5/§7): real broker, real Ray, faults injected for real.

Every case runs the oracle's scenario under one fault and must end like the fault-free
reference: same per-stream state digests and last offsets, same alert ids, every bad record
in the DLQ with its headers, caught up and scoring a fresh probe within 60 s, restarts
bounded. CI runs the fast subset (crash points, duplicates); ``make chaos`` runs all.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import chaos_oracle as co
from tests import chaos_support as cs
from tests import live_helpers as lh

pytestmark = [pytest.mark.chaos, pytest.mark.kafka, pytest.mark.ray]

# the module fixtures every chaos case starts from (chaos_support)
scenario, model = cs.scenario, cs.model

# nth pass at which each point fires: past the first poll or checkpoint, so most crashes
# happen with a durable snapshot behind them and records in flight.
CRASH_POINTS = {
    "after_poll": 4,  # records taken, none applied
    "after_score": 4,  # state advanced in memory, alerts not sent
    "after_flush": 2,  # alerts acknowledged, no snapshot
    "mid_snapshot": 2,  # half a snapshot file written (the temp file is never renamed)
    "after_snapshot_partition": 2,  # one partition's snapshot durable
    "after_snapshot": 2,  # snapshots durable, offsets not committed
}


@pytest.fixture(scope="module")
def reference(kafka_bootstrap, ray_local, scenario, model, tmp_path_factory) -> co.Outcome:
    ref = co.reference_run(kafka_bootstrap, tmp_path_factory.mktemp("ref"), scenario[0], model)
    assert ref.alert_ids, "the scenario must open alerts"
    assert len(ref.dlq_sources) == scenario[0].n_bad
    return ref


def check(request, ref: co.Outcome, run: co.Outcome, n_bad: int, **kw) -> None:
    cs.RECOVERY[request.node.name] = run.recovery_s
    diffs = co.compare(ref, run, n_bad, **kw)
    cs.NOTES[request.node.name] = [*run.notes, f"{run.restarts} restart(s)"]
    assert not diffs, "\n".join(diffs)


def wait_for(flag: Path, sup, timeout_s: float = 60.0) -> float:
    """Until the crash point fired (its once-file exists); returns the crash time."""
    deadline = time.monotonic() + timeout_s
    while not flag.exists():
        assert time.monotonic() < deadline, "the crash point never fired"
        co.WATCH_NOTES.extend(sup.watch())
        time.sleep(0.1)
    return flag.stat().st_mtime


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_kill_at_crash_point(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path, point: str
) -> None:
    records = scenario[0].records
    cfg = co.fresh_config(kafka_bootstrap, tmp_path)
    flag = tmp_path / "crashed"
    env = {
        "STREAMLSTM_CRASHPOINT": f"{point}:{CRASH_POINTS[point]}",
        "STREAMLSTM_CRASHPOINT_ONCE": str(flag),
    }
    half = len(records) // 2
    co.produce(cfg, records[:half])
    sup = co.start(cfg, model, env)
    with cs.stop_on_failure(sup):
        co.wait_caught_up(sup, cfg)
        time.sleep(cfg.checkpoint.interval_s * 2)  # a checkpoint of the first half
        co.produce(cfg, records[half:], first=half)
        crashed_at = wait_for(flag, sup)
        run = co.finish(sup, cfg, crashed_at)
    assert run.restarts >= 1
    check(request, reference, run, scenario[0].n_bad)


def test_duplicate_delivery_and_offsets_reset_backwards(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    """The group's committed offsets reset to 0 while stopped, and a slice of records
    produced again (appended, so the originals keep their offsets and alert ids): nothing
    is applied twice; the copies are rejected to the DLQ as ``duplicate``/``out_of_order``."""
    from streamlstm.adapters.kafka.client import KafkaSource

    records = scenario[0].records
    cfg = co.fresh_config(kafka_bootstrap, tmp_path)
    lo, hi = len(records) // 2 - 200, len(records) // 2
    co.produce(cfg, records)
    first = co.start(cfg, model)
    co.wait_caught_up(first, cfg)
    first.stop()  # drain: snapshot and commit
    source = KafkaSource(cfg.kafka.bootstrap, cfg.kafka.group_id)
    tps = [(cfg.kafka.input_topics[0], p) for p in range(cfg.kafka.input_partitions)]
    source.assign(tps)
    source.commit(dict.fromkeys(tps, 0))  # backwards, as an operator's reset would
    assert all(source.committed(*tp) == 0 for tp in tps)
    source.close()
    co.produce(cfg, records[lo:hi], first=lo)  # delivered again
    restarted_at = time.time()
    sup = co.start(cfg, model)
    with cs.stop_on_failure(sup):
        run = co.finish(sup, cfg, restarted_at)
    check(
        request, reference, run, scenario[0].n_bad, extra_dlq=hi - lo, same_partition_offsets=False
    )


def test_stale_worker_beside_its_replacement_is_fenced(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    """A partitioned node: its workers keep running, unseen, while a second supervisor takes
    every partition over on the same snapshots and broker. The old workers must stop at their
    next fence check and write no snapshot after the takeover (every snapshot of their
    generation is at or below the offset the replacement restored); the replacement ends
    like the reference. Recovery counts from the takeover."""
    from streamlstm.adapters.kafka.topics import input_partitions
    from streamlstm.adapters.ops.storage import SnapshotStore, name_order
    from streamlstm.adapters.ray.supervisor import Supervisor

    records = scenario[0].records
    half = len(records) // 2
    cfg = co.fresh_config(kafka_bootstrap, tmp_path, **{"checkpoint.keep": 1000})
    stale = start_half(cfg, records, model)
    with cs.stop_on_failure(stale):
        co.wait_caught_up(stale, cfg)
        time.sleep(cfg.checkpoint.interval_s * 2)  # its half checkpointed
        fresh = Supervisor(
            cfg, cfg.kafka.bootstrap, model, input_partitions(cfg, cfg.kafka.bootstrap), 1
        )
        restored = {}
        for info in fresh.start():
            restored.update(co.by_partition(info["starts"]))
        taken_at = time.time()
        with cs.stop_on_failure(fresh):
            co.produce(cfg, records[half:], first=half)
            notes = fenced_notes(stale)
            fenced = co.counter(stale, "fenced")
            stale.stop()
            run = co.finish(fresh, cfg, taken_at)
    store = SnapshotStore(cfg.checkpoint.dir)
    for topic, part in co.input_tps(cfg):
        written = [name_order(n) for n in store._listing((topic, part)) if name_order(n)]
        old = [offset for generation, offset in written if generation == 1]
        assert old and max(old) <= restored[part], (part, restored, written)
    assert fenced == 2, (fenced, notes)
    run.notes.append(f"{len(notes)} stale worker(s) fenced, no write after the takeover")
    check(request, reference, run, scenario[0].n_bad)


def fenced_notes(sup, timeout_s: float = 60.0) -> list[str]:
    """Watch the stale supervisor until each of its workers' loops has ended fenced."""
    deadline = time.monotonic() + timeout_s
    notes: list[str] = []
    while sup.runs:
        assert time.monotonic() < deadline, f"still running: {sorted(sup.runs)}; saw {notes}"
        notes += sup.watch()
        time.sleep(0.2)
    assert all("fenced" in n for n in notes), notes
    return notes


# --- slow: make chaos ---------------------------------------------------------------------
def two_halves(cfg, sup, records) -> None:
    """The first half consumed and checkpointed; then the second half produced."""
    half = len(records) // 2
    co.wait_caught_up(sup, cfg)
    time.sleep(cfg.checkpoint.interval_s * 2)
    co.produce(cfg, records[half:], first=half)


def start_half(cfg, records, model, env=None):
    co.produce(cfg, records[: len(records) // 2])
    return co.start(cfg, model, env)


@pytest.mark.slow
def test_ray_kill_of_a_worker_actor_mid_stream(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    import ray

    records = scenario[0].records
    cfg = co.fresh_config(kafka_bootstrap, tmp_path)
    sup = start_half(cfg, records, model)
    with cs.stop_on_failure(sup):
        two_halves(cfg, sup, records)
        ray.kill(sup.actors[0], no_restart=False)  # the process dies; Ray starts it again
        killed_at = time.time()
        run = co.finish(sup, cfg, killed_at)
    assert run.restarts >= 1
    check(request, reference, run, scenario[0].n_bad)


@pytest.mark.slow
def test_torn_snapshot_is_detected_and_the_previous_one_used(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    from streamlstm.adapters.ops.storage import SnapshotStore

    records = scenario[0].records
    cfg = co.fresh_config(kafka_bootstrap, tmp_path)
    first = start_half(cfg, records, model)
    two_halves(cfg, first, records)
    co.wait_caught_up(first, cfg)
    first.stop()  # the drain writes the newest snapshots (at the end of each partition)
    store = SnapshotStore(cfg.checkpoint.dir, cfg.checkpoint.keep)
    ends = {tp: store.load(tp)[1] for tp in co.input_tps(cfg)}
    for tp in ends:
        newest = Path(store._dir(tp)) / store._names(tp)[0]
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # torn
    for tp, end in ends.items():
        loaded = store.load(tp)
        assert loaded is not None and loaded[1] < end, "the previous snapshot must be used"
    restarted_at = time.time()
    sup = co.start(cfg, model)
    with cs.stop_on_failure(sup):
        run = co.finish(sup, cfg, restarted_at)
    check(request, reference, run, scenario[0].n_bad)


@pytest.mark.slow
def test_snapshot_storage_full_commits_nothing_past_the_last_durable_snapshot(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    import ray

    from streamlstm.adapters.kafka.client import KafkaSource
    from streamlstm.adapters.ops.storage import SnapshotStore

    records = scenario[0].records
    cfg = co.fresh_config(kafka_bootstrap, tmp_path)
    full = tmp_path / "disk-full"
    sup = start_half(cfg, records, model, {"STREAMLSTM_DISK_FULL_FLAG": str(full)})
    source = KafkaSource(cfg.kafka.bootstrap, cfg.kafka.group_id)
    with cs.stop_on_failure(sup, then=source.close):
        co.wait_caught_up(sup, cfg)
        time.sleep(cfg.checkpoint.interval_s * 2)
        full.touch()  # the disk fills up
        co.produce(cfg, records[len(records) // 2 :], first=len(records) // 2)
        co.wait_caught_up(sup, cfg)  # still scoring
        time.sleep(cfg.checkpoint.interval_s * 4)  # several failed checkpoints
        store = SnapshotStore(cfg.checkpoint.dir, cfg.checkpoint.keep)
        for tp in co.input_tps(cfg):
            durable = store.load(tp)[1]
            assert source.committed(*tp) == durable < lh.end_offsets(cfg)[f"{tp[0]}:{tp[1]}"]
        failures = co.counter(sup, "snapshot_failures")
        assert failures >= 2, failures
        ray.kill(sup.actors[0], no_restart=False)  # and a crash while it is full
        co.wait_caught_up(sup, cfg)
        full.unlink()  # space returns
        healed_at = time.time()
        run = co.finish(sup, cfg, healed_at)
    check(request, reference, run, scenario[0].n_bad)


@pytest.mark.slow
def test_slow_worker_pauses_and_loses_nothing(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    """1 s per batch, five times the poll timeout: explicit assignment has no group
    membership to lose, so the partitions wait in Kafka (nothing is buffered or evicted)."""
    records = scenario[0].records
    cfg = co.fresh_config(kafka_bootstrap, tmp_path)
    sup = start_half(cfg, records, model, {"STREAMLSTM_DELAY": "after_score:1.0"})
    with cs.stop_on_failure(sup):
        two_halves(cfg, sup, records)
        run = co.finish(sup, cfg, time.time())
    assert run.restarts == 0
    check(request, reference, run, scenario[0].n_bad)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory):
    """A broker of this module's own, to kill and pause (the session's one stays up)."""
    import os
    import shutil

    from streamlstm.adapters.devkafka.broker import DevKafka

    if os.environ.get("KAFKA_BOOTSTRAP") or shutil.which("java") is None:
        pytest.skip("broker faults need the local DevKafka")
    broker = DevKafka(tmp_path_factory.mktemp("kafka-chaos"))
    broker.start(timeout_s=120)
    yield broker
    broker.stop()


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill-restart", "sigstop-35s"])
def test_broker_fault(
    request, own_broker, ray_local, scenario, model, reference, tmp_path: Path, fault: str
) -> None:
    """kill -9 and restart on the same log dir; or SIGSTOP for longer than the producer's
    request timeout (30 s), then SIGCONT. Records were in flight when it happened."""
    records = scenario[0].records
    cfg = co.fresh_config(own_broker.bootstrap, tmp_path)
    sup = start_half(cfg, records, model)
    with cs.stop_on_failure(sup, then=own_broker.resume):
        two_halves(cfg, sup, records)
        if fault == "kill-restart":
            own_broker.kill()
            time.sleep(3.0)
            own_broker.start(timeout_s=120)
        else:
            own_broker.pause()
            time.sleep(35.0)
            own_broker.resume()
        healed_at = time.time()
        run = co.finish(sup, cfg, healed_at)
    check(request, reference, run, scenario[0].n_bad)


@pytest.mark.slow
def test_worker_killed_during_a_hot_swap(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    """A new model is warming in shadow when a worker dies. The reference has no swap, so
    state and alert ids are not compared (another model scores the second half); what must
    hold: every reading applied once (last offsets equal), the DLQ complete, every worker
    ends on the new model, recovery and restarts bounded."""
    import json

    import ray

    from streamlstm.config import from_dict

    records = scenario[0].records
    # Small, slow batches (10 readings per stream, 0.2 s each) and a 60-reading shadow: the
    # kill lands while the shadow is warming, and enough data follows for it to finish.
    cfg = co.fresh_config(
        kafka_bootstrap, tmp_path, **{"retrain.shadow_readings": 60, "kafka.max_poll_records": 30}
    )
    reseeded = cfg.model_dump()
    reseeded["training"]["seed"] = 1
    newer = lh.train_tiny(from_dict(reseeded), scenario[1], tmp_path / "v2")
    new_version = json.loads(newer["vitals"]["model.json"])["version"]
    sup = start_half(cfg, records, model, {"STREAMLSTM_DELAY": "after_score:0.2"})
    with cs.stop_on_failure(sup):
        co.wait_caught_up(sup, cfg)
        time.sleep(cfg.checkpoint.interval_s * 2)
        sup.stage(newer)
        co.produce(cfg, records[len(records) // 2 :], first=len(records) // 2)
        time.sleep(0.6)  # a checkpoint with the shadow warming
        serving = ray.get(sup.actors[0].models.remote())
        assert serving != {"vitals": new_version}, "switched already: not a kill mid-swap"
        ray.kill(sup.actors[0], no_restart=False)
        killed_at = time.time()
        co.wait_caught_up(sup, cfg)
        skipped = co.counter(sup, "restores", ("skipped",))
        run = co.finish(sup, cfg, killed_at)
    cs.RECOVERY[request.node.name] = run.recovery_s
    run.notes.append(f"{skipped:.0f} partition snapshot(s) skipped at restart")
    cs.NOTES[request.node.name] = run.notes
    assert run.restarts >= 1
    assert all(m == {"vitals": new_version} for m in run.models), run.models
    diffs = co.compare(reference, run, scenario[0].n_bad)
    diffs = [
        d
        for d in diffs
        if "last applied" in d
        or "DLQ" in d
        or "recovery" in d
        or "partition" in d
        or "restart" in d
        or "counted" in d
    ]
    assert not diffs, "\n".join(diffs + run.notes)
    assert skipped == 0, f"restarted mid-swap, the worker dropped its streams' state: {run.notes}"


@pytest.mark.slow
def test_supervisor_killed_mid_stream_then_restarted(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    """kill -9 of the `streamlstm run` process tree (supervisor, its local Ray, the worker
    actors) with records in flight; a new `streamlstm run` takes over from the snapshots.
    Recovery counts from the restart, so it includes starting Ray."""
    import signal

    records = scenario[0].records
    cfg = co.fresh_config(kafka_bootstrap, tmp_path)
    model_dir = tmp_path / "model"
    for group, blobs in model.items():
        (model_dir / group).mkdir(parents=True)
        for name, blob in blobs.items():
            (model_dir / group / name).write_bytes(blob)
    half = len(records) // 2
    co.produce(cfg, records[:half])
    proc = cs.run_command(cfg, model_dir, tmp_path)
    try:
        cs.wait_committed(cfg, proc)
        co.produce(cfg, records[half:], first=half)
        time.sleep(0.3)
    finally:
        cs.kill_tree(proc.pid)
        proc.wait(timeout=30)
    restarted_at = time.time()
    proc = cs.run_command(cfg, model_dir, tmp_path)
    try:
        cs.wait_committed(cfg, proc)
        co.produce(cfg, [co.probe_record()])
        probed_at = cs.wait_committed(cfg, proc)
        proc.send_signal(signal.SIGTERM)  # drain: the final snapshots and commits
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            cs.kill_tree(proc.pid)
    ends = lh.end_offsets(cfg)
    run = co.Outcome(
        **cs.state_from_snapshots(cfg, model),  # the counts too: the snapshots' ledgers
        **co.capture_topics(cfg),
        recovery_s=probed_at - restarted_at,
        in_topic=sum(ends.values()),
    )
    assert run.partition_offsets == co.by_partition(ends)
    check(request, reference, run, scenario[0].n_bad, same_partition_offsets=False)
