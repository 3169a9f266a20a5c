"""Re-planning the partitions for a new number of workers, moving as few as possible.

A moved partition costs a hand-off (its old owner drains it, its new owner restores the
snapshot and seeks past it: a pause of that partition's records), so a scale-out from 2 to
3 workers should move only the partitions the new worker takes, not reshuffle all of them
as ``plan_assignment`` would. Pure: lists in, lists out.
"""

from __future__ import annotations

from dataclasses import dataclass

TP = tuple[str, int]


def rebalance(current: list[list[TP]], partitions: list[TP], n_workers: int) -> list[list[TP]]:
    """The plan for ``n_workers`` that keeps each partition on its current worker where the
    sizes allow.

    Sizes are as even as ``plan_assignment``'s (they differ by at most one). Workers past
    ``n_workers`` are the ones removed (scale-in removes the highest indices); their
    partitions, partitions that are new, and a worker's excess over its size go to the
    workers with room, lowest index first. The larger sizes go to the workers holding the
    most already, so the fewest partitions move.
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    wanted = set(partitions)
    seen: set[TP] = set()
    kept: list[list[TP]] = []
    for i in range(n_workers):
        own = []
        for tp in sorted(current[i]) if i < len(current) else []:
            if tp in wanted and tp not in seen:  # gone partitions dropped, duplicates once
                own.append(tp)
                seen.add(tp)
        kept.append(own)
    base, extra = divmod(len(wanted), n_workers)
    by_load = sorted(range(n_workers), key=lambda i: (-len(kept[i]), i))
    size = {i: base + (rank < extra) for rank, i in enumerate(by_load)}
    pool = sorted(wanted - seen)
    for i in range(n_workers):
        pool += kept[i][size[i] :]
        kept[i] = kept[i][: size[i]]
    pool.sort()
    for i in range(n_workers):
        while len(kept[i]) < size[i]:
            kept[i].append(pool.pop(0))
    return [sorted(own) for own in kept]


@dataclass(frozen=True)
class HandOff:
    """What a change of plan does to each worker (indices into the old and new plans)."""

    moved: list[TP]  # partitions whose owner changes
    restart: list[int]  # surviving workers whose assignment changes: drain, then start again
    remove: list[int]  # workers past the new count: drain, then kill
    add: list[int]  # new workers: start with their assignment


def hand_off(old: list[list[TP]], new: list[list[TP]]) -> HandOff:
    owner_before = {tp: i for i, own in enumerate(old) for tp in own}
    owner_after = {tp: i for i, own in enumerate(new) for tp in own}
    moved = sorted(tp for tp, i in owner_after.items() if owner_before.get(tp) != i)
    survivors = range(min(len(old), len(new)))
    return HandOff(
        moved=moved,
        restart=[i for i in survivors if sorted(old[i]) != sorted(new[i])],
        remove=list(range(len(new), len(old))),
        add=list(range(len(old), len(new))),
    )
