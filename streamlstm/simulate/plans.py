"""Where the simulator's anomalies go in a stream: the short events first, after the clean
warm-up quarter and ``MIN_GAP`` readings apart; then the free spans left between them, where
a sustained fault may go without moving any of them."""

from __future__ import annotations

import math

import numpy as np

from streamlstm.simulate.anomalies import DRAW, MIN_GAP, WARMUP_FRACTION, Plan


def plan_events(
    rng: np.random.Generator,
    kinds: tuple[str, ...],
    features: list[str],
    sd: np.ndarray,
    length: int,
    rate: float,
) -> list[tuple[int, Plan]]:
    """(start index, plan) pairs: after the warm-up quarter, apart by MIN_GAP, in order.

    ``rate`` is the expected number of events per 1,000 readings after the warm-up quarter;
    at rate 1 about a fifth of 2,000-reading streams stay clean.
    """
    lo = math.ceil(WARMUP_FRACTION * length)
    expected = rate * (length - lo) / 1000.0
    # Poisson, capped at twice the mean so no stream is crowded (0-3 at the defaults).
    count = min(int(rng.poisson(expected)), math.ceil(2 * expected)) if rate > 0 else 0
    plans = [DRAW[str(k)](rng, features, sd) for k in rng.choice(kinds, size=count)]
    while plans and sum(p.length for p in plans) + MIN_GAP * (len(plans) - 1) > length - lo:
        plans.pop()  # a short stream holds fewer events
    if not plans:
        return []
    slack = length - lo - sum(p.length for p in plans) - MIN_GAP * (len(plans) - 1)
    # Sorted uniform offsets spread the slack at random while keeping order and gaps.
    offsets = np.sort(rng.integers(0, slack + 1, size=len(plans)))
    placed, used = [], 0
    for offset, plan in zip(offsets, plans, strict=True):
        placed.append((lo + int(offset) + used, plan))
        used += plan.length + MIN_GAP
    return placed


def free_spans(placed: list[tuple[int, Plan]], length: int) -> list[tuple[int, int]]:
    """[first, end) index ranges after the warm-up quarter that a new event may fill, MIN_GAP
    clear of every placed one (``placed`` in order, as ``plan_events`` returns it)."""
    edges = [math.ceil(WARMUP_FRACTION * length)]
    for start, plan in placed:
        edges += [start - MIN_GAP, start + plan.length + MIN_GAP]
    edges.append(length)
    pairs = zip(edges[::2], edges[1::2], strict=True)
    return [(a, b) for a, b in pairs if b > a]
