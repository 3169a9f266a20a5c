"""Per-stream statistics as pure tensor updates, shared by serving and training.

Each function takes the rows of a batch (B streams) and returns new values; nothing here
knows about tables, Kafka or clocks. Training runs the very same ``normalise`` over its
sequences, so the model is trained on inputs normalised exactly as in serving.

All updates are robust EMAs with a count-based start: ``alpha = max(1/(n + prior + 1),
1/horizon)``, and deviations are clipped so one wild reading cannot wreck the statistics.
The calibration starts from the group's prior (errors are in normalised units, so they
compare across streams); the input normalisation starts from the stream's own first
readings (raw units do not compare across streams).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from streamlstm.config import DetectorConfig
from streamlstm.detect.columns import Col

CAL_PRIOR = 30.0  # pseudo-readings of the group prior in a new stream's calibration
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


def calibrated_score(
    stats: Tensor, seen: Tensor, state: dict[str, Tensor]
) -> tuple[Tensor, Tensor]:
    """Robust z-scores of RMS errors against the stream's own history.

    stats, seen (B, K): RMS error of each feature plus the all-feature total in column F
    (K = F + 1), then with ``score_inputs`` each feature's input deviation (K = 2F + 1;
    ``score_statistics``), and whether each could be judged (observed in the window).
    state: cal_mu, cal_dev (B, K), cal_n (B,).
    The score is the largest z: one badly reconstructed feature is enough, and the total
    catches anomalies spread thinly over many features (a broken correlation).
    returns score (B,), z (B, K).
    """
    sigma = MAD_TO_SIGMA * state[Col.CAL_DEV] + 1e-3
    z = ((stats - state[Col.CAL_MU]) / sigma).clamp_min(0.0) * seen
    return z.max(dim=-1).values, z


def learn_calibration(
    stats: Tensor,
    seen: Tensor,
    state: dict[str, Tensor],
    learn: Tensor,
    horizon: float | Tensor,
) -> dict[str, Tensor]:
    """The calibration state after the readings with ``learn`` (B,) bool: serving passes
    only rows outside alerts and past burn-in; the others keep their state exactly.
    horizon: readings behind the statistics, one for all columns or (K,) per column."""
    mu, dev, n = state[Col.CAL_MU], state[Col.CAL_DEV], state[Col.CAL_N]
    sigma = MAD_TO_SIGMA * dev + 1e-3
    start = (1.0 / (n + (CAL_PRIOR + 1.0))).unsqueeze(-1)  # (B, 1)
    alpha = torch.maximum(start, torch.as_tensor(1.0 / horizon, device=start.device))
    alpha = alpha * learn.unsqueeze(-1) * seen
    step = torch.maximum(torch.minimum(stats - mu, 4.0 * sigma), -4.0 * sigma)
    return {
        Col.CAL_MU: mu + alpha * step,
        Col.CAL_DEV: dev + alpha * (step.abs() - dev),
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


def n_calibrated(det: DetectorConfig, n_features: int) -> int:
    """Columns ``score_statistics`` gives: errors per feature and in total, then the input
    deviations with ``score_inputs``."""
    return 2 * n_features + 1 if det.score_inputs else n_features + 1


def calibration_horizons(det: DetectorConfig, n_features: int) -> float | Tensor:
    """Per-column horizons for ``learn_calibration``: the errors follow ``calibration_horizon``;
    input deviations follow the inputs' own scale horizon (they are measured in it)."""
    if not det.score_inputs:
        return float(det.calibration_horizon)
    scale = float(det.norm_scale_horizon or det.norm_horizon)
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
