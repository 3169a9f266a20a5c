"""Health that tells the truth (issue 18): a worker is up only while its scoring loop runs,
/readyz names a partition whose loop stopped, and `streamlstm run` exits 1 when a worker
cannot drain on SIGTERM. A real broker, a real
local Ray, a real crash point."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests import chaos_support as cs
from tests import live_helpers as lh

pytestmark = [pytest.mark.kafka, pytest.mark.ray]


def test_run_exits_1_when_a_worker_dies_while_draining(kafka_bootstrap, tmp_path: Path) -> None:
    data = lh.simulated(3, 150, seed=5, rate=0.0)
    cfg = lh.live_config(kafka_bootstrap, tmp_path, workers=1, partitions=1)
    model_dir = tmp_path / "model"
    for group, blobs in lh.train_tiny(cfg, data, tmp_path / "trained", first=100).items():
        (model_dir / group).mkdir(parents=True)
        for name, blob in blobs.items():
            (model_dir / group / name).write_bytes(blob)
    lh.setup_topics(cfg)
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], lh.records_of(data, topic_steps=40))
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    crash = {
        "STREAMLSTM_CRASHPOINT": "before_drain:1",  # the worker process dies in its drain
        "STREAMLSTM_CRASHPOINT_ONCE": str(tmp_path / "crashed"),
    }
    args = ["run", "-c", str(tmp_path / "cfg.yaml"), "--model", str(model_dir)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlstm", *args],
        cwd=lh.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RAY_ADDRESS": "", **crash},
        start_new_session=True,
    )
    try:
        cs.wait_committed(cfg, proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            cs.kill_tree(proc.pid)
    assert (tmp_path / "crashed").exists(), out[-3000:]  # the crash point did fire
    assert proc.returncode == 1, out[-3000:]
    final = json.loads(next(line for line in out.splitlines() if line.startswith('{"final"')))
    assert final["undrained"] == [0]
    assert "worker 0 did not drain cleanly" in out


def test_a_worker_whose_loop_stopped_is_not_up_though_its_actor_answers(
    kafka_bootstrap, ray_local, tmp_path: Path
) -> None:
    import ray

    from streamlstm.adapters.ops.prometheus import MetricsHub

    data = lh.simulated(3, 150, seed=5, rate=0.0)
    cfg = lh.live_config(kafka_bootstrap, tmp_path, workers=1, partitions=1)
    files = lh.train_tiny(cfg, data, tmp_path / "trained", first=100)
    lh.setup_topics(cfg)
    records = lh.records_of(data, topic_steps=20)
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records)
    sup = lh.start(cfg, files)
    hub = MetricsHub()
    try:
        lh.wait_consumed(sup, len(records))
        hub.add_reports(sup.metrics())
        up_while_running = hub.workers_up
        ray.get(sup.actors[0].stop.remote())  # the loop ends; the actor stays and answers
        ray.get(sup.runs[0])
        reports = sup.metrics()
        hub.add_reports(reports)
    finally:
        sup.stop()
    assert up_while_running == 1
    assert reports[0] is not None and reports[0]["loop_alive"] is False
    assert hub.workers_desired == 1 and hub.workers_up == 0


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.chaos  # a row of docs/reliability.md; fast: CI runs it too
def test_readyz_turns_unready_when_a_partitions_loop_stops_and_healthz_stays_up(
    kafka_bootstrap, ray_local, tmp_path: Path
) -> None:
    import ray

    from streamlstm.adapters.ops.metrics_feed import MetricsFeed
    from streamlstm.config import from_dict

    data = lh.simulated(3, 150, seed=5, rate=0.0)
    base = lh.live_config(kafka_bootstrap, tmp_path, workers=2, partitions=2)
    # A short poll deadline, so the stopped loop is noticed within the test.
    cfg = from_dict(
        base.model_dump() | {"ray": base.ray.model_dump() | {"heartbeat_timeout_s": 2.0}}
    )
    files = lh.train_tiny(cfg, data, tmp_path / "trained", first=100)
    lh.setup_topics(cfg)
    records = lh.records_of(data, topic_steps=20)
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records)
    sup = lh.start(cfg, files)
    feed = MetricsFeed(cfg, kafka_bootstrap)
    topic = cfg.kafka.input_topics[0]
    try:
        lh.wait_consumed(sup, len(records))
        lh.wait_caught_up(sup, lh.end_offsets(cfg))
        deadline = time.monotonic() + 30.0
        while True:  # until the workers' last checkpoint committed what they read
            feed.pull(sup)
            status, text = _get(feed.port, "/metrics")
            waiting = re.findall(r"streamlstm_partition_uncommitted_records\{.*\} (\S+)", text)
            if (waiting and not any(float(v) for v in waiting)) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        ready = _get(feed.port, "/readyz")
        polls = re.findall(
            rf'streamlstm_partition_last_poll_timestamp_seconds{{partition="(\d)",topic="{topic}"}}',
            text,
        )

        stopped = next(i for i, plan in enumerate(sup.plan) if (topic, 0) in plan)
        ray.get(sup.actors[stopped].stop.remote())  # its loop ends; the actor still answers
        ray.get(sup.runs[stopped])
        deadline = time.monotonic() + 60.0
        while True:
            feed.pull(sup)
            unready = _get(feed.port, "/readyz")
            if unready[0] != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        healthz = _get(feed.port, "/healthz")
    finally:
        feed.close()
        sup.stop()
    assert ready == (200, "ready\n")
    assert sorted(polls) == ["0", "1"]
    assert status == 200 and waiting == ["0.0", "0.0"]  # all read records committed
    assert unready[0] == 503 and f"{topic}:0: last poll" in unready[1], unready
    assert f"{topic}:1" not in unready[1]  # the other worker's partition is fine
    assert healthz == (200, "ok\n")
