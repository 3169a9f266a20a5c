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
from streamlstm.seasons import learn_seasons

NORM_START = 10  # a stream's first readings of a feature: plain running mean and variance
FLOOR_SHARE = 0.05  # smallest std, as a share of the stream's own long-run std
FLOOR_HORIZON = 1000.0  # readings behind that long-run std
FLOOR_EPS = 1e-6  # so a stream that never moved still divides by something
CAL_PRIOR = 30.0  # pseudo-readings of the group prior in a new stream's calibration
RUN_MEMORY = 2000.0  # readings over which the longest normal run of a feature is forgotten
STUCK_FACTOR = 3.0  # a run this many times longer than any normal run is "stuck"
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
            "mean": torch.tensor(self.mean, dtype=torch.float32, device=device),
            "std": torch.tensor(self.std, dtype=torch.float32, device=device),
            "max_run": torch.tensor(self.max_run, dtype=torch.float32, device=device),
            "cal_mu": torch.tensor(mu[:k], dtype=torch.float32, device=device),
            "cal_dev": torch.tensor(dev[:k], dtype=torch.float32, device=device),
        }


def normalise(
    x: Tensor,
    m: Tensor,
    s: dict[str, Tensor],
    det: DetectorConfig,
    phase: Tensor | None = None,
    share: Tensor | None = None,
) -> Tensor:
    """Normalise one reading per stream with the stats seen so far, then update them.

    Scale-free per stream: a stream's first ``NORM_START`` readings of a feature give a plain
    running mean and variance (its z is 0 meanwhile), so nothing of the group's raw units
    is carried over. A group may hold streams of very different scales (a 0.05-unit key
    sensor beside a 15,000-rides taxi count); a group-wide prior or floor would flatten the
    small ones to z = 0. The smallest std is ``FLOOR_SHARE`` of the stream's own long-run
    std, so a stream that sits still for a while does not turn the next wobble into sigmas.

    Then EMAs: the level follows ``det.norm_horizon`` readings; the variance
    ``det.norm_scale_horizon`` (default the same). A slower scale keeps a drift or level
    shift large in sigmas while the level catches up: with one horizon, the variance soaks
    up the change and hides it. With ``det.trend_horizon`` the level also carries a slope
    (Holt's linear trend): a ramp is followed without lag, so a slow drift or a daily ramp
    neither inflates the variance nor shows as a lasting offset, and the abrupt end of a
    drift stays a full-size jump. Deviations are clipped to 3 std in the updates.

    With ``det.split_scale`` (state ``var_dn``) readings below the forecast are measured
    in their own scale, learnt from them alone: a two-piece scale for skewed series. CPU
    load, latency, counts and key presses spike up often and drop rarely, so one shared
    std, inflated by the spikes, would hide a drop that the series has never made.

    With ``det.season_periods_s`` the forecast also adds, per season, the profile of the
    reading's bin (``phase``): a daily or weekly rhythm (a load cycle, a shift pattern,
    weekends) is then expected, so it neither shows as deviations nor inflates the
    variance, and a day that breaks it (a missing peak, a jump at the wrong hour) stands
    out. The seasons learn in turn, shortest first, each from what the previous left: the
    week learns only how a weekday differs from the average day.

    x (B, F) raw values with 0 where missing; m (B, F) 1.0 = observed.
    s: mean, var, var_ref, n_obs (B, F); var_dn (B, F) with a split scale (NaN: take var);
    trend (B, F) with a trend horizon; season and season_n (B, F, all bins) with seasons;
    updated in place. phase (B, P) long: the reading's bin in each of the P seasons
    (``season_phase``); share (B,): the share of a bin the reading stands for
    (``season_share``; default 1).
    returns z (B, F), normalised and masked.
    """
    trend = s.get("trend")
    forecast = s["mean"] if trend is None else s["mean"] + trend
    season, slots = s.get("season"), None
    if season is not None:
        slots = phase.unsqueeze(1).expand(-1, x.shape[1], -1)  # (B, F, P)
        profiles = season.gather(-1, slots)  # (B, F, P)
        forecast = forecast + profiles.sum(-1)
    floor = FLOOR_SHARE * s["var_ref"].sqrt() + FLOOR_EPS
    var, var_dn = s["var"], s.get("var_dn")
    if var_dn is not None:  # NaN: not learnt yet (a new row, an older snapshot)
        above = x > forecast
        var_dn = torch.where(var_dn.isnan(), var, var_dn)
        var = torch.where(above, var, var_dn)
    std = var.sqrt().clamp_min(floor)
    early = s["n_obs"] < NORM_START
    z = ((x - forecast) / std).clamp(-det.clip_sigma, det.clip_sigma) * m * ~early
    start = 1.0 / (s["n_obs"] + 1.0)
    alpha = torch.clamp_min(start, 1.0 / det.norm_horizon) * m
    beta = torch.clamp_min(start, 1.0 / (det.norm_scale_horizon or det.norm_horizon)) * m
    gamma = torch.clamp_min(start, 1.0 / FLOOR_HORIZON) * m
    dev = torch.where(early, x - forecast, torch.clamp(x - forecast, -3.0 * std, 3.0 * std))
    if trend is None:
        s["mean"] = s["mean"] + alpha * dev
    else:  # a missing reading moves neither the level nor the slope; nor does the start
        s["mean"] = s["mean"] + m * trend + alpha * dev
        s["trend"] = trend + alpha * dev * ~early / det.trend_horizon
    if season is not None:
        share = torch.ones_like(x[:, 0]) if share is None else share
        learn_seasons(s, slots, profiles, dev, m * ~early * share[:, None], det.season_horizon)
    if var_dn is None:
        s["var"] = (1.0 - beta) * (s["var"] + beta * dev * dev)
    else:  # each side learns from its own readings; both from a stream's first ones
        b_up = beta * (above | early)
        b_dn = beta * (~above | early)
        s["var"] = (1.0 - b_up) * (s["var"] + b_up * dev * dev)
        s["var_dn"] = (1.0 - b_dn) * (var_dn + b_dn * dev * dev)
    s["var_ref"] = (1.0 - gamma) * (s["var_ref"] + gamma * dev * dev)
    s["n_obs"] = s["n_obs"] + m
    return z


