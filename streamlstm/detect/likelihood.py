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

Two tail shapes (``detector.score_tail_shape``). ``gaussian``: the score's mean and spread,
a Gaussian tail. ``power``: the same statistics of ``log(1 + score)`` and a Laplace tail on
them, i.e. a tail that falls as a power of the score (Pareto), its index learnt per stream
(``1 / spread``). Why: measured on the NAB development series outside alerts and labelled
windows, the share of readings the Gaussian called rarer than 1 in 10^4 was 2.5 %, and 1.2 %
were "rarer than 1 in 10^12"; the survival of the score fell as ``score^-1.07``, a power law.
A threshold in tail units then says nothing about how often a stream alerts.

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
# The same for the power shape, in log(1 + score) units: a score that goes from 1 to 2 on a
# stream whose score never moves is then 1.8 (1 in 60), not astronomically rare.
POWER_MIN_SCALE = 0.1
# A new stream's start in log units with the power shape: the Gaussian prior's mean and
# spread carried through log(1 + score).
POWER_PRIOR = (math.log1p(TAIL_PRIOR[0]), TAIL_PRIOR[1] / (1.0 + TAIL_PRIOR[0]))
LOG10 = math.log(10.0)
LOG2 = math.log(2.0)


def tail_start(shape: str = "gaussian") -> dict[str, float]:
    """A new stream's tail columns for ``shape``: the prior's mean and spread in the units
    the shape learns in, nothing learnt, the short mean at the prior's mean (raw units)."""
    if shape != "power":
        return dict(TAIL_START)
    return TAIL_START | {Col.TAIL_MU: POWER_PRIOR[0], Col.TAIL_DEV: POWER_PRIOR[1]}


def _spread(dev: Tensor, shape: str) -> Tensor:
    if shape == "power":  # a Laplace's scale is its mean absolute deviation
        return dev.clamp_min(POWER_MIN_SCALE)
    return (MAD_TO_SIGMA * dev).clamp_min(TAIL_MIN_SIGMA)


def _learnt_units(score: Tensor, shape: str) -> Tensor:
    return torch.log1p(score.clamp_min(0.0)) if shape == "power" else score


def tail_score(
    raw: Tensor, state: dict[str, Tensor], short_len: int, shape: str = "gaussian"
) -> tuple[Tensor, Tensor]:
    """raw (B,) calibrated score -> (score (B,), short (B,) the new short-window mean).

    state: tail_mu, tail_dev, tail_short (B,). The reading enters the short mean before it is
    judged, so a single extreme reading can alert on its own if it is extreme enough.
    """
    short = state[Col.TAIL_SHORT] + (raw - state[Col.TAIL_SHORT]) / short_len
    if shape == "power":
        return power_tail(_learnt_units(short, shape), state), short
    sigma = _spread(state[Col.TAIL_DEV], shape)
    # Against the single readings' spread, not sigma / sqrt(short_len) as for independent
    # readings: consecutive scores share most of their window, so they are far from
    # independent, and the narrower spread would call ordinary wobbles rare (HTM does the same).
    z = (short - state[Col.TAIL_MU]) / sigma
    score = -torch.special.log_ndtr(-z) / LOG10  # -log10 of the upper tail, stable for big z
    return score, short


def power_tail(y: Tensor, state: dict[str, Tensor]) -> Tensor:
    """y (B,) = log(1 + short mean) -> -log10 of its upper tail under a Laplace with the
    stream's mean and mean absolute deviation of y: ``(ln 2 + (y - mu) / b) / ln 10`` above
    the mean (a Pareto tail in the score, index ``1 / b``), ``-log10(1 - e^((y - mu)/b) / 2)``
    below it (0 to 0.3)."""
    b = _spread(state[Col.TAIL_DEV], "power")
    u = (y - state[Col.TAIL_MU]) / b
    upper = (LOG2 + u.clamp_min(0.0)) / LOG10
    lower = -torch.log1p(-0.5 * torch.exp(u.clamp_max(0.0))) / LOG10
    return torch.where(u >= 0, upper, lower)


def learn_tail(
    raw: Tensor, state: dict[str, Tensor], learn: Tensor, horizon: float, shape: str = "gaussian"
) -> dict[str, Tensor]:
    """The long-run mean and mean absolute deviation of the raw score (with the power
    shape: of ``log(1 + raw)``) after the readings with ``learn`` (B,) bool; others keep
    theirs exactly. Deviations are clipped at 4 spreads so one wild reading that did not
    alert cannot widen the spread much."""
    mu, dev, n = state[Col.TAIL_MU], state[Col.TAIL_DEV], state[Col.TAIL_N]
    alpha = torch.clamp_min(1.0 / (n + TAIL_PRIOR_N + 1.0), 1.0 / horizon) * learn
    bound = 4.0 * _spread(dev, shape)
    step = _learnt_units(raw, shape) - mu
    step = torch.maximum(torch.minimum(step, bound), -bound)
    return {
        Col.TAIL_MU: mu + alpha * step,
        Col.TAIL_DEV: dev + alpha * (step.abs() - dev),
        Col.TAIL_N: n + learn.float(),
    }
