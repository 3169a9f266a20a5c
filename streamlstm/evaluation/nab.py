"""The NAB score (Numenta Anomaly Benchmark), as numenta/NAB ``nab/sweeper.py`` and
``nab/runner.py`` compute it; each alert opening is one NAB detection (see ``nab_score``).

Pure numpy, no I/O; windows become ``evaluate.Event``s the same way the event-wise metrics
build them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


def nab_score(
    ts: Sequence[float] | np.ndarray,
    alert_open: Sequence[bool] | np.ndarray,
    windows: Sequence[tuple[float, float]],
    profile: str | NabProfile = "standard",
) -> float:
    """Raw NAB score of one series, as ``Sweeper.calcSweepScore`` + ``calcScoreByThreshold``.

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
    parts: list[float | None] = [-prof.fn_weight if ev.end_idx >= probation else None for ev in evs]
    starts = np.array([ev.start_idx for ev in evs], dtype=np.int64)
    max_tp = _scaled_sigmoid(-1.0)
    fp_score = 0.0
    for i in (int(j) for j in np.flatnonzero(det) if j >= probation):
        k = int(np.searchsorted(starts, i, "right")) - 1  # last window starting at or before i
        ev = evs[k] if k >= 0 else None
        if ev is not None and i <= ev.end_idx:
            width = ev.end_idx - ev.start_idx + 1
            tp = _scaled_sigmoid(-(ev.end_idx - i + 1) / width) * prof.tp_weight / max_tp
            best = parts[k]  # never None here: i is past probation and inside window k
            parts[k] = tp if best is None else max(best, tp)
        else:
            fp_score += _fp_unweighted(ev, i) * prof.fp_weight
    return fp_score + sum(p for p in parts if p is not None)


@dataclass(frozen=True)
class NabTally:
    """The sums NAB normalises over a set of series: detector, null and perfect raw scores.
    Tallies add up, so a score over any union of series is the sum of theirs."""

    raw: float = 0.0
    null: float = 0.0
    perfect: float = 0.0

    def __add__(self, other: NabTally) -> NabTally:
        return NabTally(self.raw + other.raw, self.null + other.null, self.perfect + other.perfect)

    def score(self) -> float | None:
        """100 * (raw - null) / (perfect - null); None where that is 0/0 (no window)."""
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span else None


def nab_tally(s: NabSeries, profile: str | NabProfile = "standard") -> NabTally:
    """One series' share of a normalised NAB score (``nab_report`` sums them)."""
    prof = NAB_PROFILES[profile] if isinstance(profile, str) else profile
    n_windows = len(events_from_windows(s.ts, s.windows))
    return NabTally(
        nab_score(s.ts, s.alert_open, s.windows, prof),
        nab_score(s.ts, np.zeros(len(s.ts), bool), s.windows, prof),
        n_windows * prof.tp_weight,
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
