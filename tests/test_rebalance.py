"""The scale plan (``rebalance``/``hand_off``) on plain lists: even sizes, every partition
exactly once, and only the partitions that must move do."""

from __future__ import annotations

import random

import pytest

from streamlstm.adapters.ray.rebalance import hand_off, rebalance
from streamlstm.adapters.ray.workers import plan_assignment

T = "in"


def tps(*parts: int) -> list[tuple[str, int]]:
    return [(T, p) for p in parts]


def test_scale_out_2_to_3_moves_only_what_the_new_worker_takes() -> None:
    old = [tps(0, 2), tps(1, 3)]
    new = rebalance(old, tps(0, 1, 2, 3), 3)
    assert new == [tps(0, 2), tps(1), tps(3)]
    change = hand_off(old, new)
    assert change.moved == tps(3)
    assert change.restart == [1]  # worker 0 keeps running untouched
    assert (change.add, change.remove) == ([2], [])


def test_scale_in_3_to_2_gives_the_removed_workers_partitions_to_the_survivors() -> None:
    old = [tps(0, 2), tps(1), tps(3)]
    new = rebalance(old, tps(0, 1, 2, 3), 2)
    assert new == [tps(0, 2), tps(1, 3)]
    change = hand_off(old, new)
    assert change.moved == tps(3)
    assert (change.restart, change.remove, change.add) == ([1], [2], [])


def test_the_larger_sizes_go_to_the_workers_that_hold_more() -> None:
    old = [tps(0), tps(1, 2, 3, 4)]  # uneven (after an earlier scale-in, say)
    new = rebalance(old, tps(0, 1, 2, 3, 4), 2)
    assert new == [tps(0, 4), tps(1, 2, 3)]
    assert hand_off(old, new).moved == tps(4)


def test_new_partitions_are_placed_and_gone_ones_dropped() -> None:
    old = [tps(0, 2), tps(1, 3)]
    new = rebalance(old, tps(0, 1, 3, 4, 5), 2)
    assert new == [tps(0, 4, 5), tps(1, 3)] or new == [tps(0, 4), tps(1, 3, 5)]
    assert sorted(tp for own in new for tp in own) == tps(0, 1, 3, 4, 5)


def test_same_count_and_partitions_moves_nothing() -> None:
    old = plan_assignment(tps(*range(7)), 3)
    assert rebalance(old, tps(*range(7)), 3) == old
    change = hand_off(old, old)
    assert change.moved == change.restart == change.remove == change.add == []


def test_rejects_zero_workers() -> None:
    with pytest.raises(ValueError, match="n_workers must be >= 1"):
        rebalance([tps(0)], tps(0), 0)


@pytest.mark.parametrize("seed", range(40))
def test_random_changes_keep_the_invariants(seed: int) -> None:
    rng = random.Random(seed)
    parts = tps(*range(rng.randint(1, 24)))
    old = plan_assignment(parts, rng.randint(1, 8))
    n = rng.randint(1, 10)
    new = rebalance(old, parts, n)
    assert len(new) == n
    assert sorted(tp for own in new for tp in own) == sorted(parts)  # each exactly once
    sizes = [len(own) for own in new]
    assert max(sizes) - min(sizes) <= 1
    # Minimal: a partition moves only when its worker is removed or holds more than its
    # new size; the count is what that forces.
    base, extra = divmod(len(parts), n)
    loads = sorted((len(old[i]) for i in range(min(n, len(old)))), reverse=True)
    caps = [base + (r < extra) for r in range(len(loads))]
    forced = sum(len(own) for own in old[n:]) + sum(
        max(0, load - cap) for load, cap in zip(loads, caps, strict=True)
    )
    assert len(hand_off(old, new).moved) == forced
