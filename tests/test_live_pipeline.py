"""The live pipeline against a real Kafka broker and a real local Ray (DESIGN §5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamlstm.records import parse_ts
from tests import live_helpers as lh
from tests.helpers import ALERT_FIELDS, assert_same_state

pytestmark = [pytest.mark.kafka, pytest.mark.ray]

STREAMS, LENGTH = 6, 360


@pytest.fixture(scope="module")
def episode_data():
    """Clean simulated patients, two of them with a large injected episode."""
    data = lh.simulated(STREAMS, LENGTH, seed=11, rate=0.0)
    for i in (1, 4):  # streams icu1-bed002 and icu1-bed005
        data.values[i][250:265, 0] += 45.0  # hr +45 bpm for 15 minutes
        data.values[i][250:265, 1] -= 9.0  # spo2 -9 points
    return data


@pytest.fixture(scope="module")
def model(kafka_bootstrap, episode_data, tmp_path_factory):
    cfg = lh.live_config(kafka_bootstrap, tmp_path_factory.mktemp("m"))
    return lh.train_tiny(cfg, episode_data, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def reference(kafka_bootstrap, ray_local, episode_data, model, tmp_path_factory):
    """A fault-free run: final per-stream state rows and the alert-id set."""
    records = lh.records_of(episode_data)
    cfg = lh.live_config(kafka_bootstrap, tmp_path_factory.mktemp("ref"))
    lh.setup_topics(cfg)
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records)
    rows, _ = _run(cfg, model, len(records))
    return rows, {e["alert_id"] for e in lh.alert_events(cfg)}


def _run(cfg, files, expected):
    sup = lh.start(cfg, files)
    try:
        lh.wait_consumed(sup, expected)
        return sup.state_rows(), sup.stop()
    except BaseException:
        sup.stop()
        raise


def test_injected_episodes_alert_and_clean_streams_stay_quiet(
    kafka_bootstrap, ray_local, episode_data, model, tmp_path: Path
) -> None:
    cfg = lh.live_config(kafka_bootstrap, tmp_path)
    lh.setup_topics(cfg)
    records = lh.records_of(episode_data)
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records)
    _, final = _run(cfg, model, len(records))
    events = lh.alert_events(cfg)
    noisy = {e["stream"] for e in events}
    assert noisy == {"icu1-bed002", "icu1-bed005"}, events
    for stream in noisy:
        kinds = [e["event"] for e in events if e["stream"] == stream]
        assert kinds[0] == "open" and "resolve" in kinds
    start, end = (float(episode_data.ts[0][k]) for k in (250, 265))
    for stream in noisy:  # each episode opens an alert inside it, naming hr or spo2
        inside = [
            e
            for e in events
            if e["stream"] == stream and e["event"] == "open" and start <= parse_ts(e["ts"]) <= end
        ]
        assert inside, events
        e = inside[0]
        assert set(e) >= ALERT_FIELDS
        assert e["top_features"][0]["name"] in ("hr", "spo2")
        assert e["source"]["topic"] == cfg.kafka.input_topics[0]
    assert sum(w["records"] for w in final) == len(records)


def test_one_and_two_workers_give_the_same_alert_ids(
    kafka_bootstrap, ray_local, episode_data, model, tmp_path: Path
) -> None:
    records = lh.records_of(episode_data)
    ids = []
    for workers in (1, 2):
        cfg = lh.live_config(kafka_bootstrap, tmp_path / str(workers), workers=workers)
        lh.setup_topics(cfg)
        lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records)
        _run(cfg, model, len(records))
        ids.append({e["alert_id"] for e in lh.alert_events(cfg)})
    assert ids[0] and ids[0] == ids[1]


def test_stop_and_restart_ends_in_the_same_state_and_alert_ids(
    kafka_bootstrap, ray_local, episode_data, model, reference, tmp_path: Path
) -> None:
    records = lh.records_of(episode_data)
    ref_rows, ref_ids = reference

    cfg = lh.live_config(kafka_bootstrap, tmp_path / "run")
    lh.setup_topics(cfg)
    half = len(records) // 2
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records[:half])
    first = lh.start(cfg, model)
    lh.wait_consumed(first, half)
    done = sum(w["records"] for w in first.stop())  # drain: flush, snapshot, commit
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records[half:])
    # The second run restores the first half's counts with its state (ledger.py).
    rows, final = _run(cfg, model, len(records))
    assert done == half
    assert sum(w["records"] for w in final) == len(records)  # nothing counted twice
    assert_same_state(rows, ref_rows)
    assert {e["alert_id"] for e in lh.alert_events(cfg)} == ref_ids


def test_bad_records_go_to_the_dlq_with_reasons_and_counts_reconcile(
    kafka_bootstrap, ray_local, episode_data, model, tmp_path: Path
) -> None:
    from streamlstm.simulate.generate import bad_records

    cfg = lh.live_config(kafka_bootstrap, tmp_path)
    lh.setup_topics(cfg)
    good = lh.records_of(episode_data, topic_steps=120)
    bad = bad_records(np.random.default_rng(5), 28)
    mixed = list(good)
    for k, (key, value, _) in enumerate(bad):
        mixed.insert(10 + 25 * k, (key, value))
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], mixed)
    _, final = _run(cfg, model, len(mixed))
    dlq = lh.read_all(kafka_bootstrap, cfg.kafka.dlq_topic)
    got = sorted(dict(m.headers)["error.reason"].decode() for m in dlq)
    assert got == sorted(reason for _, _, reason in bad)
    assert {m.value for m in dlq} == {value for _, value, _ in bad}  # original bytes
    totals = {k: sum(w[k] for w in final) for k in ("records", "scored", "warming", "dlq")}
    assert totals["records"] == len(mixed) == totals["scored"] + totals["warming"] + totals["dlq"]


def test_a_killed_worker_is_restarted_and_ends_in_the_same_state(
    kafka_bootstrap, ray_local, episode_data, model, reference, tmp_path: Path
) -> None:
    import ray

    records = lh.records_of(episode_data)
    ref_rows, ref_ids = reference

    cfg = lh.live_config(kafka_bootstrap, tmp_path / "run")
    lh.setup_topics(cfg)
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records)
    sup = lh.start(cfg, model)
    try:
        lh.wait_consumed(sup, len(records) // 3)
        ray.kill(sup.actors[0], no_restart=False)  # the process dies; Ray starts it again
        lh.wait_caught_up(sup, lh.end_offsets(cfg))
        assert sup.restarts >= 1
        rows = sup.state_rows()
    finally:
        sup.stop()
    assert_same_state(rows, ref_rows)
    assert {e["alert_id"] for e in lh.alert_events(cfg)} == ref_ids


@pytest.mark.parametrize("serve_from", ["model-dir", "registry"])
def test_run_command_drains_on_sigterm_and_exits_0(
    kafka_bootstrap, episode_data, model, tmp_path: Path, serve_from: str
) -> None:
    """`streamlstm run` serves --model, or without it the registry's promoted version."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from streamlstm.adapters.kafka.client import KafkaSource
    from streamlstm.adapters.ray.supervise import REGISTRY_CHECK_S
    from streamlstm.adapters.retrain.registry import ModelRegistry
    from streamlstm.config import from_dict
    from streamlstm.train.checkpoint import load_model

    cfg = lh.live_config(kafka_bootstrap, tmp_path, workers=1)
    lh.setup_topics(cfg)
    records = lh.records_of(episode_data, topic_steps=100)
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records)
    model_dir = _write_files(model, tmp_path / "model")
    tree = cfg.model_dump(mode="json")
    if serve_from == "registry":
        registry = ModelRegistry(tmp_path / "registry")
        served = load_model(model_dir / "vitals")
        registry.add(served, {}, {"source": "test"})
        registry.promote("vitals", served.version)
        tree["retrain"]["registry"] = str(registry.root)
        tree["retrain"]["shadow_readings"] = 20
        model_args: list[str] = []
    else:
        model_args = ["--model", str(model_dir)]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(tree))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlstm", "run", "-c", str(tmp_path / "cfg.yaml"), *model_args],
        cwd=lh.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    source = KafkaSource(kafka_bootstrap, cfg.kafka.group_id)
    tps = [(t, p) for t in cfg.kafka.input_topics for p in source.partitions_for(t)]

    def wait_committed() -> None:
        ends = source.end_offsets(tps)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if all((source.committed(t, p) or 0) >= ends[(t, p)] for t, p in tps):
                return
            time.sleep(0.5)

    try:
        wait_committed()
        if serve_from == "registry":  # a promotion while it runs is hot-swapped in
            reseeded = cfg.model_dump()
            reseeded["training"]["seed"] = 1
            newer_files = lh.train_tiny(from_dict(reseeded), episode_data, tmp_path / "v2")
            newer = load_model(_write_files(newer_files, tmp_path / "v2-model") / "vitals")
            registry.add(newer, {}, {"source": "test"})
            registry.promote("vitals", newer.version)
            time.sleep(REGISTRY_CHECK_S + 1.0)  # the supervisor notices and stages it
            later = lh.records_of(episode_data, topic_steps=200)[len(records) :]
            lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], later)
            wait_committed()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        source.close()
    assert proc.returncode == 0, out[-3000:]
    assert '"final"' in out
    if serve_from == "registry":
        assert "serving the registry's promoted versions" in out
        assert "warming in shadow" in out
        final = json.loads(next(line for line in out.splitlines() if line.startswith('{"final"')))
        assert sum(w.get("swaps", 0) for w in final["final"]) == 1, out[-3000:]
        # What the worker serves reached the registry for `models list` (reported every
        # REPORT_S, so it is the version before or after the swap).
        report = registry.control.serving()[cfg.kafka.group_id]
        assert [w["worker"] for w in report["workers"]] == [0]
        assert report["workers"][0]["serves"]["vitals"] in {served.version, newer.version}


