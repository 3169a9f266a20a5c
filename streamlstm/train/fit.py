"""Stateful training: the encoder runs over long consecutive chunks of each stream with its
state carried (and detached) between chunks — truncated BPTT — so serving never feeds the
model states it never saw in training. Inputs are normalised by the serving code
(``calibration.normalise``) so train and serve see the same numbers.

``fit`` is the one training loop; ``streamlstm train`` runs it in-process and Ray Train runs
it inside each training worker.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streamlstm.config import DetectorConfig, ModelConfig, TrainingConfig
from streamlstm.datafiles import Series
from streamlstm.detect.calibration import GroupPrior, score_statistics
from streamlstm.detect.columns import Col
from streamlstm.detect.model import (
    LSTMAutoencoder,
    reading_error,
    sliding_windows,
    window_error,
)
from streamlstm.detect.normalise import forecast, learn, learn_quantum, level_rate
from streamlstm.detect.seasons import season_phase, season_share, season_state


@dataclass
class FitResult:
    net: LSTMAutoencoder
    prior: GroupPrior
    metrics: dict


def group_prior(series: list[Series]) -> GroupPrior:
    """Raw-unit statistics a new stream starts from (calibration filled in after training)."""
    stacked = np.concatenate([s.values for s in series], axis=0)
    mean = np.nan_to_num(np.nanmean(stacked, axis=0), nan=0.0)
    std = np.nan_to_num(np.nanstd(stacked, axis=0), nan=1.0)
    std = np.where(std > 0, std, 1.0)
    runs = np.array([_longest_runs(s.values) for s in series])  # (streams, F)
    typical = np.percentile(runs, 90, axis=0)  # a new stream starts from the group's habit
    return GroupPrior(tuple(mean.tolist()), tuple(std.tolist()), tuple(typical.tolist()))


def _longest_runs(values: np.ndarray) -> np.ndarray:
    """(T, F) -> (F,) longest run of readings unchanged from the previous one, or missing."""
    same = ~(np.isfinite(values[1:]) & (values[1:] != values[:-1]))  # (T-1, F)
    best = np.zeros(values.shape[1])
    run = np.zeros(values.shape[1])
    for row in same:
        run = np.where(row, run + 1, 0)
        best = np.maximum(best, run)
    return best


def split_lanes(series: list[Series], max_gap_s: float, lanes: int, min_len: int) -> list[Series]:
    """Cut at gaps (serving resets state there) and split long pieces into parallel lanes.

    A lane starts from a zero state and the group prior, exactly like a new stream, so the
    extra parallelism does not teach the model anything serving would not do.
    """
    pieces: list[Series] = []
    for s in series:
        cuts = np.flatnonzero(np.diff(s.ts) > max_gap_s) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(s.ts)], strict=True):
            pieces.append(Series(s.stream, s.ts[a:b], s.values[a:b]))
    out: list[Series] = []
    for p in pieces:
        n_lanes = max(1, min(lanes, len(p.ts) // max(min_len, 1)))
        bounds = np.linspace(0, len(p.ts), n_lanes + 1).astype(int)
        out.extend(
            Series(p.stream, p.ts[a:b], p.values[a:b])
            for a, b in itertools.pairwise(bounds)
            if b > a
        )
    return out


def normalise_lanes(
    lanes: list[Series],
    prior: GroupPrior,
    det: DetectorConfig,
    device: torch.device,
    held: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the serving normaliser over padded lanes: z, m (T, L, F) and valid (T, L).

    ``held`` (T, L) bool: readings that must not teach it, as serving holds them back inside
    alerts (``holding.holding``); default none (training data is taken as normal)."""
    T, L, F = max(len(s.ts) for s in lanes), len(lanes), len(prior.mean)
    raw = np.full((T, L, F), np.nan, dtype=np.float32)
    valid = np.zeros((T, L), dtype=np.float32)
    for j, s in enumerate(lanes):
        raw[: len(s.ts), j] = s.values
        valid[: len(s.ts), j] = 1.0
    raw_t = torch.as_tensor(raw, device=device)
    m_all = torch.isfinite(raw_t).float()
    x_all = torch.nan_to_num(raw_t, nan=0.0)
    p = prior.tensors(device)
    state = {
        Col.MEAN: p[Col.MEAN].expand(L, F).clone(),
        Col.VAR: p["std"].square().expand(L, F).clone(),
        Col.VAR_REF: torch.zeros(L, F, device=device),
        Col.N_OBS: torch.zeros(L, F, device=device),
        Col.QUANTUM: torch.full((L, F), float("inf"), device=device),
    }
    last_x = torch.full((L, F), float("nan"), device=device)  # as serving's stuck detection
    if det.split_scale:
        state[Col.VAR_DN] = torch.full((L, F), float("nan"), device=device)
    if det.trend_horizon:
        state[Col.TREND] = torch.zeros(L, F, device=device)
    # (T, L) timestamps and gaps: padding steps are masked, their bin and gap are moot
    ts = np.zeros((T, L))
    for j, s in enumerate(lanes):
        ts[: len(s.ts), j] = s.ts
    ts_t = torch.as_tensor(ts, dtype=torch.float64)
    dt = torch.cat([torch.full((1, L), torch.inf, dtype=torch.float64), ts_t.diff(dim=0)])
    phase = share = rate = None
    if det.season_periods_s:  # (T, L, P) bins
        state.update(season_state(L, F, det, device))
        phase = season_phase(ts_t, det).to(device)
        share = season_share(dt, det).to(device)
    if det.norm_horizon_s:
        rate = level_rate(dt, det).to(device)
    z_all = torch.empty_like(x_all)
    for t in range(T):
        z_all[t], seen = forecast(x_all[t], m_all[t], state, det, _at(phase, t))
        teach = m_all[t] if held is None else m_all[t] * ~held[t].unsqueeze(-1)
        learn(x_all[t], teach, state, det, seen, _at(share, t), _at(rate, t))
        state[Col.QUANTUM] = learn_quantum(x_all[t], m_all[t], last_x, state[Col.QUANTUM])
        last_x = torch.where(m_all[t] > 0, x_all[t], last_x)
    return z_all, m_all, torch.as_tensor(valid, device=device)


