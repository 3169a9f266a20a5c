"""Input normalisation per stream and feature (level, slope, scale, seasons) and stuck-sensor
detection, as pure tensor updates shared by serving and training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from streamlstm.config import DetectorConfig
from streamlstm.detect.columns import Col
from streamlstm.detect.seasons import learn_seasons, season_profiles

NORM_START = 10  # a stream's first readings of a feature: plain running mean and variance


FLOOR_SHARE = 0.05  # smallest std, as a share of the stream's own long-run std


FLOOR_HORIZON = 1000.0  # readings behind that long-run std


FLOOR_EPS = 1e-6  # so a stream that never moved still divides by something


RUN_MEMORY = 2000.0  # readings over which the longest normal run of a feature is forgotten


STUCK_FACTOR = 3.0  # a run this many times longer than any normal run is "stuck"


# Rounding to a resolution q adds noise of std q / sqrt(12) (a uniform error of width q):
# no reading is known better than that, however still the stream has been.
QUANTUM_TO_STD = 12.0**-0.5


@dataclass
class Forecast:
    """What the forecast phase saw, for the learning phase of the same reading (B, F)."""

    forecast: Tensor
    std: Tensor
    early: Tensor  # bool: the stream's first NORM_START readings of the feature
    above: Tensor | None  # bool, with a split scale: the reading is above the forecast
    var_dn: Tensor | None  # the downside variance in use (var where not learnt yet)
    slots: Tensor | None  # (B, F, P) the reading's season bins, with seasons
    profiles: Tensor | None  # (B, F, P) those bins' profiles


def forecast(
    x: Tensor,
    m: Tensor,
    s: dict[str, Tensor],
    det: DetectorConfig,
    phase: Tensor | None = None,
) -> tuple[Tensor, Forecast]:
    """Each reading's distance from the stream's forecast, in its own scale; reads ``s`` only.

    Scale-free per stream: a stream's first ``NORM_START`` readings of a feature give a plain
    running mean and variance (its z is 0 meanwhile), so nothing of the group's raw units
    is carried over. A group may hold streams of very different scales (a 0.05-unit key
    sensor beside a 15,000-rides taxi count); a group-wide prior or floor would flatten the
    small ones to z = 0. The smallest std is ``FLOOR_SHARE`` of the stream's own long-run
    std, so a stream that sits still for a while does not turn the next wobble into sigmas.

    With ``det.split_scale`` (state ``var_dn``) readings below the forecast are measured
    in their own scale, learnt from them alone: a two-piece scale for skewed series. CPU
    load, latency, counts and key presses spike up often and drop rarely, so one shared
    std, inflated by the spikes, would hide a drop that the series has never made.

    With ``det.season_periods_s`` the forecast also adds, per season, the profile of the
    reading's bin (``phase``): a daily or weekly rhythm (a load cycle, a shift pattern,
    weekends) is then expected, so it neither shows as deviations nor inflates the
    variance, and a day that breaks it (a missing peak, a jump at the wrong hour) stands
    out.

    x (B, F) raw values with 0 where missing; m (B, F) 1.0 = observed.
    s: mean, var, var_ref, n_obs (B, F); var_dn (B, F) with a split scale (NaN: take var);
    trend (B, F) with a trend horizon; the season columns with seasons (``seasons.py``).
    phase (B, P) long: the reading's bin in each of the P seasons (``season_phase``).
    returns z (B, F), normalised and masked, and what ``learn`` needs.
    """
    trend = s.get(Col.TREND)
    level = s[Col.MEAN] if trend is None else s[Col.MEAN] + trend
    slots, profiles = None, None
    if Col.SEASON in s:
        slots = phase.unsqueeze(1).expand(-1, x.shape[1], -1)  # (B, F, P)
        profiles = season_profiles(s, slots)  # (B, F, P)
        level = level + profiles.sum(-1)
    floor = FLOOR_SHARE * s[Col.VAR_REF].sqrt() + FLOOR_EPS
    if Col.QUANTUM in s:  # inf until the sensor has changed once: no floor from it
        quantum = s[Col.QUANTUM]
        floor = torch.where(quantum.isfinite(), floor.maximum(QUANTUM_TO_STD * quantum), floor)
    var, var_dn, above = s[Col.VAR], s.get(Col.VAR_DN), None
    if var_dn is not None:  # NaN: not learnt yet (a new row, an older snapshot)
        above = x > level
        var_dn = torch.where(var_dn.isnan(), var, var_dn)
        var = torch.where(above, var, var_dn)
    std = var.sqrt().clamp_min(floor)
    early = s[Col.N_OBS] < NORM_START
    z = ((x - level) / std).clamp(-det.clip_sigma, det.clip_sigma) * m * ~early
    return z, Forecast(level, std, early, above, var_dn, slots, profiles)


def level_rate(dt: Tensor, det: DetectorConfig) -> Tensor:
    """Seconds since each stream's previous reading (B,) -> the weight the level and its
    variance give the reading (B,) with ``det.norm_horizon_s``: ``dt / norm_horizon_s``, at
    most 1 (a stream's first reading, a gap longer than the horizon).

    Why time and not readings: a horizon of 60 readings is an hour at one reading a minute
    and a minute at 1 Hz. At 1 Hz the level then followed a pump whose flow fell by 5 std
    over 40 s, and the fault never showed (pump-dev runs 10 and 11; docs/quality.md).
    """
    return torch.clamp(dt / det.norm_horizon_s, 0.0, 1.0).float()


def slope_rate(alpha: Tensor, start: Tensor, rate: Tensor | None, det: DetectorConfig) -> Tensor:
    """The slope's gain (B, F): the level's ``alpha``, or with ``det.trend_after_start`` 0
    while the level is still in its count-based start (``start`` = 1 / (n + 1) above its
    steady rate). Why: there the level is a running mean of less than one horizon of
    history; its error says how the estimate settles (or that the stream stepped), not how
    the stream trends, and a slope learnt from it turns a step into a ramp the level follows.
    """
    if not det.trend_after_start:
        return alpha
    steady = 1.0 / det.norm_horizon if rate is None else rate.unsqueeze(1)
    return alpha * (start <= steady)


def learn(
    x: Tensor,
    m: Tensor,
    s: dict[str, Tensor],
    det: DetectorConfig,
    seen: Forecast,
    share: Tensor | None = None,
    rate: Tensor | None = None,
) -> None:
    """Update the stream's statistics from the readings with ``m`` > 0, in place.

    ``m`` (B, F) is the mask of what may teach: serving passes the observed mask with every
    row held back inside an alert set to 0, and a row with ``m`` = 0 leaves every column
    here unchanged (its level does not even advance by its slope), so an anomaly cannot
    become the normal it is measured against. (Measured on the pump runs: projecting the
    level forward by its slope inside alerts, or letting the level alone keep learning,
    both held more alerts open after a fault than the plain freeze.)

    EMAs: the level follows ``det.norm_horizon`` readings; the variance
    ``det.norm_scale_horizon`` (default the same). A slower scale keeps a drift or level
    shift large in sigmas while the level catches up: with one horizon, the variance soaks
    up the change and hides it. With ``det.trend_horizon`` the level also carries a slope
    (Holt's linear trend): a ramp is followed without lag, so a slow drift or a daily ramp
    neither inflates the variance nor shows as a lasting offset, and the abrupt end of a
    drift stays a full-size jump; with ``det.trend_after_start`` the slope waits for the
    level's start to end (``slope_rate``). Deviations are clipped to 3 std in the updates. Seasons
    learn in turn, shortest first, each from what the previous left: the week learns only
    how a weekday differs from the average day. share (B,): the share of a season bin the
    reading stands for (``season_share``; default 1). rate (B,): with ``det.norm_horizon_s``,
    each reading's weight in the level and variance EMAs (``level_rate``) in place of
    ``1 / norm_horizon``.
    """
    trend, early, std = s.get(Col.TREND), seen.early, seen.std
    start = torch.reciprocal(s[Col.N_OBS] + 1.0)  # = 1.0 / t, one operation less
    if rate is None:
        alpha = torch.clamp_min(start, 1.0 / det.norm_horizon) * m
    else:
        alpha = torch.maximum(start, rate.unsqueeze(1)) * m
    if det.norm_scale_horizon or rate is None:
        beta = torch.clamp_min(start, 1.0 / (det.norm_scale_horizon or det.norm_horizon)) * m
    else:
        beta = alpha
    gamma = torch.clamp_min(start, 1.0 / FLOOR_HORIZON) * m
    dev = x - seen.forecast
    dev = torch.where(early, dev, torch.clamp(dev, -3.0 * std, 3.0 * std))
    if trend is None:
        s[Col.MEAN] = s[Col.MEAN] + alpha * dev
    else:  # a missing reading moves neither the level nor the slope; nor does the start
        s[Col.MEAN] = s[Col.MEAN] + m * trend + alpha * dev
        slope_gain = slope_rate(alpha, start, rate, det)
        s[Col.TREND] = trend + slope_gain * dev * ~early / det.trend_horizon
    if seen.slots is not None:
        share = torch.ones_like(x[:, 0]) if share is None else share
        weight = m * ~early * share[:, None]
        learn_seasons(
            s, seen.slots, seen.profiles, dev, weight, det.season_horizon, det.season_bins()
        )
    if seen.var_dn is None:
        s[Col.VAR] = (1.0 - beta) * (s[Col.VAR] + beta * dev * dev)
    else:  # each side learns from its own readings; both from a stream's first ones
        b_up = beta * (seen.above | early)
        b_dn = beta * (~seen.above | early)
        s[Col.VAR] = (1.0 - b_up) * (s[Col.VAR] + b_up * dev * dev)
        s[Col.VAR_DN] = (1.0 - b_dn) * (seen.var_dn + b_dn * dev * dev)
    s[Col.VAR_REF] = (1.0 - gamma) * (s[Col.VAR_REF] + gamma * dev * dev)
    s[Col.N_OBS] = s[Col.N_OBS] + m


def learn_quantum(x: Tensor, m: Tensor, last_x: Tensor, quantum: Tensor) -> Tensor:
    """The sensor's resolution (B, F): the smallest non-zero change between two observed
    readings so far (inf until there is one). x, m (B, F) the reading and its mask; last_x
    (B, F) the last observed value (NaN: none).

    Why: a thermometer that reports to 0.1 degC and sat still for an hour has a variance
    near 0, and its next 0.1 step was 10^5 std (a demo patient's temperature alert at
    -96,530 std, no temperature fault injected). Its rounding alone is noise of q / sqrt(12), so the
    forecast's std is never smaller than that (``QUANTUM_TO_STD``). A sensor with finer
    steps than its noise learns a floor far below its std, which changes nothing.
    """
    step = (x - last_x).abs()
    moved = (m > 0) & (step > 0) & step.isfinite()
    return torch.where(moved, torch.minimum(quantum, step), quantum)


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
