"""Labelled short anomalies for the simulator: what each kind does (``simulate.plans`` places
them, ``simulate.sustained`` has the hours-long faults).

Each anomaly is drawn as a ``Plan``: its length and the change it makes, in the stream's own
noise sigmas, or in clinical units for desaturation and tachycardia. Every draw here comes
from the stream's anomaly generator only, so the same seed with
``anomaly_rate=0`` gives the identical normal data: tests compare the two to prove that each
label sits on data that really changed, and nothing else did.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

COMMON_KINDS = ("spike", "level_shift", "drift", "variance_burst", "flatline", "correlation_break")
KINDS: dict[str, tuple[str, ...]] = {
    "vitals": (*COMMON_KINDS, "desaturation", "tachycardia"),
    "sensors": COMMON_KINDS,
}
WARMUP_FRACTION = 0.25  # the head of every stream stays clean: it trains and warms the model
MIN_GAP = 100  # normal readings between two events, so each one is scored on its own

# Directions forced by physics: a high spo2 clips at 100 and vibration cannot go below zero.
SIGN = {"spo2": -1, "vibration": 1}
# Feature pairs that normally co-move; a correlation break drives them in opposite directions.
# The third item forces the first one's direction (0: either): blood pressure can only split
# into a wider pulse pressure, since dbp must stay below sbp.
PAIRS = (("sbp", "dbp", 1), ("hr", "rr", 0), ("flow", "power", 0), ("flow", "pressure", 0))
# Body temperature is too slow and coarse (0.1 degC) for a stuck value to differ from normal
# data, and a probe cannot scatter by whole degrees: no stuck flatlines or variance bursts.
SLOW = ("temp",)


@dataclass(frozen=True, slots=True)
class Event:
    """One labelled anomaly; ``end_idx`` is inclusive, timestamps are epoch seconds."""

    stream: str
    kind: str
    start_idx: int
    end_idx: int
    start_ts: float
    end_ts: float
    features: tuple[str, ...]
    detail: str = ""  # e.g. "dropout" or "stuck" for a flatline


@dataclass(frozen=True, slots=True)
class Plan:
    kind: str
    cols: tuple[int, ...]
    delta: np.ndarray  # (length, F) added to the raw signal; all zero for a flatline
    detail: str = ""

    @property
    def length(self) -> int:
        return len(self.delta)


def _sign(rng: np.random.Generator, name: str, default: float = 0.0) -> float:
    """The forced direction of ``name``, else ``default``, else a coin flip."""
    return float(SIGN.get(name) or default or rng.choice((-1.0, 1.0)))


def _cols(
    rng: np.random.Generator, features: list[str], k: int, exclude: tuple[str, ...] = ()
) -> tuple[int, ...]:
    pool = [i for i, f in enumerate(features) if f not in exclude]
    return tuple(int(c) for c in rng.choice(pool, size=k, replace=False))


def _ramped(length: int, ramp: int) -> np.ndarray:
    """1 on the plateau with linear edges, so a change starts and ends like physiology does."""
    profile = np.ones(length)
    edge = np.arange(1, ramp + 1) / (ramp + 1)
    profile[:ramp], profile[length - ramp :] = edge, edge[::-1]
    return profile


def _plan(
    kind: str,
    n_features: int,
    cols: tuple[int, ...],
    profile: np.ndarray,
    amounts: np.ndarray,
    detail: str = "",
) -> Plan:
    delta = np.zeros((len(profile), n_features))
    delta[:, list(cols)] = profile[:, None] * np.asarray(amounts)[None, :]
    return Plan(kind, cols, delta, detail)


def _spike(rng: np.random.Generator, features: list[str], sd: np.ndarray) -> Plan:
    cols = _cols(rng, features, 1)
    size = rng.uniform(5, 10) * _sign(rng, features[cols[0]]) * sd[cols[0]]
    profile = rng.uniform(0.85, 1.0, rng.integers(1, 4))
    return _plan("spike", len(features), cols, profile, [size])


def _level_shift(rng: np.random.Generator, features: list[str], sd: np.ndarray) -> Plan:
    cols = _cols(rng, features, int(rng.integers(1, 3)))
    # Two features shift the same way (bp as a whole, hr with rr) unless physics says otherwise.
    shared = float(rng.choice((-1.0, 1.0)))
    sizes = [rng.uniform(4, 7) * _sign(rng, features[c], shared) * sd[c] for c in cols]
    return _plan("level_shift", len(features), cols, np.ones(rng.integers(40, 121)), sizes)


def _drift(rng: np.random.Generator, features: list[str], sd: np.ndarray) -> Plan:
    cols = _cols(rng, features, 1)
    size = rng.uniform(5, 8) * _sign(rng, features[cols[0]]) * sd[cols[0]]
    length = int(rng.integers(100, 201))
    # A ramp to full size, then an abrupt return: a sensor drifting until it is re-zeroed.
    return _plan("drift", len(features), cols, np.arange(1, length + 1) / length, [size])


def _variance_burst(rng: np.random.Generator, features: list[str], sd: np.ndarray) -> Plan:
    cols = _cols(rng, features, int(rng.integers(1, 3)), SLOW)
    factor = rng.uniform(4, 6)
    delta = np.zeros((int(rng.integers(30, 81)), len(features)))
    # Independent noise of variance (factor^2 - 1) sd^2 takes the total to factor x sd.
    extra = rng.standard_normal((len(delta), len(cols))) * sd[list(cols)]
    delta[:, list(cols)] = extra * math.sqrt(factor**2 - 1)
    return Plan("variance_burst", cols, delta, f"x{factor:.1f}")


def _flatline(rng: np.random.Generator, features: list[str], sd: np.ndarray) -> Plan:
    detail = "dropout" if rng.random() < 0.5 else "stuck"
    cols = _cols(rng, features, 1, SLOW if detail == "stuck" else ())
    return Plan("flatline", cols, np.zeros((int(rng.integers(30, 81)), len(features))), detail)


def _correlation_break(rng: np.random.Generator, features: list[str], sd: np.ndarray) -> Plan:
    pairs = [
        (features.index(a), features.index(b), way)
        for a, b, way in PAIRS
        if a in features and b in features
    ]
    a, b, way = pairs[int(rng.integers(len(pairs)))]
    sign = float(way or rng.choice((-1.0, 1.0)))
    # 3-5 sigma each is moderate alone but far outside the pair's joint spread.
    sizes = [sign * rng.uniform(3, 5) * sd[a], -sign * rng.uniform(3, 5) * sd[b]]
    profile = _ramped(int(rng.integers(50, 121)), int(rng.integers(3, 11)))
    return _plan(
        "correlation_break",
        len(features),
        (a, b),
        profile,
        sizes,
        f"{features[a]}/{features[b]} inverted",
    )


def _desaturation(rng: np.random.Generator, features: list[str], sd: np.ndarray) -> Plan:
    fall, low, recover = rng.integers(2, 6), rng.integers(10, 41), rng.integers(3, 11)
    profile = np.concatenate(
        [np.arange(1, fall + 1) / fall, np.ones(low), np.arange(recover, 0, -1) / (recover + 1)]
    )
    cols = (features.index("spo2"), features.index("hr"), features.index("rr"))
    # Absolute clinical units: spo2 points lost, compensating hr and rr rise.
    sizes = [-rng.uniform(6, 15), rng.uniform(10, 25), rng.uniform(4, 10)]
    return _plan("desaturation", len(features), cols, profile, sizes)


def _tachycardia(rng: np.random.Generator, features: list[str], sd: np.ndarray) -> Plan:
    profile = _ramped(int(rng.integers(15, 61)), int(rng.integers(1, 4)))
    return _plan(
        "tachycardia", len(features), (features.index("hr"),), profile, [rng.uniform(35, 60)]
    )


DRAW: dict[str, Callable[[np.random.Generator, list[str], np.ndarray], Plan]] = {
    "spike": _spike,
    "level_shift": _level_shift,
    "drift": _drift,
    "variance_burst": _variance_burst,
    "flatline": _flatline,
    "correlation_break": _correlation_break,
    "desaturation": _desaturation,
    "tachycardia": _tachycardia,
}


def apply_deltas(raw: np.ndarray, placed: list[tuple[int, Plan]]) -> None:
    """Add each plan's change to one stream's raw (L, F) signal, before clipping/rounding."""
    for start, plan in placed:
        raw[start : start + plan.length] += plan.delta


def apply_flatlines(values: np.ndarray, placed: list[tuple[int, Plan]]) -> None:
    """Stuck or missing values, after rounding, so a stuck value repeats exactly."""
    for start, plan in placed:
        if plan.kind == "flatline":
            col = plan.cols[0]
            stuck = values[start - 1, col] if plan.detail == "stuck" else np.nan
            values[start : start + plan.length, col] = stuck