def _at(series: Tensor | None, t: int) -> Tensor | None:
    return None if series is None else series[t]


def _chunk_loss(
    net: LSTMAutoencoder,
    forward: Callable[..., tuple[Tensor, Tensor, Tensor]],
    z: Tensor,
    m: Tensor,
    valid: Tensor,
    t0: int,
    t1: int,
    h: Tensor,
    c: Tensor,
    cfg: TrainingConfig,
    gen: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    W = net.cfg.window_len
    lo = max(0, t0 - W + 1)
    # Windows need the W-1 readings before the chunk; they come from the full sequence.
    win_z = sliding_windows(z[lo:t1], W)[t0 - lo :]  # (t, L, W, F)
    win_m = sliding_windows(m[lo:t1], W)[t0 - lo :]
    x_in, m_in = z[t0:t1], m[t0:t1]
    if cfg.feature_dropout > 0:
        drop = (
            torch.rand(m_in.shape, generator=gen, device=m_in.device) < cfg.feature_dropout
        ).float()
        m_in = m_in * (1 - drop)
        x_in = x_in * (1 - drop)
    if cfg.input_noise > 0:
        x_in = (
            x_in
            + cfg.input_noise * torch.randn(x_in.shape, generator=gen, device=x_in.device) * m_in
        )
    recon, h, c = forward(x_in, m_in, h, c)
    err = window_error(recon, win_z, win_m)  # (t, L, F)
    weight = valid[t0:t1].unsqueeze(-1) * (win_m.sum(-2) > 0).float()
    loss = (err * weight).sum() / weight.sum().clamp_min(1.0)
    return loss, h, c


def fit(
    series: list[Series],
    features: list[str],
    model_cfg: ModelConfig,
    train_cfg: TrainingConfig,
    det_cfg: DetectorConfig,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, float], None] | None = None,
    shard: tuple[int, int] = (0, 1),
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
) -> FitResult:
    """Train a group model on ``series``; returns the net, its prior and the loss curve.

    Data-parallel use (Ray Train): ``shard`` = (rank, world size) trains on every
    world-th lane, the same number on every rank so their gradient all-reduces pair up, and
    ``wrap`` wraps the net (DistributedDataParallel). Calibration uses all lanes on every
    rank, so each rank ends with the same prior.
    """
    device = torch.device(device)
    torch.manual_seed(train_cfg.seed)
    gen = torch.Generator(device=device).manual_seed(train_cfg.seed)
    prior = group_prior(series)
    lanes = split_lanes(series, det_cfg.max_gap_s, train_cfg.lanes, 4 * train_cfg.chunk_len)
    z, m, valid = normalise_lanes(lanes, prior, det_cfg, device)
    net = LSTMAutoencoder(len(features), model_cfg).to(device)
    forward = wrap(net) if wrap is not None else net
    opt = torch.optim.Adam(net.parameters(), lr=train_cfg.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=train_cfg.epochs)
    mine = shard_lanes(z.shape[1], *shard)
    zs, ms, vs = z[:, mine], m[:, mine], valid[:, mine]
    T, L = zs.shape[0], zs.shape[1]
    curve: list[float] = []
    for epoch in range(train_cfg.epochs):
        net.train()
        total, count = 0.0, 0
        for b0 in range(0, L, train_cfg.batch_streams):
            cols = slice(b0, min(L, b0 + train_cfg.batch_streams))
            h, c = net.zero_state(cols.stop - cols.start, device)
            for t0 in range(0, T, train_cfg.chunk_len):
                t1 = min(T, t0 + train_cfg.chunk_len)
                loss, h, c = _chunk_loss(
                    net,
                    forward,
                    zs[:, cols],
                    ms[:, cols],
                    vs[:, cols],
                    t0,
                    t1,
                    h,
                    c,
                    train_cfg,
                    gen,
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                h, c = h.detach(), c.detach()  # carry the state, cut the graph
                total += float(loss.detach()) * (t1 - t0)
                count += t1 - t0
        sched.step()
        curve.append(total / max(count, 1))
        if on_epoch:
            on_epoch(epoch, curve[-1])
    net.eval()
    prior = calibrate_prior(net, z, m, valid, prior, det_cfg)
    return FitResult(
        net.cpu(),
        prior,
        {"train_loss": curve, "lanes": L, "steps": T, "readings": int(valid.sum())},
    )


def shard_lanes(n_lanes: int, rank: int, world: int) -> list[int]:
    """Lane indices for one rank: every world-th lane, equally many per rank (reusing lanes
    when there are fewer lanes than ranks or the count does not divide)."""
    per_rank = max(1, -(-n_lanes // world))
    return [(rank + world * k) % n_lanes for k in range(per_rank)]


@torch.no_grad()
def offline_feature_errors(
    net: LSTMAutoencoder, z: Tensor, m: Tensor, with_inputs: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Whole sequences in one pass: z, m (T, L, F) -> feat_err (T, L, F), stats, seen (T, L, K)
    (K = F + 1, or 2F + 1 ``with_inputs``: ``calibration.score_statistics``).

    This is the offline twin of the streaming step; tests hold them equal to 1e-5.
    """
    h, c = net.zero_state(z.shape[1], z.device)
    recon, _, _ = net(z, m, h, c)
    win_z, win_m = sliding_windows(z, net.cfg.window_len), sliding_windows(m, net.cfg.window_len)
    feat_err = window_error(recon, win_z, win_m)
    stats, seen = score_statistics(feat_err, win_m, z, m, with_inputs)
    return feat_err, stats, seen


@torch.no_grad()
def offline_newest_statistics(
    net: LSTMAutoencoder, z: Tensor, m: Tensor, with_inputs: bool = False
) -> tuple[Tensor, Tensor]:
    """z, m (T, L, F) -> stats, seen (T, L, K) of each newest reading alone: the offline twin
    of ``TensorStep.newest_score``'s statistics (what ``alerts.exit_on: newest`` judges an
    exit on), for ``evaluation.baselines.calibrated_alerts``."""
    h, c = net.zero_state(z.shape[1], z.device)
    recon, _, _ = net(z, m, h, c)  # (T, L, W, F)
    return score_statistics(reading_error(recon, z, m), m.unsqueeze(-2), z, m, with_inputs)


def calibrate_prior(
    net: LSTMAutoencoder,
    z: Tensor,
    m: Tensor,
    valid: Tensor,
    prior: GroupPrior,
    det: DetectorConfig,
) -> GroupPrior:
    """Median and mean absolute deviation of each calibrated column (errors per feature and
    in total, input deviations with ``score_inputs``) on the training data: a new stream's
    start."""
    _, stats, seen = offline_feature_errors(net, z, m, det.score_inputs)
    use = valid.bool().clone()
    use[: det.burn_in_readings] = False
    if not bool(use.any()):
        use = valid.bool()
    mus, devs = [], []
    for k in range(stats.shape[-1]):
        values = stats[..., k][use & (seen[..., k] > 0)]
        if values.numel() == 0:
            values = torch.zeros(1)
        mu = float(values.median())
        mus.append(mu)
        devs.append(max(float((values - mu).abs().mean()), 1e-3))
    return GroupPrior(prior.mean, prior.std, prior.max_run, tuple(mus), tuple(devs))
