"""Worker health without a cluster: up means a running loop with a recent heartbeat."""

from __future__ import annotations

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
