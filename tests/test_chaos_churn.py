"""Bounded state under churn (issue 18), on the real broker and Ray: 100,000 short-lived
streams come and go beside the oracle's scenario, with a TTL of 600 s of data time.

The input is the scenario with the short-lived streams (3 readings each) in between, every
record stamped in data time (``tests/chaos_churn.py``), produced in two halves: the workers
take the first, and once they caught up the streams idle at that point must be evicted,
exactly those, and the partitions' snapshots hold exactly the rest (optionally, a worker is
then killed: the one Ray starts again restores from those snapshots, and an evicted stream
must stay evicted). Then the second half. At the end: the scenario's streams alone are
active, every short-lived stream was evicted once, the newest snapshots are within 10 % of
the churn-free reference's, the scenario's state digests, last readings, alerts and dead
letters equal the reference's (in scenario positions: churn moves offsets), every record
is scored, warming or in the DLQ (counters and metrics), and a stream that returned after
eviction warmed up again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamlstm.adapters.ops.prometheus import MetricsHub
from tests import chaos_churn as cc
from tests import chaos_oracle as co
from tests import chaos_support as cs
from tests.test_chaos import check

pytestmark = [pytest.mark.chaos, pytest.mark.kafka, pytest.mark.ray, pytest.mark.slow]

# the module fixtures every chaos case starts from (chaos_support)
scenario, model = cs.scenario, cs.model

CHURN = int(os.environ.get("STREAMLSTM_CHAOS_CHURN", "100000"))  # short-lived streams
SETTINGS = {
    "state.evict_idle_s": cc.TTL_S,
    "state.evict_check_s": 0.5,  # wall time: several checks per phase of the input
    "detector.max_gap_s": cc.MAX_GAP_S,
    "kafka.max_poll_records": 1000,  # 300k records: the chaos default of 200 is slow
}


@dataclass
class Reference:
    outcome: co.Outcome
    counts: dict[str, int]
    snapshot_bytes: dict[int, int]
    steady: dict[int, set[str]]  # the scenario's streams per partition


def churn_config(bootstrap: str, tmp: Path):
    co.WATCH_NOTES.clear()
    cfg = co.chaos_config(bootstrap, tmp, **SETTINGS)
    cc.input_topic(cfg)
    return cfg


@pytest.fixture(scope="module")
def reference(kafka_bootstrap, ray_local, scenario, model, tmp_path_factory) -> Reference:
    """The scenario alone, in data time, under the same TTL: none of its streams falls idle."""
    cfg = churn_config(kafka_bootstrap, tmp_path_factory.mktemp("ref"))
    timed = cc.timed_scenario(scenario[0].records, cfg.kafka.input_partitions)
    origins = cc.Origins(timed, cfg.kafka.input_partitions)
    steady = {p: {t.stream for t in timed if t.stream and t.partition == p} for p in origins.of}
    cc.produce(cfg, timed)
    sup = co.start(cfg, model)
    with cs.stop_on_failure(sup):
        co.wait_caught_up(sup, cfg)
        sizes = cc.newest_snapshots(cfg, steady)
        counts = cc.totals(sup)
        out = co.finish(sup, cfg, None)
    out.alert_ids = origins.alerts(cfg)
    assert out.alert_ids, "the scenario must open alerts"
    assert len(out.dlq_sources) == scenario[0].n_bad and counts["evicted"] == 0, counts
    return Reference(origins.translate(out), counts, sizes, steady)


def add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}


@pytest.mark.parametrize("fault", ["none", "kill-9-mid-churn"])
def test_short_lived_streams_are_evicted_and_state_returns_to_steady(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path, fault: str
) -> None:
    import ray

    cfg = churn_config(kafka_bootstrap, tmp_path)
    parts = cfg.kafka.input_partitions
    timed = cc.timed_scenario(scenario[0].records, parts)
    added = cc.churn_records(CHURN, parts)
    records = cc.in_time_order(timed, added)
    origins = cc.Origins(records, parts)
    first = [t for t in records if t.ts < cc.BOUNDARY]
    idle_first = cc.idle_streams(first, parts, cc.TTL_S)
    live_first = {
        p: {t.stream for t in first if t.stream and t.partition == p} - idle_first[p]
        for p in range(parts)
    }
    n_idle_first = sum(map(len, idle_first.values()))
    assert any(cc.RETURNING in s for s in idle_first.values())  # idle before it returns
    assert {s for v in cc.idle_streams(records, parts, cc.TTL_S).values() for s in v} == {
        t.stream for t in added
    }  # the input ends with every added stream idle, and no scenario stream

    cc.produce(cfg, first)
    sup = co.start(cfg, model)
    lost: dict[str, int] = {}  # the evictions a killed worker's process counted
    hub = MetricsHub()  # the exporter's counters, pulled as the supervisor's feed does
    with cs.stop_on_failure(sup):
        co.wait_caught_up(sup, cfg, timeout_s=600.0)
        mid = cc.wait_evicted(sup, n_idle_first)
        assert mid["evicted"] == n_idle_first, (mid, n_idle_first)
        assert mid["streams"] == sum(map(len, live_first.values())), mid
        mid_bytes = cc.newest_snapshots(cfg, live_first)
        hub.add_reports(sup.metrics())
        healed_at = None
        if fault != "none":
            # Evictions are the process's own count; its outcome counts are in its
            # partitions' snapshots, restored by its replacement.
            lost = {"evicted": sup.stats()[0]["evicted"]}
            ray.kill(sup.actors[0], no_restart=False)  # after the snapshot without the idle
            healed_at = time.time()
            co.wait_caught_up(sup, cfg)  # restarted, restored: nothing to replay
            assert cc.totals(sup)["streams"] == mid["streams"], "evicted streams came back"
        cc.produce(cfg, records[len(first) :])
        healed_at = healed_at or time.time()
        co.wait_caught_up(sup, cfg, timeout_s=600.0)
        end = add(cc.wait_evicted(sup, CHURN + 2 - lost.get("evicted", 0)), lost)
        end_bytes = cc.newest_snapshots(cfg, reference.steady)
        co.wait_durable(sup)  # the exported outcome counts advance at checkpoints
        hub.add_reports(sup.metrics())
        counts = hub.counters
        run = co.finish(sup, cfg, healed_at)
    run.alert_ids = origins.alerts(cfg)
    origins.translate(run)

    ref = reference.counts
    assert end["evicted"] == CHURN + 2, end  # the returning stream twice
    assert end["streams"] == co.STREAMS, end
    assert end["records"] == len(records) == end["scored"] + end["warming"] + end["dlq"], end
    assert end["dlq"] == ref["dlq"] == scenario[0].n_bad
    # The returning stream: 20 warming and 5 scored, then 5 warming again (not scored).
    warmup = cfg.detector.warmup_readings
    first_life, second_life = cc.RETURN_FIRST[2], cc.RETURN_AGAIN[2]  # readings
    assert first_life > warmup > second_life  # or the test would prove nothing
    assert end["scored"] == ref["scored"] + first_life - warmup, (end, ref)
    warming = CHURN * cc.PER_STREAM + warmup + second_life
    assert end["warming"] == ref["warming"] + warming, (end, ref)
    assert counts[("records", ())] == end["records"], counts  # exactly once, kill or not
    for outcome in ("scored", "warming", "dlq"):
        assert counts[("readings", (outcome,))] == end[outcome], (outcome, counts)
    assert counts[("evicted_streams", ())] == end["evicted"], counts
    for part, size in end_bytes.items():
        assert abs(size - reference.snapshot_bytes[part]) <= 0.1 * reference.snapshot_bytes[part]
    if fault == "none":
        assert run.restarts == 0
    else:
        assert run.restarts >= 1
    run.notes.append(
        f"{CHURN:,} streams x{cc.PER_STREAM}, TTL {cc.TTL_S:.0f} s: at the cut "
        f"{mid['streams']:,} active, snapshots {sum(mid_bytes.values()):,} B; end "
        f"{end['streams']} active, {sum(end_bytes.values()):,} B (reference "
        f"{sum(reference.snapshot_bytes.values()):,} B), {end['evicted']:,} evicted; records "
        f"{end['records']:,} = scored {end['scored']:,} + warming {end['warming']:,} + "
        f"DLQ {end['dlq']}"
    )
    check(request, reference.outcome, run, scenario[0].n_bad, same_partition_offsets=False)