def _write_files(files: dict, folder: Path) -> Path:
    """Model files (as the workers receive them) written out as a model set directory."""
    for group, blobs in files.items():
        (folder / group).mkdir(parents=True)
        for name, blob in blobs.items():
            (folder / group / name).write_bytes(blob)
    return folder


def test_a_promoted_model_is_hot_swapped_into_the_running_workers(
    kafka_bootstrap, ray_local, episode_data, model, tmp_path: Path
) -> None:
    from streamlstm.config import from_dict

    base = lh.live_config(kafka_bootstrap, tmp_path / "run")
    tree = base.model_dump()
    tree["retrain"]["shadow_readings"] = 30
    cfg = from_dict(tree)
    reseeded = base.model_dump()
    reseeded["training"]["seed"] = 1
    newer = lh.train_tiny(from_dict(reseeded), episode_data, tmp_path / "v2")
    old_version = json.loads(model["vitals"]["model.json"])["version"]
    new_version = json.loads(newer["vitals"]["model.json"])["version"]
    assert old_version != new_version

    lh.setup_topics(cfg)
    records = lh.records_of(episode_data)
    first = 150 * STREAMS  # the first 150 readings of every stream
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records[:first])
    sup = lh.start(cfg, model)
    try:
        lh.wait_consumed(sup, first)
        sup.stage(newer)
        # 70 more readings per stream: the shadow needs 30. The switch happens between two
        # polls, so the rest (with the episodes) is scored by the new model only.
        mid = 220 * STREAMS
        lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records[first:mid])
        lh.wait_caught_up(sup, lh.end_offsets(cfg))
        switched = sup.models()
        lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records[mid:])
        lh.wait_caught_up(sup, lh.end_offsets(cfg))
        served = sup.models()
    finally:
        final = sup.stop()
    assert all(m == {"vitals": new_version} for m in switched + served), switched
    assert sum(w["swaps"] for w in final) == len(final)
    # every reading scored (or warming in the first minutes), none lost in the swap
    assert sum(w["scored"] + w["warming"] + w["dlq"] for w in final) == len(records)
    events = lh.alert_events(cfg)
    start, end = (float(episode_data.ts[0][k]) for k in (250, 265))
    in_episodes = [e for e in events if e["event"] == "open" and start <= parse_ts(e["ts"]) <= end]
    assert in_episodes and all(e["model_version"] == new_version for e in in_episodes), events


