"""Live scale-out and scale-in (issue 20): 2 -> 3 -> 2 workers while a producer writes, on
the real broker and a real local Ray, compared with the fault-free reference run.

Each moved partition is handed off by snapshot (``adapters/ray/handoff.py``): the run must
end like the reference (same per-stream state digests and last offsets, same partition
offsets, same alert ids, every bad record in the DLQ), with every record counted exactly
once by the final workers (a moved partition's counts move with its snapshot), and no
reading replayed by any worker, the removed one included.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import ray
import yaml
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streamlstm.adapters.ops.metrics_feed import MetricsFeed
from streamlstm.cli import main
from tests import chaos_oracle as co
from tests import chaos_support as cs
from tests import live_helpers as lh

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.kafka, pytest.mark.ray]

PARTITIONS = {"kafka.input_partitions": 4}  # 2 workers hold 2 each; 3 hold 2, 1 and 1


@pytest.fixture(scope="module")
def scenario():
    return co.build_scenario()


@pytest.fixture(scope="module")
def trained(kafka_bootstrap, scenario, tmp_path_factory) -> tuple[dict, Path]:
    cfg = co.chaos_config(kafka_bootstrap, tmp_path_factory.mktemp("m"))
    out = tmp_path_factory.mktemp("model")
    return lh.train_tiny(cfg, scenario[1], out), out


@pytest.fixture(scope="module")
def model(trained) -> dict:
    return trained[0]


@pytest.fixture(scope="module")
def reference(kafka_bootstrap, ray_local, scenario, model, tmp_path_factory) -> co.Outcome:
    tmp = tmp_path_factory.mktemp("ref")
    ref = co.reference_run(kafka_bootstrap, tmp, scenario[0], model, **PARTITIONS)
    assert ref.alert_ids, "the scenario must open alerts"
    assert len(ref.dlq_sources) == scenario[0].n_bad
    return ref


def write_through(cfg, records, first: int, last: int, over: threading.Event):
    """Records ``first`` to ``last`` of the scenario from a thread, ~100 a second until
    ``over`` (the hand-off returned), then the rest at once: records keep arriving while
    the old owners drain and the new ones restore, so a hand-off that started a new owner
    before the old one's final checkpoint would score some twice."""

    def write() -> None:
        parts = cfg.kafka.input_partitions
        producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap, linger_ms=5, acks="all")
        try:
            for start in range(first, last, 10):
                for i in range(start, min(start + 10, last)):
                    key, value = records[i]
                    tp = co.partition_of(key, i, parts)
                    producer.send(cfg.kafka.input_topics[0], key=key, value=value, partition=tp)
                producer.flush()
                if not over.is_set():
                    time.sleep(0.1)
        finally:
            producer.close()

    writer = threading.Thread(target=write)
    writer.start()
    return writer


def owned(sup) -> list[str]:
    """Every partition the running workers hold (each must appear once)."""
    return sorted(p for s in sup.stats() for p in s.get("partitions", []))


def scrape(feed: MetricsFeed, sup) -> dict[str, float]:
    feed.pull(sup)
    return scrape_port(feed.port)


