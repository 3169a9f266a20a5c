"""A score that reads as "how rare" on every stream: the tail probability of the calibrated
score against the stream's own long-run distribution of it (an anomaly likelihood in HTM's
sense; numenta's anomaly_likelihood.py, re-derived here, not copied).

The calibrated score (``calibration.calibrated_score``, the largest robust z over the
error columns) assumes Gaussian tails per column. Bursty, heavy-tailed streams break that:
their normal readings reach z = 7 often. Here each stream learns the mean and spread of its
own calibrated score over ``score_tail_horizon`` readings (outside alerts, as the
calibration does), smooths the score over ``score_tail_short`` readings, and reports
``-log10 P(short mean >= observed)`` under a Gaussian with the long-run mean and spread:
``enter: 5`` means "rarer than once in 100,000 readings of this stream". A stream whose
score is often high gets a wide spread and alerts less; a quiet one alerts on less.

Pure tensors; ``step.TensorStep`` calls it after the calibrated score when
``detector.score_tail_horizon`` is set.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from streamlstm.detect.calibration import MAD_TO_SIGMA
from streamlstm.detect.columns import Col

# Where a new stream's score distribution starts, and how many readings that start counts
# as: the calibrated score of Gaussian errors (the largest of a few clamped z's) has a mean
# near 1 and a mean absolute deviation near 0.6.
TAIL_PRIOR = (1.0, 0.6)
TAIL_PRIOR_N = 30.0
# A new stream's tail columns: the prior's mean and spread, nothing learnt, the short mean
# at the prior's mean. The one start for the detector's table and the baselines.
TAIL_START = {
    Col.TAIL_MU: TAIL_PRIOR[0],
    Col.TAIL_DEV: TAIL_PRIOR[1],
    Col.TAIL_N: 0.0,
    Col.TAIL_SHORT: TAIL_PRIOR[0],
}
# Spread floor in calibrated-z units: a stream whose score never moves (a noise-free signal)
# would otherwise call any flicker astronomically rare.
TAIL_MIN_SIGMA = 0.25
LOG10 = math.log(10.0)


def tail_score(raw: Tensor, state: dict[str, Tensor], short_len: int) -> tuple[Tensor, Tensor]:
    """raw (B,) calibrated score -> (score (B,), short (B,) the new short-window mean).

    state: tail_mu, tail_dev, tail_short (B,). The reading enters the short mean before it is
    judged, so a single extreme reading can alert on its own if it is extreme enough.
    """
    short = state[Col.TAIL_SHORT] + (raw - state[Col.TAIL_SHORT]) / short_len
    sigma = (MAD_TO_SIGMA * state[Col.TAIL_DEV]).clamp_min(TAIL_MIN_SIGMA)
    # Against the single readings' spread, not sigma / sqrt(short_len) as for independent
    # readings: consecutive scores share most of their window, so they are far from
    # independent, and the narrower spread would call ordinary wobbles rare (HTM does the same).
    z = (short - state[Col.TAIL_MU]) / sigma
    score = -torch.special.log_ndtr(-z) / LOG10  # -log10 of the upper tail, stable for big z
    return score, short


def learn_tail(
    raw: Tensor, state: dict[str, Tensor], learn: Tensor, horizon: float
) -> dict[str, Tensor]:
    """The long-run mean and mean absolute deviation of the raw score after the readings
    with ``learn`` (B,) bool; others keep theirs exactly. Deviations are clipped at 4 sigmas
    so one wild reading that did not alert cannot widen the spread much."""
    mu, dev, n = state[Col.TAIL_MU], state[Col.TAIL_DEV], state[Col.TAIL_N]
    alpha = torch.clamp_min(1.0 / (n + TAIL_PRIOR_N + 1.0), 1.0 / horizon) * learn
    bound = 4.0 * (MAD_TO_SIGMA * dev).clamp_min(TAIL_MIN_SIGMA)
    step = torch.maximum(torch.minimum(raw - mu, bound), -bound)
    return {
        Col.TAIL_MU: mu + alpha * step,
        Col.TAIL_DEV: dev + alpha * (step.abs() - dev),
        Col.TAIL_N: n + learn.float(),
    }