def test_run_retrains_on_schedule_and_swaps_in_the_promoted_version(
    kafka_bootstrap, episode_data, model, tmp_path: Path
) -> None:
    """`streamlstm run` retrains from the topics every retrain.interval_s, beside scoring."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from streamlstm.adapters.retrain.registry import ModelRegistry
    from streamlstm.train.checkpoint import load_model

    cfg = lh.live_config(kafka_bootstrap, tmp_path, workers=1)
    lh.setup_topics(cfg)
    steps = lh.records_of(episode_data)
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], steps[: 120 * STREAMS])
    registry = ModelRegistry(tmp_path / "registry")
    first = load_model(_write_files(model, tmp_path / "model") / "vitals")
    registry.add(first, {}, {"source": "test"})
    registry.promote("vitals", first.version)
    tree = cfg.model_dump(mode="json")
    tree["retrain"].update(
        registry=str(registry.root),
        interval_s=3.0,
        min_readings=200,
        gate_margin=100.0,  # promote whatever trains: this test is about the schedule
        shadow_readings=10,
    )
    tree["training"]["seed"] = 7  # weights differ from the served model's
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(tree))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlstm", "run", "-c", str(tmp_path / "cfg.yaml")],
        cwd=lh.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if registry.current("vitals") != first.version:
                break
            time.sleep(1.0)
        promoted = registry.current("vitals")
        time.sleep(7.0)  # the supervisor sees the promotion and stages it
        lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], steps[120 * STREAMS :])
        time.sleep(10.0)  # scored through the shadow warm-up and the switch
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert promoted != first.version, out[-3000:]
    entry = registry.entry("vitals", promoted)
    assert entry["source"].startswith("kafka:") and entry["parent"] == first.version
    assert entry["trainer"]["kind"] == "ray-train"
    final = json.loads(next(line for line in out.splitlines() if line.startswith('{"final"')))
    assert final["retrains"].get("promoted", 0) >= 1
    assert sum(w.get("swaps", 0) for w in final["final"]) >= 1, out[-3000:]
