"""Changing the number of running workers by snapshot hand-off (``streamlstm scale``).

The new plan moves as few partitions as it can (``rebalance``). Each moved partition's old
owner drains first: its loop ends with a final checkpoint (sinks flushed, every partition
snapshotted, offsets committed). Only then does the new owner start: it claims the
partition's next fencing generation, restores the snapshot and seeks past it. Nothing is
scored twice (the snapshot and the commit name the same offset) and nothing is skipped (the
new owner starts at that offset); alert state is in the snapshot, so an open alert keeps
its id.

Granularity: a worker whose assignment changes drains *all* its partitions and starts again
with its new list (the partitions it keeps pause for that restart too); workers whose
assignment is unchanged keep running untouched. Releasing single partitions inside a running
loop would spare the kept ones that pause; it is not done (see docs/scaling.md).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray

from streamlstm.adapters.ray.rebalance import HandOff, hand_off, rebalance

log = logging.getLogger(__name__)


def resize(sup: Any, n_workers: int, drain_timeout_s: float = 60.0) -> HandOff:
    """Run ``sup``'s partitions on ``n_workers`` workers (at most one per partition)."""
    if n_workers < 1:
        raise ValueError(f"workers must be >= 1, got {n_workers}")
    n = min(n_workers, max(1, len(sup.partitions)))
    new_plan = rebalance(sup.plan, sup.partitions, n)
    change = hand_off(sup.plan, new_plan)
    need = len(change.add) * sup.config.ray.num_cpus
    free = ray.available_resources().get("CPU", 0.0)
    if need > free + 1e-9:  # an actor Ray cannot place would block its start forever
        log.error(
            "cannot scale to %d workers: %d more need %.1f CPUs, the cluster has %.1f free; "
            "keeping %d",
            n_workers,
            len(change.add),
            need,
            free,
            len(sup.plan),
        )
        return HandOff([], [], [], [])
    sup.workers = n_workers
    if not (change.moved or change.add or change.remove):
        return change
    log.warning(
        "scaling %d -> %d workers: moving %d partition(s) %s; restarting workers %s, "
        "removing %s, adding %s",
        len(sup.plan),
        n,
        len(change.moved),
        [f"{t}:{p}" for t, p in change.moved],
        change.restart,
        change.remove,
        change.add,
    )
    sup.scales += 1
    fresh = [sup.new_actor(i) for i in change.add]
    # New workers' processes up (and their modules imported) before anyone drains: a new
    # actor took 8 s to start on a busy 2-core machine, and the moved partitions would wait.
    ray.get([actor.stats.remote() for actor in fresh])
    paused_at = time.monotonic()  # the moved partitions stop being scored
    final = _drain(sup, change.restart + change.remove, drain_timeout_s)
    for i in sorted(change.remove, reverse=True):
        sup.retired.append(final.get(i, {"worker": i, "started": False}))
        _kill(sup, i)
    sup.actors.extend(fresh)
    sup.plan = new_plan
    _start(sup, change.restart + change.add)
    sup.handoffs += len(change.moved)
    sup.pauses.append(time.monotonic() - paused_at)
    log.warning("hand-off done: partitions paused %.2f s (drain, then restore)", sup.pauses[-1])
    return change


def _drain(sup: Any, workers: list[int], timeout_s: float) -> dict[int, dict[str, Any]]:
    """Stop these workers' loops and wait for their final checkpoints; their final stats.

    A worker that cannot drain (it is dead, or its drain fails) loses nothing: its
    partitions' new owners restore the last durable snapshot and replay from there, and
    replayed readings are not applied twice (the state's last offsets; same alert ids).
    """
    for i in workers:
        sup.actors[i].stop.remote()
    final: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    for i in workers:
        ref = sup.runs.pop(i, None)
        if ref is None:
            continue
        try:
            final[i] = ray.get(ref, timeout=max(1.0, deadline - time.monotonic()))
        except Exception as exc:  # dead or stuck: its partitions replay from their snapshot
            log.warning("worker %d did not drain for the hand-off (%s): replaying", i, exc)
    return final


def _kill(sup: Any, i: int) -> None:
    """Remove worker ``i`` (the last one: scale-in removes the highest indices)."""
    actor = sup.actors.pop(i)
    try:
        ray.get(actor.close.remote(), timeout=10)
    except Exception:
        log.debug("close failed", exc_info=True)
    ray.kill(actor)
    for table in (sup.runs, sup.deaths, sup.started_at, sup.restart_due):
        table.pop(i, None)


def _start(sup: Any, workers: list[int]) -> None:
    """Start these workers with their new assignment (after every old owner drained)."""
    refs = {i: sup.actors[i].start.remote(sup.plan[i], sup.files, sup.previous) for i in workers}
    for i, ref in refs.items():
        try:
            info = ray.get(ref)
            sup.note_start(info)
            log.info("worker %s starts at %s", i, info["starts"])
        except Exception as exc:
            # A fresh process (Ray restarts the actor) has no loop: its run below fails and
            # ``watch`` restarts it with its new assignment, like any dead worker. Not the
            # old process: its old loop would run on for the partitions it gave away.
            log.error("worker %d failed to start after the hand-off: %s", i, exc)
            ray.kill(sup.actors[i], no_restart=False)
        sup.restart_due.pop(i, None)
        sup.runs[i] = sup.actors[i].run.remote()
        sup.started_at[i] = time.monotonic()
