"""Per-stream statistics as pure tensor updates, shared by serving and training.

Each function takes the rows of a batch (B streams) and returns new values; nothing here
knows about tables, Kafka or clocks. Training runs the very same ``normalise`` over its
sequences, so the model is trained on inputs normalised exactly as in serving.

All updates are robust EMAs with a count-based start: ``alpha = max(1/(n + 1), 1/horizon)``,
and deviations are clipped so one wild reading cannot wreck the statistics.

The calibration columns hold the stream's *own* error statistics only. The group's prior
(errors are in normalised units, so they compare across streams) only seeds the score of a
new stream: ``calibrated_score`` blends it in with a weight that falls to exactly zero once
the stream has calibrated from ``fade`` readings of its own (``prior_weight``). So after
its warm-up a stream's score no longer depends on which other streams share its group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from streamlstm.config import DetectorConfig
from streamlstm.detect.columns import Col

CAL_PRIOR = 30.0  # pseudo-readings of the group prior in a new stream's calibration
CLIP_AFTER = 10  # own readings before deviations are clipped at 4 own sigmas
ERR_EPS = 1e-3  # added to the squared error: errors below ~0.03 sigma are all 'perfect'
MAD_TO_SIGMA = 1.2533  # mean absolute deviation -> standard deviation for a normal
# Median and mean absolute deviation of sqrt(z^2 + ERR_EPS) for a standard normal z: where
# an input-deviation column starts when the model's prior has none.
INPUT_PRIOR = (0.675, 0.47)


@dataclass(frozen=True)
class GroupPrior:
    """What a new stream of a group starts from; learnt in training, stored in checkpoints."""

    # (F,) raw-unit mean and std over the training data: descriptive (model cards); a
    # stream's normalisation starts from its own first readings, not from these.
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_run: tuple[float, ...]  # (F,) longest normal run of unchanged-or-missing values
    cal_mu: tuple[float, ...] = ()  # (F + 1,) typical RMS error per feature and in total
    cal_dev: tuple[float, ...] = ()  # (F + 1,) its mean absolute deviation

    def tensors(self, device: torch.device, k: int | None = None) -> dict[str, Tensor]:
        """As tensors, with ``k`` calibration columns (default F + 1). A prior learnt with
        fewer columns (a model trained before ``score_inputs`` was set) is padded with what
        a Gaussian input gives; one with more is cut to ``k``."""
        n_errors = len(self.mean) + 1
        k = k or n_errors
        mu = (list(self.cal_mu) or [-1.0] * n_errors) + [INPUT_PRIOR[0]] * k
        dev = (list(self.cal_dev) or [0.5] * n_errors) + [INPUT_PRIOR[1]] * k
        return {
            Col.MEAN: torch.tensor(self.mean, dtype=torch.float32, device=device),
            "std": torch.tensor(self.std, dtype=torch.float32, device=device),
            Col.MAX_RUN: torch.tensor(self.max_run, dtype=torch.float32, device=device),
            Col.CAL_MU: torch.tensor(mu[:k], dtype=torch.float32, device=device),
            Col.CAL_DEV: torch.tensor(dev[:k], dtype=torch.float32, device=device),
        }


def prior_weight(n: Tensor, fade: int) -> Tensor:
    """(B,) readings a stream has calibrated from -> (B, 1) weight of the group prior.

    ``CAL_PRIOR / (CAL_PRIOR + n)`` (the prior counts as that many readings), ramped down to
    exactly 0 at ``n = fade``: past it only the stream's own readings score it.
    """
    if fade <= 0:
        return torch.zeros_like(n).unsqueeze(-1)
    ramp = (1.0 - n / fade).clamp_min(0.0)
    return (CAL_PRIOR / (CAL_PRIOR + n) * ramp).unsqueeze(-1)


def calibrated_score(
    stats: Tensor,
    seen: Tensor,
    state: dict[str, Tensor],
    prior: tuple[Tensor, Tensor] | None = None,
    fade: int = 0,
) -> tuple[Tensor, Tensor]:
    """Robust z-scores of RMS errors against the stream's own history.

    stats, seen (B, K): RMS error of each feature plus the all-feature total in column F
    (K = F + 1), then with ``score_inputs`` each feature's input deviation (K = 2F + 1;
    ``score_statistics``), and whether each could be judged (observed in the window).
    state: cal_mu, cal_dev (B, K), cal_n (B,): the stream's own statistics.
    prior: the group's (cal_mu, cal_dev) (K,), blended in by ``prior_weight(cal_n, fade)``.
    The score is the largest z: one badly reconstructed feature is enough, and the total
    catches anomalies spread thinly over many features (a broken correlation).
    returns score (B,), z (B, K).
    """
    mu, dev = state[Col.CAL_MU], state[Col.CAL_DEV]
    if prior is not None:
        w = prior_weight(state[Col.CAL_N], fade)  # (B, 1)
        mu = w * prior[0] + (1.0 - w) * mu
        dev = w * prior[1] + (1.0 - w) * dev
    sigma = MAD_TO_SIGMA * dev + 1e-3
    z = ((stats - mu) / sigma).clamp_min(0.0) * seen
    return z.max(dim=-1).values, z


def learn_calibration(
    stats: Tensor,
    seen: Tensor,
    state: dict[str, Tensor],
    learn: Tensor,
    horizon: float | Tensor,
) -> dict[str, Tensor]:
    """The stream's own calibration after the readings with ``learn`` (B,) bool: serving
    passes only rows outside alerts and past burn-in; the others keep their state exactly.
    horizon: readings behind the statistics, one for all columns or (K,) per column.

    The first learnt reading sets the mean (alpha 1), the second the deviation, so the values
    a row starts with (the prior, in a new row) leave no trace. Deviations are clipped at 4
    of the stream's own sigmas once it has ``CLIP_AFTER`` readings: never the prior's, which
    would let the group decide what the stream learns.
    """
    mu, dev, n = state[Col.CAL_MU], state[Col.CAL_DEV], state[Col.CAL_N]
    n1 = n.unsqueeze(-1)  # (B, 1)
    floor = torch.as_tensor(1.0 / horizon, device=n.device)
    # One gate for both rates, and reciprocal() for 1.0 / t (which torch computes as
    # reciprocal() * 1.0): the same bits in fewer operations, as gate and seen are 0 or 1.
    gate = learn.unsqueeze(-1) * seen
    alpha_mu = torch.maximum(torch.reciprocal(n1 + 1.0), floor) * gate
    alpha_dev = torch.where(n1 > 0, torch.maximum(torch.reciprocal(n1.clamp_min(1.0)), floor), 0.0)
    alpha_dev = alpha_dev * gate
    step = stats - mu
    bound = 4.0 * (MAD_TO_SIGMA * dev + 1e-3)
    clip = n1 >= CLIP_AFTER
    step = torch.where(clip, torch.maximum(torch.minimum(step, bound), -bound), step)
    # lerp, not mu + alpha * step: at alpha 1 it gives the target exactly, so the start
    # values are gone bit for bit after the first readings
    target = torch.where(clip, mu + step, stats)
    return {
        Col.CAL_MU: torch.lerp(mu, target, alpha_mu),
        Col.CAL_DEV: torch.lerp(dev, step.abs(), alpha_dev),
        Col.CAL_N: n + learn.float(),
    }


def rms_errors(feat_err: Tensor, win_m: Tensor) -> tuple[Tensor, Tensor]:
    """(..., F) per-feature error, (..., W, F) window mask -> stats, seen (..., F + 1).

    The statistic is the RMS error (in normalised units): unlike the log, it keeps large
    errors large, and for Gaussian noise it is close to Gaussian itself. The last column is
    the RMS over the features seen in the window.
    """
    seen = (win_m.sum(dim=-2) > 0).float()  # (..., F)
    total = (feat_err * seen).sum(-1, keepdim=True) / seen.sum(-1, keepdim=True).clamp_min(1.0)
    any_seen = (seen.sum(-1, keepdim=True) > 0).float()
    stats = torch.sqrt(torch.cat([feat_err, total], dim=-1) + ERR_EPS)
    return stats, torch.cat([seen, any_seen], dim=-1)


def score_statistics(
    feat_err: Tensor, win_m: Tensor, z: Tensor, m: Tensor, with_inputs: bool
) -> tuple[Tensor, Tensor]:
    """What ``calibrated_score`` scores: stats, seen (..., K), the one definition for serving,
    training's prior and the sliding-window baseline.

    feat_err (..., F) window error, win_m (..., W, F) window mask; z, m (..., F) the
    reading's normalised value (its distance from the normaliser's forecast) and mask.
    Columns: the ``rms_errors`` (F + 1), then with ``with_inputs`` each feature's input
    deviation in the same RMS form (F more).
    """
    stats, seen = rms_errors(feat_err, win_m)
    if not with_inputs:
        return stats, seen
    deviation = torch.sqrt(z * z + ERR_EPS)
    return torch.cat([stats, deviation], dim=-1), torch.cat([seen, m], dim=-1)


def calibration_fade(det: DetectorConfig) -> int:
    """Own readings after which the group prior no longer scores a stream (``prior_weight``)."""
    return det.calibration_fade


def learning_own(state: dict[str, Tensor], det: DetectorConfig) -> Tensor:
    """(B,) bool: rows whose score still leans on the group prior (fewer than
    ``calibration_fade`` own readings). Nothing is held back from their normal or their
    calibration, as during the warm-up: what is held is decided by the score, so holding
    there would let the group shape the stream's own statistics."""
    return state[Col.CAL_N] < calibration_fade(det)