def stuck_features(
    x: Tensor,
    m: Tensor,
    last_x: Tensor,
    still: Tensor,
    max_run: Tensor,
    min_len: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flat-line / dropout detection: a feature unchanged or missing for unusually long.

    "Unusually" is learnt per stream and feature: ``max_run`` is the longest run of
    unchanged-or-missing values that ended without being called stuck (slowly forgotten).
    A run longer than ``STUCK_FACTOR`` times that, and at least ``min_len``, is stuck. So a
    0.1-degree thermometer that often repeats for 20 readings is not flagged at 15, while a
    heart rate that never repeats for more than 3 is. Runs learnt from a stuck episode are
    not learnt, so one outage does not hide the next.
    returns stuck (B, F) bool, new last_x, still, max_run.
    """
    changed = (m > 0) & (x != last_x)
    limit = torch.clamp_min(STUCK_FACTOR * max_run, float(min_len))
    ended_normal = changed & (still > 0) & (still < limit)
    max_run = torch.where(ended_normal, torch.maximum(max_run, still), max_run)
    max_run = max_run * (1.0 - 1.0 / RUN_MEMORY)
    still = torch.where(changed, torch.zeros_like(still), still + 1.0)
    stuck = still >= limit
    last_x = torch.where(m > 0, x, last_x)
    return stuck, last_x, still, max_run


def calibrate(
    stats: Tensor,
    seen: Tensor,
    state: dict[str, Tensor],
    learn: Tensor,
    horizon: float | Tensor,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Robust z-scores of RMS errors against the stream's own history.

    stats, seen (B, K): RMS error of each feature plus the all-feature total in column F
    (K = F + 1), then with ``score_inputs`` each feature's input deviation (K = 2F + 1;
    ``score_statistics``), and whether each could be judged (observed in the window).
    horizon: readings behind the statistics, one for all columns or (K,) per column.
    state: cal_mu, cal_dev (B, K), cal_n (B,). learn (B,) bool: only readings outside alerts
    and past burn-in update the statistics.
    The score is the largest z: one badly reconstructed feature is enough, and the total
    catches anomalies spread thinly over many features (a broken correlation).
    returns score (B,), z (B, K) and the new state.
    """
    mu, dev, n = state["cal_mu"], state["cal_dev"], state["cal_n"]
    sigma = MAD_TO_SIGMA * dev + 1e-3
    z = ((stats - mu) / sigma).clamp_min(0.0) * seen
    score = z.max(dim=-1).values
    start = (1.0 / (n + (CAL_PRIOR + 1.0))).unsqueeze(-1)  # (B, 1)
    alpha = torch.maximum(start, torch.as_tensor(1.0 / horizon, device=start.device))
    alpha = alpha * learn.unsqueeze(-1) * seen
    step = torch.maximum(torch.minimum(stats - mu, 4.0 * sigma), -4.0 * sigma)
    new = {
        "cal_mu": mu + alpha * step,
        "cal_dev": dev + alpha * (step.abs() - dev),
        "cal_n": n + learn.float(),
    }
    return score, z, new


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
    """What ``calibrate`` scores: stats, seen (..., K), the one definition for serving,
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
    """Per-column horizons for ``calibrate``: the errors follow ``calibration_horizon``;
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
    """A detector table's calibration columns as ``calibrate`` takes them: (B, K), the input
    deviations' (``in_mu``, ``in_dev``, present with ``score_inputs``) after the errors'."""
    view = {k: s[k] for k in ("cal_mu", "cal_dev", "cal_n")}
    if "in_mu" in s:
        view["cal_mu"] = torch.cat([s["cal_mu"], s["in_mu"]], dim=-1)
        view["cal_dev"] = torch.cat([s["cal_dev"], s["in_dev"]], dim=-1)
    return view


def store_calibration_state(
    s: dict[str, Tensor], cal: dict[str, Tensor], idx: Tensor | None = None
) -> None:
    """Write (B, K) calibration state back to its columns (rows ``idx`` of a table's)."""
    cols = dict(cal)
    if "in_mu" in s:
        n_err = s["cal_mu"].shape[-1]
        for err, inp in (("cal_mu", "in_mu"), ("cal_dev", "in_dev")):
            cols[err], cols[inp] = cal[err][..., :n_err], cal[err][..., n_err:]
    for name, value in cols.items():
        if idx is None:
            s[name] = value
        else:
            s[name][idx] = value
