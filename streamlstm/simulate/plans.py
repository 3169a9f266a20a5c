"""Where the simulator's anomalies go in a stream: short events and, in long streams, one
sustained episode, all after the clean warm-up quarter and ``MIN_GAP`` readings apart."""

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
    sustained: tuple[Plan, float] | None = None,
) -> list[tuple[int, Plan]]:
    """(start index, plan) pairs: after the warm-up quarter, apart by MIN_GAP, in order.

    ``rate`` is the expected number of short events per 1,000 readings after the warm-up
    quarter; at rate 1 about a fifth of 2,000-reading streams have none. ``sustained`` is a
    long episode and a uniform draw in [0, 1) of its own generator that picks its place
    among the short events; it is kept when space runs out, short events are dropped first.
    Without it, the placement is exactly what it was before sustained episodes existed.
    """
    lo = math.ceil(WARMUP_FRACTION * length)
    expected = rate * (length - lo) / 1000.0
    # Poisson, capped at twice the mean so no stream is crowded (0-3 at the defaults).
    count = min(int(rng.poisson(expected)), math.ceil(2 * expected)) if rate > 0 else 0
    plans = [DRAW[str(k)](rng, features, sd) for k in rng.choice(kinds, size=count)]
    long = [] if sustained is None or sustained[0].length > length - lo else [sustained[0]]
    while plans and _span(plans + long) > length - lo:
        plans.pop()  # a short stream holds fewer events
    if long:
        plans.insert(int(sustained[1] * (len(plans) + 1)), long[0])
    if not plans:
        return []
    slack = length - lo - _span(plans)
    # Sorted uniform offsets spread the slack at random while keeping order and gaps.
    offsets = np.sort(rng.integers(0, slack + 1, size=len(plans)))
    placed, used = [], 0
    for offset, plan in zip(offsets, plans, strict=True):
        placed.append((lo + int(offset) + used, plan))
        used += plan.length + MIN_GAP
    return placed


def _span(plans: list[Plan]) -> int:
    """Readings the plans need back to back, MIN_GAP between each two."""
    return sum(p.length for p in plans) + MIN_GAP * (len(plans) - 1)
