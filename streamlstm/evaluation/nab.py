"""The NAB score (Numenta Anomaly Benchmark), as numenta/NAB ``nab/sweeper.py`` and
``nab/runner.py`` compute it; each alert opening is one NAB detection (see ``nab_score``).

Pure numpy, no I/O; windows become ``evaluate.Event``s the same way the event-wise metrics
build them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass

import numpy as np

from streamlstm.evaluation.metrics import Event, events_from_windows

NAB_PROBATION = 0.15  # NAB scores nothing in the first 15 % of a series (at most 750 rows)


@dataclass(frozen=True)
class NabProfile:
    """A NAB cost matrix as in NAB's config/profiles.json: weights are positive costs, so a
    false positive scores ``-fp_weight`` (A_fp = -0.11 in the paper) and a miss ``-fn_weight``."""

    tp_weight: float
    fp_weight: float
    fn_weight: float


# NAB names these standard, reward_low_FP_rate, reward_low_FN_rate.
NAB_PROFILES: dict[str, NabProfile] = {
    "standard": NabProfile(1.0, 0.11, 1.0),
    "reward_low_FP": NabProfile(1.0, 0.22, 1.0),
    "reward_low_FN": NabProfile(1.0, 0.11, 2.0),
}


@dataclass
class NabSeries:
    """One series for ``nab_report``: readings, alert openings and label windows (epoch s)."""

    ts: np.ndarray
    alert_open: np.ndarray
    windows: list[tuple[float, float]]
    name: str = ""


def _scaled_sigmoid(x: float) -> float:
    # NAB sweeper.scaledSigmoid: 2*sigmoid(-5x) - 1, flat -1 for FPs far (> 3 widths) past
    return -1.0 if x > 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def nab_probation(n: int) -> float:
    """Rows ``i < nab_probation(n)`` are not scored (NAB Sweeper._getProbationaryLength)."""
    return min(math.floor(NAB_PROBATION * n), NAB_PROBATION * 5000)


def nab_train_rows(n: int) -> int:
    """The readings of an ``n``-reading series inside NAB's probationary period (15 %, at
    most 750): what a detector may train on without seeing a scored reading."""
    return max(1, math.ceil(nab_probation(n)))


def _fp_unweighted(ev_prev: Event | None, i: int) -> float:
    if ev_prev is None:  # no preceding window: as if very far from any window
        return -1.0
    width = ev_prev.end_idx - ev_prev.start_idx + 1
    # NAB divides by width - 1, undefined for a one-reading window; its older scorer.py
    # used relative distance 2.0 there, which we keep
    dist = abs(ev_prev.end_idx - i) / (width - 1) if width > 1 else 2.0
    return _scaled_sigmoid(dist)


@dataclass(frozen=True)
class NabParts:
    """What one series' raw NAB score is made of (``nab_parts``): the raw score is
    ``sum(credits) - fn_weight * missed + fp_score``."""

    credits: tuple[float, ...]  # each detected window's best (earliest) detection's credit
    missed: int  # scored windows without a detection
    fp_score: float  # the detections outside every window, summed (<= 0)
    unscored: int  # windows that end inside the probationary period

    def raw(self, prof: NabProfile) -> float:
        return sum(self.credits) - prof.fn_weight * self.missed + self.fp_score


def nab_parts(
    ts: Sequence[float] | np.ndarray,
    alert_open: Sequence[bool] | np.ndarray,
    windows: Sequence[tuple[float, float]],
    profile: str | NabProfile = "standard",
) -> NabParts:
    """The parts of one series' raw NAB score, as ``Sweeper.calcSweepScore`` +
    ``calcScoreByThreshold`` compute it (``nab_score`` is their sum).

    Every alert opening is a detection (NAB scores each row above threshold; we feed it the
    openings so that one long alert is one detection). Rows in the probationary period are
    ignored. A window scores ``-fn_weight`` unless detected; its best (= earliest) detection
    scores ``tp_weight * S(-(end - i + 1) / width) / S(-1)``. A detection outside windows
    scores ``fp_weight * S(|i - prev_end| / (prev_width - 1))`` after a window, else
    ``-fp_weight``. A window with no row past the probationary period is not scored.
    """
    prof = NAB_PROFILES[profile] if isinstance(profile, str) else profile
    t = np.asarray(ts, dtype=np.float64)
    det = np.asarray(alert_open, dtype=bool)
    evs = events_from_windows(t, windows)
    probation = nab_probation(len(t))
    scored = [ev.end_idx >= probation for ev in evs]
    best: list[float | None] = [None] * len(evs)
    starts = np.array([ev.start_idx for ev in evs], dtype=np.int64)
    max_tp = _scaled_sigmoid(-1.0)
    fp_score = 0.0
    for i in (int(j) for j in np.flatnonzero(det) if j >= probation):
        k = int(np.searchsorted(starts, i, "right")) - 1  # last window starting at or before i
        ev = evs[k] if k >= 0 else None
        if ev is not None and i <= ev.end_idx:  # then window k is scored: i is past probation
            width = ev.end_idx - ev.start_idx + 1
            tp = _scaled_sigmoid(-(ev.end_idx - i + 1) / width) * prof.tp_weight / max_tp
            best[k] = tp if best[k] is None else max(best[k], tp)
        else:
            fp_score += _fp_unweighted(ev, i) * prof.fp_weight
    credits = tuple(b for b in best if b is not None)
    missed = sum(scored) - len(credits)
    return NabParts(credits, missed, fp_score, len(evs) - sum(scored))


def nab_score(
    ts: Sequence[float] | np.ndarray,
    alert_open: Sequence[bool] | np.ndarray,
    windows: Sequence[tuple[float, float]],
    profile: str | NabProfile = "standard",
) -> float:
    """Raw NAB score of one series: the sum of its ``nab_parts``."""
    prof = NAB_PROFILES[profile] if isinstance(profile, str) else profile
    return nab_parts(ts, alert_open, windows, prof).raw(prof)


# The costs ``NabTally.losses`` names, in report order.
LOSSES = ("false alarms", "missed windows", "late detections")


@dataclass(frozen=True)
class NabTally:
    """The sums NAB normalises over a set of series: detector, null and perfect raw scores,
    and what separates the detector from perfect (raw units: ``late``, the credit its
    detections lost by coming after their window's start; ``missed``, what its missed
    windows cost against finding them at the start; ``false_alarms``, what its detections
    outside windows cost). Tallies add up, so a score over any union of series is the sum
    of theirs."""

    raw: float = 0.0
    null: float = 0.0
    perfect: float = 0.0
    late: float = 0.0
    missed: float = 0.0
    false_alarms: float = 0.0

    def __add__(self, other: NabTally) -> NabTally:
        return NabTally(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def score(self) -> float | None:
        """100 * (raw - null) / (perfect - null); None where that is 0/0 (no window)."""
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span else None

    def losses(self) -> dict[str, float] | None:
        """The points of the 100 a perfect detector scores that each cost (``LOSSES``), on
        the score's scale; with every window scored, ``score() + sum(losses) == 100``.
        None where there is no window."""
        span = self.perfect - self.null
        if not span:
            return None
        costs = (self.false_alarms, self.missed, self.late)
        return {name: 100.0 * cost / span for name, cost in zip(LOSSES, costs, strict=True)}


def nab_tally(s: NabSeries, profile: str | NabProfile = "standard") -> NabTally:
    """One series' share of a normalised NAB score (``nab_report`` sums them)."""
    prof = NAB_PROFILES[profile] if isinstance(profile, str) else profile
    parts = nab_parts(s.ts, s.alert_open, s.windows, prof)
    n_windows = len(parts.credits) + parts.missed + parts.unscored
    return NabTally(
        raw=parts.raw(prof),
        null=-prof.fn_weight * (n_windows - parts.unscored),
        perfect=n_windows * prof.tp_weight,
        late=sum(prof.tp_weight - c for c in parts.credits),
        missed=(prof.tp_weight + prof.fn_weight) * parts.missed,
        false_alarms=-parts.fp_score,
    )


def nab_report(
    series: Sequence[NabSeries], profiles: dict[str, NabProfile] | None = None
) -> dict[str, float]:
    """Normalised NAB score per profile over a set of series, as NAB's ``Runner.normalize``.

    100 * (raw - null) / (perfect - null) on sums across series: null = no detections,
    perfect = tp_weight per window (what one detection at each window start earns).
    """
    out: dict[str, float] = {}
    for name, prof in (profiles or NAB_PROFILES).items():
        total = sum((nab_tally(s, prof) for s in series), NabTally())
        score = total.score()
        if score is None:
            raise ValueError("NAB normalisation needs at least one window")
        out[name] = score
    return out