def scrape_port(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_scale_out_2_to_3_then_in_to_2_while_a_producer_writes(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    records = scenario[0].records
    cfg = co.fresh_config(kafka_bootstrap, tmp_path, **PARTITIONS)
    all_parts = sorted(f"{t}:{p}" for t, p in co.input_tps(cfg))
    fifth = len(records) // 5
    co.produce(cfg, records[:fifth])
    sup = co.start(cfg, model)
    feed = MetricsFeed(cfg, cfg.kafka.bootstrap)
    with cs.stop_on_failure(sup, feed.close):
        co.wait_caught_up(sup, cfg)
        time.sleep(cfg.checkpoint.interval_s * 2)  # a checkpoint behind the first fifth
        out_done, in_done = threading.Event(), threading.Event()
        writer = write_through(cfg, records, fifth, 3 * fifth, out_done)
        time.sleep(0.5)  # records in flight
        for actor in sup.actors:
            ray.get(actor.latency.remote(reset=True))
        untouched_run = sup.runs[0]
        out = sup.resize(3)
        out_done.set()
        assert (len(sup.actors), out.add, out.remove, out.restart) == (3, [2], [], [1]), out
        assert len(out.moved) == 1
        assert sup.runs[0] is untouched_run  # worker 0 kept its partitions and kept running
        assert owned(sup) == all_parts
        metrics = scrape(feed, sup)
        assert metrics["streamlstm_partition_handoffs_total"] == 1
        assert metrics["streamlstm_workers"] == metrics["streamlstm_workers_requested"] == 3
        writer.join(timeout=120)
        writer = write_through(cfg, records, 3 * fifth, len(records), in_done)
        time.sleep(0.5)  # three workers score records in flight
        back = sup.resize(2)
        in_done.set()
        scaled_in_at = time.time()
        assert (len(sup.actors), back.add, back.remove) == (2, [], [2]), back
        assert owned(sup) == all_parts
        assert scrape(feed, sup)["streamlstm_partition_handoffs_total"] == 2
        writer.join(timeout=120)
        co.wait_caught_up(sup, cfg)
        latency = [ray.get(a.latency.remote()) for a in sup.actors]
        state = co.capture_state(sup)
        probed_at = co.probe(sup, cfg)
        restarts = sup.restarts
        final = sup.stop()  # the retired workers' counts moved with their partitions
    run = co.Outcome(
        **state,
        **co.capture_topics(cfg),
        restarts=restarts,
        recovery_s=probed_at - scaled_in_at,  # the scale-in done -> a fresh reading scored
    )
    cs.RECOVERY[request.node.name] = run.recovery_s
    totals = {k: sum(w.get(k, 0) for w in final) for k in ("records", "scored", "warming", "dlq")}
    replayed = sum(w.get("replayed", 0) for w in final + sup.retired)
    p99 = max((x.get("p99", 0.0) for x in latency), default=0.0)
    cs.NOTES[request.node.name] = [
        f"totals {totals}",
        f"moved {out.moved} then {back.moved}",
        f"p99 since the scale-out {p99 * 1e3:.0f} ms (busy test machine, not a bench)",
    ]
    n_records = len(records) + 1  # and the probe
    assert totals["records"] == n_records, totals
    assert totals["scored"] + totals["warming"] + totals["dlq"] == n_records, totals
    assert totals["dlq"] == scenario[0].n_bad
    assert replayed == 0, f"{replayed} readings reached a detector twice"
    assert restarts == 0
    diffs = co.compare(reference, run, scenario[0].n_bad)
    assert not diffs, "\n".join(diffs + run.notes)


def metrics_port(err: Path, proc, timeout_s: float = 120.0) -> int:
    """The port ``streamlstm run`` logged it serves metrics on (``metrics.port: 0``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, err.read_text()[-3000:]
        found = re.search(r"metrics on http://[^:]+:(\d+)/metrics", err.read_text())
        if found:
            return int(found.group(1))
        time.sleep(0.3)
    raise AssertionError("streamlstm run did not log its metrics port")


def wait_metrics(port: int, proc, want: dict[str, float], timeout_s: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"streamlstm run exited with {proc.returncode}"
        got = scrape_port(port)
        if all(got.get(k) == v for k, v in want.items()):
            return got
        time.sleep(0.5)
    raise AssertionError(f"metrics never showed {want}: {got}")


def test_the_scale_command_reaches_a_running_supervisor(
    kafka_bootstrap, scenario, trained, tmp_path: Path
) -> None:
    """`streamlstm scale` on the config of a running `streamlstm run` (its own local Ray):
    the supervisor scales 2 -> 3 within seconds, `--clear` brings it back to ray.workers,
    Prometheus shows both, and the final counts (the removed worker's included) add up."""
    records = scenario[0].records
    cfg = co.fresh_config(kafka_bootstrap, tmp_path, **PARTITIONS)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    co.produce(cfg, records)
    args = ["run", "-c", str(cfg_file), "--model", str(trained[1])]
    with open(tmp_path / "run.out", "wb") as out, open(tmp_path / "run.err", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlstm", *args],
            cwd=lh.ROOT,
            stdout=out,
            stderr=err,
            env={**os.environ, "RAY_ADDRESS": ""},
            start_new_session=True,
        )
    try:
        port = metrics_port(tmp_path / "run.err", proc)
        cs.wait_committed(cfg, proc)
        assert main(["scale", "-c", str(cfg_file), "--workers", "3"]) == 0
        want = {"streamlstm_workers_requested": 3, "streamlstm_workers": 3}
        wait_metrics(port, proc, want | {"streamlstm_partition_handoffs_total": 1})
        assert main(["scale", "-c", str(cfg_file), "--clear"]) == 0
        want = {"streamlstm_workers_requested": 2, "streamlstm_workers": 2}
        wait_metrics(port, proc, want | {"streamlstm_partition_handoffs_total": 2})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, (tmp_path / "run.err").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            cs.kill_tree(proc.pid)
            proc.wait(timeout=30)
    final = json.loads((tmp_path / "run.out").read_text().strip().splitlines()[-1])
    assert final["handoffs"] == 2 and len(final["retired"]) == 1
    # The partitions' ledgers moved with their snapshots: the final workers hold every record.
    assert sum(w["records"] for w in final["final"]) == len(records)
    log = (tmp_path / "run.err").read_text()
    assert "scale request: 3 workers (by " in log
    assert "scale request: 2 workers (request cleared: ray.workers)" in log
