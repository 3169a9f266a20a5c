"""Seasonal profiles of the normaliser's forecast (``detector.season_periods_s``) as pure
tensor updates: which bin of each season a reading falls in, the share of a bin it stands
for, and how the bins learn. ``normalise.forecast`` adds the profiles to its forecast;
serving and training both go through it.

Storage, per stream and feature (a week of half-hour bins is 336 of them): each bin is one
signed byte, in steps of its season's ``season_scale`` (raw units, float32), and each season
keeps one count of the bin visits it has learnt from, not one per bin. Float32 bins and
counts were 8 bytes a bin, 3 KB of a univariate stream's 4.3 KB with a day and a week.
A profile's step is at most 1/100 of its largest bin, and the bins learn from deviations
clipped to 3 std, so the step stays within about 0.03 std of the stream's scale.
"""

from __future__ import annotations

import torch
from torch import Tensor

from streamlstm.config import DetectorConfig
from streamlstm.detect.columns import Col

Q_MAX = 127.0  # the int8 range used (symmetric)
Q_HEADROOM = 100.0  # a rescale sets the largest bin to this many steps: room to grow 1.27x


def season_state(rows: int, n_features: int, det: DetectorConfig, device=None) -> dict:
    """Fresh season columns for ``rows`` streams (all zero: no profile, no visits)."""
    bins, seasons = sum(det.season_bins()), len(det.season_periods_s)
    return {
        Col.SEASON: torch.zeros(rows, n_features, bins, dtype=torch.int8, device=device),
        Col.SEASON_SCALE: torch.zeros(rows, n_features, seasons, device=device),
        Col.SEASON_N: torch.zeros(rows, n_features, seasons, device=device),
    }


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


def season_profiles(s: dict[str, Tensor], slots: Tensor) -> Tensor:
    """slots (B, F, P) -> the profile of each reading's bin in every season (B, F, P)."""
    return s[Col.SEASON].gather(-1, slots).float() * s[Col.SEASON_SCALE]


def learn_seasons(
    s: dict[str, Tensor],
    slots: Tensor,
    profiles: Tensor,
    dev: Tensor,
    learn: Tensor,
    horizon: float,
    bins: list[int],
) -> None:
    """Each season's bin takes its share of the deviation, shortest season first; what it
    leaves is the next one's. slots, profiles (B, F, P); dev (B, F); learn (B, F): the share
    of a bin visit each reading stands for (0: learns nothing); ``bins`` per season.

    A bin's weight is that share over the visits its season has seen (a plain mean at
    first), at least share / ``horizon``. Visits are counted per season, in whole passes
    over it (each reading adds its share / the season's bins): with every bin sampled each
    pass, as a stream that reports at least once a bin does, that is each bin's own count.
    """
    share = learn.unsqueeze(-1)  # (B, F, 1)
    visits = s[Col.SEASON_N]  # (B, F, P) whole passes before this reading
    weights = torch.where(
        share > 0, torch.clamp_min(share / (visits.floor() + share), share / horizon), 0.0
    )
    left, updated = dev, []
    for k in range(profiles.shape[-1]):
        step = weights[..., k] * left
        updated.append(profiles[..., k] + step)
        left = left - step
    _store(s, slots, torch.stack(updated, dim=-1), bins)
    # A pass per season: each reading adds its share over the season's bins (no host
    # tensor of bin counts: on a GPU its upload would wait for the queue).
    s[Col.SEASON_N] = visits + torch.cat([share / n for n in bins], dim=-1)


def _store(s: dict[str, Tensor], slots: Tensor, values: Tensor, bins: list[int]) -> None:
    """Write the bins' new values (B, F, P), growing a season's step first where a value
    would not fit (the season's other bins are re-rounded to the new step)."""
    scale = s[Col.SEASON_SCALE]
    need = values.abs() > Q_MAX * scale
    grown = torch.where(need, values.abs() / Q_HEADROOM, scale)
    if values.device.type == "cpu":  # re-round only the rows whose step grew (rare)
        rows = need.flatten(1).any(1).nonzero().squeeze(1)
        if len(rows):
            part = s[Col.SEASON].index_select(0, rows)
            _rescale(part, scale[rows], grown[rows], bins)
            s[Col.SEASON].index_copy_(0, rows, part)
    else:  # every row, no question asked: on a GPU asking would wait for the queue
        _rescale(s[Col.SEASON], scale, grown, bins)
    s[Col.SEASON_SCALE] = grown
    steps = torch.where(grown > 0, torch.round(values / grown.clamp_min(1e-30)), 0.0)
    # In place: the tables are (B, F, all bins), far larger than what changes (B, F, P).
    s[Col.SEASON].scatter_(-1, slots, steps.clamp(-Q_MAX, Q_MAX).to(torch.int8))


def _rescale(table: Tensor, old: Tensor, new: Tensor, bins: list[int]) -> None:
    """Re-round int8 bins (B, F, all bins) in place from steps ``old`` to ``new`` (B, F, P);
    a season whose step did not change keeps its bins exactly (a ratio of 1)."""
    ratio = torch.where(new > 0, old / new, 1.0)
    first = 0
    for k, n in enumerate(bins):
        part = table[..., first : first + n]
        part.copy_(torch.round(part.float() * ratio[..., k : k + 1]))
        first += n