def n_calibrated(det: DetectorConfig, n_features: int) -> int:
    """Columns ``score_statistics`` gives: errors per feature and in total, then the input
    deviations with ``score_inputs``."""
    return 2 * n_features + 1 if det.score_inputs else n_features + 1


def calibration_horizons(det: DetectorConfig, n_features: int) -> float | Tensor:
    """Per-column horizons for ``learn_calibration``: the errors follow ``calibration_horizon``;
    input deviations follow the inputs' own scale horizon (they are measured in it), when
    it is counted in readings. With ``norm_horizon_s`` and no ``norm_scale_horizon`` the
    scale follows stream time, so no count of readings matches it: ``norm_horizon`` is then
    an unused default (60), which would have calibrated the input deviations over a minute
    at 1 Hz; they follow ``calibration_horizon`` like the errors."""
    if not det.score_inputs:
        return float(det.calibration_horizon)
    if det.norm_scale_horizon:
        scale = float(det.norm_scale_horizon)
    elif det.norm_horizon_s:
        scale = float(det.calibration_horizon)
    else:
        scale = float(det.norm_horizon)
    horizons = [float(det.calibration_horizon)] * n_calibrated(det, n_features)
    horizons[n_features + 1 :] = [scale] * n_features
    return torch.tensor(horizons)


