"""Seasonal profiles of the normaliser's forecast (``detector.season_periods_s``) as pure
tensor updates: which bin of each season a reading falls in, the share of a bin it stands
for, and how the bins learn. ``calibration.normalise`` adds the profiles to its forecast;
serving and training both go through it."""

from __future__ import annotations

import torch
from torch import Tensor

from streamlstm.config import DetectorConfig
from streamlstm.detect.columns import Col


def season_phase(ts: Tensor, det: DetectorConfig) -> Tensor | None:
    """Epoch seconds (...,) float64 -> each reading's bin in every season (..., P) long, as
    an index into the seasons' bins laid end to end; None without ``season_periods_s``."""
    if not det.season_periods_s:
        return None
    slots, first = [], 0
    for period, bins in zip(det.season_periods_s, det.season_bins(), strict=True):
        k = torch.floor(torch.remainder(ts, period) / det.season_bin_s).long().clamp_max(bins - 1)
        slots.append(k + first)
        first += bins
    return torch.stack(slots, dim=-1)


def season_share(dt: Tensor, det: DetectorConfig) -> Tensor:
    """Seconds since each stream's previous reading (B,) -> the share of a bin that reading
    stands for (B,), at most 1: a profile learns per bin visit, whatever the sampling rate."""
    return torch.clamp(dt / det.season_bin_s, 0.0, 1.0).float()


def learn_seasons(
    s: dict[str, Tensor],
    slots: Tensor,
    profiles: Tensor,
    dev: Tensor,
    learn: Tensor,
    horizon: float,
) -> None:
    """Each season's bin takes its share of the deviation, shortest season first; what it
    leaves is the next one's. slots, profiles (B, F, P); dev (B, F); learn (B, F): the share
    of a bin visit each reading stands for (0: learns nothing). A bin's weight is that share
    over the visits it has seen (a plain mean at first), at least share / ``horizon``."""
    share = learn.unsqueeze(-1)
    seen = s[Col.SEASON_N].gather(-1, slots) + share  # (B, F, P) visits, this reading's included
    weights = torch.where(share > 0, torch.clamp_min(share / seen, share / horizon), 0.0)
    left, updated = dev, []
    for k in range(profiles.shape[-1]):
        step = weights[..., k] * left
        updated.append(profiles[..., k] + step)
        left = left - step
    # In place: the tables are (B, F, all bins), far larger than what changes (B, F, P).
    s[Col.SEASON].scatter_(-1, slots, torch.stack(updated, dim=-1))
    s[Col.SEASON_N].scatter_(-1, slots, seen)
