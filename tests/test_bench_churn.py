"""``bench memory --churn``: a real worker loop with idle eviction, fed in memory, keeps its
state bounded when short-lived streams come and go (issue 18, bounded state)."""

from __future__ import annotations

from streamlstm import config as config_mod
from streamlstm.adapters.dev.bench_churn import Churn, bench_churn


def test_short_lived_streams_leave_the_state_and_the_snapshot_after_the_ttl() -> None:
    plan = Churn(churn=3000, steady=50, per_stream=3, interval_s=10, arrivals_per_s=10, ttl_s=60)
    got = bench_churn(config_mod.load(None), plan)
    base, during, after = got["baseline"], got["churn_end"], got["after"]
    assert got["records"] == got["scored"] + got["warming"] + got["dlq"]  # one reading each
    assert got["dlq"] == 0 and got["evicted"] == 3000
    assert base["active_streams"] == after["active_streams"] == 50
    assert during["active_streams"] > 50  # the churn was there
    assert after["snapshot_bytes"] <= 1.1 * base["snapshot_bytes"]
    # Bounded by who is alive within a TTL (arrivals x (life + TTL + one check)), not by
    # how many came: 3000 came, never more than ~1300 were held at once.
    check_s = config_mod.load(None).state.evict_check_s
    alive_s = (plan.per_stream - 1) * plan.interval_s + plan.ttl_s + check_s + 1
    assert got["peak_active_streams"] <= 50 + plan.arrivals_per_s * alive_s
    assert after["table_capacity_rows"] < 3000  # rows are reused, not added per stream
    # and a table that grew for the peak shrinks back once the streams are gone
    assert after["table_bytes"] == base["table_bytes"]
