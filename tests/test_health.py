"""Worker health without a cluster: up means a running loop with a recent heartbeat."""

from __future__ import annotations

from streamlstm.adapters.ops.health import (
    PartitionHealth,
    PartitionProgress,
    from_report,
    unready,
)
from streamlstm.adapters.ops.prometheus import MetricsHub
from streamlstm.adapters.ray.workers import loop_alive
from streamlstm.stream.metric_counts import MetricCounts


def test_loop_alive_needs_a_running_loop_and_a_recent_heartbeat() -> None:
    assert loop_alive(True, heartbeat=100.0, now=130.0, timeout_s=60.0)
    assert not loop_alive(True, heartbeat=100.0, now=161.0, timeout_s=60.0)  # hangs
    assert not loop_alive(False, heartbeat=100.0, now=101.0, timeout_s=60.0)  # run ended


def test_workers_up_counts_running_loops_not_answering_actors() -> None:
    def report(worker: int, alive: bool) -> dict:
        return {"worker": worker, "counts": MetricCounts().drain(), "loop_alive": alive}

    hub = MetricsHub()
    hub.add_reports([report(0, True), report(1, False), None])
    assert (hub.workers_desired, hub.workers_up) == (3, 1)


TP0, TP1 = ("icu", 0), ("icu", 1)


def test_progress_tracks_polls_commits_and_what_waits_uncommitted() -> None:
    progress = PartitionProgress({TP0: 10, TP1: 5}, checkpoints=3)
    progress.polled(100.0, {TP0: 10, TP1: 5}, checkpoints=3)  # restored, nothing read
    progress.polled(101.0, {TP0: 14, TP1: 5}, checkpoints=3)  # 4 records read on icu:0
    progress.polled(102.0, {TP0: 20, TP1: 5}, checkpoints=3)
    got = from_report(progress.report())
    assert got[TP0] == PartitionHealth(102.0, None, 10, 101.0)  # waiting since the first
    assert got[TP1] == PartitionHealth(102.0, None, 0, None)
    progress.polled(103.0, {TP0: 20, TP1: 5}, checkpoints=4)  # a checkpoint committed both
    got = from_report(progress.report())
    assert got[TP0] == PartitionHealth(103.0, 103.0, 0, None)
    assert got[TP1].committed_at == 103.0


def test_readiness_names_each_partition_at_fault_and_an_idle_one_stays_ready() -> None:
    fine = PartitionHealth(
        polled_at=995.0, committed_at=900.0, uncommitted=0, uncommitted_since=None
    )
    hung = PartitionHealth(900.0, 890.0, 0, None)
    stuck = PartitionHealth(999.0, 800.0, 42, 930.0)  # polls, but commits fail for 70 s
    assert unready([TP0, TP1], {TP0: fine, TP1: fine}, 1000.0, 60.0, 60.0) == []
    assert unready([TP0, TP1], {TP0: fine}, 1000.0, 60.0, 60.0) == ["icu:1: not polled yet"]
    assert unready([TP0], {TP0: hung}, 1000.0, 60.0, 60.0) == ["icu:0: last poll 100 s ago"]
    assert unready([TP0], {TP0: stuck}, 1000.0, 60.0, 60.0) == [
        "icu:0: 42 records read but uncommitted for 70 s"
    ]
    assert unready([TP0], {TP0: stuck}, 1000.0, 60.0, 120.0) == []


def test_the_hub_keeps_each_partitions_newest_report_and_its_commit_time() -> None:
    def report(worker: int, rows: list) -> dict:
        counts = MetricCounts().drain()
        return {"worker": worker, "counts": counts, "loop_alive": True, "partitions_health": rows}

    hub = MetricsHub()
    hub.expected = [TP0]
    hub.add_reports([report(0, [["icu", 0, 50.0, 40.0, 0, None]])])
    # Moved to worker 1 (a restart in a new process: no commit of its own yet).
    hub.add_reports([report(0, []), report(1, [["icu", 0, 60.0, None, 3, 58.0]])])
    assert hub.partitions[TP0] == PartitionHealth(60.0, 40.0, 3, 58.0)
    assert hub.why_unready(61.0, 60.0, 60.0) == []
    assert hub.why_unready(200.0, 60.0, 60.0) == ["icu:0: last poll 140 s ago"]