def feature_z(z: Tensor, n_features: int) -> Tensor:
    """(B, K) calibrated z -> (B, F): per feature, the larger of error and input deviation
    (what an alert names as the features that are off)."""
    per_feature = z[..., :n_features]
    if z.shape[-1] > n_features + 1:
        per_feature = torch.maximum(per_feature, z[..., n_features + 1 :])
    return per_feature


def calibration_state(s: dict[str, Tensor]) -> dict[str, Tensor]:
    """A detector table's calibration columns as ``calibrated_score`` takes them: (B, K), the input
    deviations' (``in_mu``, ``in_dev``, present with ``score_inputs``) after the errors'."""
    view = {k: s[k] for k in (Col.CAL_MU, Col.CAL_DEV, Col.CAL_N)}
    if Col.IN_MU in s:
        view[Col.CAL_MU] = torch.cat([s[Col.CAL_MU], s[Col.IN_MU]], dim=-1)
        view[Col.CAL_DEV] = torch.cat([s[Col.CAL_DEV], s[Col.IN_DEV]], dim=-1)
    return view


def store_calibration_state(
    s: dict[str, Tensor], cal: dict[str, Tensor], idx: Tensor | None = None
) -> None:
    """Write (B, K) calibration state back to its columns (rows ``idx`` of a table's)."""
    cols = dict(cal)
    if Col.IN_MU in s:
        n_err = s[Col.CAL_MU].shape[-1]
        for err, inp in ((Col.CAL_MU, Col.IN_MU), (Col.CAL_DEV, Col.IN_DEV)):
            cols[err], cols[inp] = cal[err][..., :n_err], cal[err][..., n_err:]
    for name, value in cols.items():
        if idx is None:
            s[name] = value
        else:
            s[name][idx] = value
