"""Sustained faults for the simulator: episodes lasting hours that stay until treated or repaired.

At the default 60 s between readings an episode of 400-900 readings lasts 6.7-15 hours. Each
is labelled over its whole span, onset and recovery included. The change is a correlated
shift of several features from one cause, on top of the stream's own normal noise, with a
slow shared wander (and a little of each feature's own) so the plateau is not a constant.

Vitals: a sustained desaturation (spo2 down, hr and rr up to compensate) and a sustained
hypotension (sbp and dbp down, hr up to compensate). Sensors: a valve fault (a throttled
valve: flow and motor power down, discharge pressure and vibration up) and a pump imbalance
(vibration grows and stays, power rises with the losses, the bearing warms).

A fault only fills a free span between the short events (``MIN_GAP`` clear of them), and
every draw comes from the stream's own sustained-fault generator: the short events and the
normal data are exactly what they were before sustained faults existed, in every stream.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streamlstm.simulate.anomalies import Plan
from streamlstm.simulate.normal import FEATURES
from streamlstm.simulate.plans import free_spans

SUSTAINED_KINDS: dict[str, tuple[str, ...]] = {
    "vitals": ("sustained_desaturation", "sustained_hypotension"),
    "sensors": ("valve_fault", "pump_imbalance"),
}
MIN_STREAM = 1200  # readings: after the clean first quarter, room for the longest episode
LENGTH = (400, 900)  # readings per episode, both inclusive
SHARE = 0.5  # chance that a long stream holds an episode, at anomaly_rate 1 (scaled by it)
# Relative size of the shared and per-feature wander of the shift: it breathes, but its
# direction never flips (the multiplier is kept >= FLOOR).
SHARED_WANDER, OWN_WANDER, FLOOR = 0.12, 0.06, 0.5


def place_sustained(
    rng: np.random.Generator,
    domain: str,
    sd: np.ndarray,
    placed: list[tuple[int, Plan]],
    length: int,
    rate: float,
) -> list[tuple[int, Plan]]:
    """``placed`` with at most one sustained fault added in a free span long enough for it
    (a span chosen at random, the fault's length capped by it), in order; the short events
    stay where they were. A stream whose free spans are all too short gets none."""
    if length < MIN_STREAM or rate <= 0 or rng.random() >= min(1.0, SHARE * rate):
        return placed
    spans = [(a, b) for a, b in free_spans(placed, length) if b - a >= LENGTH[0]]
    if not spans:
        return placed
    first, end = spans[int(rng.integers(len(spans)))]
    kind = str(rng.choice(SUSTAINED_KINDS[domain]))
    features = FEATURES[domain]
    plan = DRAW_SUSTAINED[kind](rng, features, sd, min(LENGTH[1], end - first))
    start = first + int(rng.integers(0, end - first - plan.length + 1))
    return sorted([*placed, (start, plan)], key=lambda item: item[0])


def _slow(rng: np.random.Generator, length: int, width: int) -> np.ndarray:
    """(length, width) unit-variance AR(1) with a time constant of about 50 readings."""
    phi = 0.98
    e = rng.standard_normal((length, width))
    out = np.empty_like(e)
    out[0] = e[0]
    for t in range(1, length):
        out[t] = phi * out[t - 1] + np.sqrt(1 - phi**2) * e[t]
    return out


def _shape(length: int, onset: int, recover: int) -> np.ndarray:
    """Linear onset, plateau at 1, linear recovery (``recover`` 0: an abrupt end, a repair)."""
    profile = np.ones(length)
    profile[:onset] = np.arange(1, onset + 1) / (onset + 1)
    if recover:
        profile[length - recover :] = np.arange(recover, 0, -1) / (recover + 1)
    return profile


def _episode(
    rng: np.random.Generator,
    kind: str,
    features: list[str],
    names: tuple[str, ...],
    profile: np.ndarray,
    sizes: list[float],
    detail: str = "",
) -> Plan:
    """The plan: ``profile`` x each feature's size, modulated by the shared and own wander."""
    cols = tuple(features.index(n) for n in names)
    wander = _slow(rng, len(profile), 1 + len(cols))
    scale = 1 + SHARED_WANDER * wander[:, :1] + OWN_WANDER * wander[:, 1:]  # (L, C)
    delta = np.zeros((len(profile), len(features)))
    delta[:, list(cols)] = profile[:, None] * np.maximum(scale, FLOOR) * np.asarray(sizes)
    return Plan(kind, cols, delta, detail)


def _length(rng: np.random.Generator, longest: int) -> int:
    return int(rng.integers(LENGTH[0], max(LENGTH[0], min(LENGTH[1], longest)) + 1))


def _desaturation(
    rng: np.random.Generator, features: list[str], sd: np.ndarray, longest: int = LENGTH[1]
) -> Plan:
    # Falls over 10-40 min, recovers over 20-60 min once oxygen is given. Clinical units:
    # spo2 points lost (to the high 80s), compensating hr and rr rise.
    profile = _shape(_length(rng, longest), int(rng.integers(10, 41)), int(rng.integers(20, 61)))
    sizes = [-rng.uniform(5, 10), rng.uniform(15, 30), rng.uniform(6, 12)]
    names = ("spo2", "hr", "rr")
    return _episode(rng, "sustained_desaturation", features, names, profile, sizes)


def _hypotension(
    rng: np.random.Generator, features: list[str], sd: np.ndarray, longest: int = LENGTH[1]
) -> Plan:
    # Slow onset (bleeding, sepsis), slow recovery with fluids or pressors. mmHg and bpm:
    # systolic falls more than diastolic (a narrower pulse pressure), hr compensates.
    profile = _shape(_length(rng, longest), int(rng.integers(20, 61)), int(rng.integers(30, 91)))
    sizes = [-rng.uniform(25, 45), -rng.uniform(18, 30), rng.uniform(15, 30)]
    names = ("sbp", "dbp", "hr")
    return _episode(rng, "sustained_hypotension", features, names, profile, sizes)


def _valve_fault(
    rng: np.random.Generator, features: list[str], sd: np.ndarray, longest: int = LENGTH[1]
) -> Plan:
    # A valve sticks part-closed within minutes and stays so until repaired (abrupt end).
    # In noise sigmas: the pump runs against a higher head at less flow and less power, and
    # off its design point it vibrates more. Flow and power normally rise with pressure.
    profile = _shape(_length(rng, longest), int(rng.integers(3, 16)), 0)
    names = ("flow", "pressure", "power", "vibration")
    sizes = [-rng.uniform(3, 5), rng.uniform(4, 7), -rng.uniform(3, 5), rng.uniform(3, 6)]
    sizes = [s * sd[features.index(n)] for s, n in zip(sizes, names, strict=True)]
    return _episode(rng, "valve_fault", features, names, profile, sizes, "throttled")


def _pump_imbalance(
    rng: np.random.Generator, features: list[str], sd: np.ndarray, longest: int = LENGTH[1]
) -> Plan:
    # Vibration grows over the first 30-60 % (wear, deposits on the impeller), then stays
    # until the pump is stopped and balanced (abrupt end). Power follows the losses; the
    # bearing temperature follows the vibration with a lag of about half an hour.
    length = _length(rng, longest)
    grow = int(length * rng.uniform(0.3, 0.6))
    growth = np.minimum(np.arange(1, length + 1) / grow, 1.0)
    lagged = np.empty(length)
    lagged[0] = 0.03 * growth[0]  # warming from the first labelled reading on
    for t in range(1, length):
        lagged[t] = 0.97 * lagged[t - 1] + 0.03 * growth[t]
    plan = _episode(
        rng,
        "pump_imbalance",
        features,
        ("vibration", "power", "temperature"),
        growth,
        [
            rng.uniform(6, 10) * sd[features.index("vibration")],
            rng.uniform(3.5, 5) * sd[features.index("power")],
            rng.uniform(5, 8) * sd[features.index("temperature")],
        ],
    )
    temp = features.index("temperature")
    plan.delta[:, temp] *= lagged / growth  # the bearing lags the vibration
    return plan


# (generator, features, noise sigmas, longest length allowed) -> plan
DRAW_SUSTAINED: dict[str, Callable[[np.random.Generator, list[str], np.ndarray, int], Plan]] = {
    "sustained_desaturation": _desaturation,
    "sustained_hypotension": _hypotension,
    "valve_fault": _valve_fault,
    "pump_imbalance": _pump_imbalance,
}
