"""Two simple detectors to measure the streaming LSTM autoencoder against.

Both end in the detector's own score path, so only the error statistic differs:

* ``rolling_zscore_stats``: per feature, |x - mean| / std of the preceding ``window`` raw
  readings (a windowed Gaussian), plus the RMS over features as the total column;
* ``sliding_lstm_stats``: the *same trained* autoencoder, but each reading's window is
  re-encoded from a zero ``(h, c)`` over the last ``context`` readings (no carried state),
  the way a windowed LSTM-AE is usually deployed.

``calibrated_alerts`` then turns either statistic (T, B, K) into a score with the detector's
``calibrated_score`` and ``learn_calibration`` (robust z against the stream's own EMA, held
inside alerts, warm-up) and runs the live ``AlertMachine`` with the config's thresholds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streamlstm.config import AlertConfig, DetectorConfig
from streamlstm.detect import alerts, holding
from streamlstm.detect.calibration import (
    calibrated_score,
    calibration_fade,
    learn_calibration,
    learning_own,
    score_statistics,
)
from streamlstm.detect.columns import Col
from streamlstm.detect.likelihood import learn_tail, tail_score, tail_start
from streamlstm.detect.model import LSTMAutoencoder, window_error
from streamlstm.detect.state import Column


@dataclass
class AlertTrace:
    """Per reading of each stream: score, inside an open alert, alert opened here, and held
    back from the calibration (``holding.holding``)."""

    score: np.ndarray  # (T, B)
    in_alert: np.ndarray  # (T, B) bool
    alert_open: np.ndarray  # (T, B) bool
    held: np.ndarray | None = None  # (T, B) bool


def rolling_zscore_stats(values: np.ndarray, window: int = 100) -> tuple[Tensor, Tensor]:
    """values (T, B, F) raw, NaN = missing -> stats, seen (T, B, F + 1).

    The first reading of a window has no history: its z is 0 (and it cannot be judged).
    """
    _, B, F = values.shape
    padded = np.concatenate([np.full((window, B, F), np.nan), values], axis=0)
    # history[t] = readings t-window..t-1: (T, B, F, window)
    history = np.lib.stride_tricks.sliding_window_view(padded[:-1], window, axis=0)
    with warnings.catch_warnings():  # an all-missing history is expected, not an error
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(history, axis=-1)
        std = np.nanstd(history, axis=-1)
    scale = np.nanstd(values, axis=0, keepdims=True)  # floor: a flat history is not 0-width
    std = np.maximum(np.nan_to_num(std, nan=0.0), 0.05 * np.nan_to_num(scale, nan=1.0) + 1e-6)
    z = np.abs(values - mean) / std
    feat_seen = np.isfinite(z)
    z = np.where(feat_seen, z, 0.0)
    total = np.sqrt((z**2).sum(-1, keepdims=True) / np.maximum(feat_seen.sum(-1, keepdims=True), 1))
    stats = np.concatenate([z, total], axis=-1)
    seen = np.concatenate([feat_seen, feat_seen.any(-1, keepdims=True)], axis=-1)
    return torch.as_tensor(stats, dtype=torch.float32), torch.as_tensor(seen, dtype=torch.float32)


@torch.no_grad()
def sliding_lstm_stats(
    net: LSTMAutoencoder,
    z: Tensor,
    m: Tensor,
    context: int,
    with_inputs: bool = False,
    chunk: int = 4096,
) -> tuple[Tensor, Tensor]:
    """z, m (T, B, F) normalised inputs and mask -> stats, seen (T, B, K), the detector's
    columns (``calibration.score_statistics``; the input deviations need no state).

    Reading t is scored from a zero state run over readings t-context+1..t (zero-padded at
    the start, as a fresh stream's window buffer is).
    """
    T, B, F = z.shape
    W = net.cfg.window_len
    inputs = torch.cat([z, m], dim=-1)  # (T, B, 2F)
    padded = torch.cat([inputs.new_zeros(context - 1, B, 2 * F), inputs], dim=0)
    # windows (T*B, context, 2F), ordered t-major
    windows = padded.unfold(0, context, 1).permute(0, 1, 3, 2).reshape(T * B, context, 2 * F)
    finals = []
    for lo in range(0, T * B, chunk):
        part = windows[lo : lo + chunk].transpose(0, 1)  # (context, n, 2F)
        _, (h, _) = net.encoder(part)
        finals.append(h.squeeze(0))
    recon = net.decode(torch.cat(finals)).view(T, B, W, F)
    last = windows[:, -W:].view(T, B, W, 2 * F)
    feat_err = window_error(recon, last[..., :F], last[..., F:])
    return score_statistics(feat_err, last[..., F:], z, m, with_inputs)


def typical_error(stats: Tensor, seen: Tensor, skip: int) -> tuple[Tensor, Tensor]:
    """Median and mean absolute deviation of each column (after ``skip`` readings): the
    calibration prior, as ``train.fit`` computes it for the LSTM."""
    mus, devs = [], []
    for k in range(stats.shape[-1]):
        values = stats[skip:, :, k][seen[skip:, :, k] > 0]
        if values.numel() == 0:
            values = torch.zeros(1)
        mu = float(values.median())
        mus.append(mu)
        devs.append(max(float((values - mu).abs().mean()), 1e-3))
    return torch.tensor(mus), torch.tensor(devs)


def calibrated_alerts(
    stats: Tensor,
    seen: Tensor,
    prior: tuple[Tensor, Tensor],
    det: DetectorConfig,
    alert_cfg: AlertConfig,
    valid: np.ndarray | None = None,
    horizon: float | Tensor | None = None,
    newest: tuple[Tensor, Tensor] | None = None,
) -> AlertTrace:
    """stats, seen (T, B, K) -> the detector's calibrated score and alerts per reading.

    ``valid`` (T, B) marks real readings in padded lanes; padding changes no state.
    ``horizon``: per-column horizons (``calibration_horizons``); default the errors' one.
    ``newest``: stats, seen (T, B, K) of each newest reading alone
    (``fit.offline_newest_statistics``): with ``alerts.exit_on: newest`` an open alert's exit
    is judged on the lower of the two scores, with ``open_on: newest`` an opening, as
    ``TensorStep`` does. None: both on the score.
    """
    horizon = det.calibration_horizon if horizon is None else horizon
    T, B, _ = stats.shape
    valid = np.ones((T, B), dtype=bool) if valid is None else valid.astype(bool)
    state = {
        Col.CAL_MU: prior[0].expand(B, -1).clone(),
        Col.CAL_DEV: prior[1].expand(B, -1).clone(),
        Col.CAL_N: torch.zeros(B),
    }
    tail = det.score_tail_horizon
    if tail:  # the thresholds are in tail units then: the baselines' score must be too
        start = tail_start(det.score_tail_shape)
        state |= {name: torch.full((B,), fill) for name, fill in start.items()}
    host = {name: _column(col, B) for name, col in alerts.HOST_COLUMNS.items()}
    # No rebaseline here: time is the reading index, and a baseline has no normal to re-learn.
    machine = alerts.AlertMachine(
        alert_cfg.model_copy(update={"rebaseline_after_s": None, "rebaseline_after_history": None}),
        "baseline",
    )
    since = np.zeros(B)
    fade = calibration_fade(det)
    out = AlertTrace(*(np.zeros((T, B), dtype) for dtype in (float, bool, bool, bool)))
    streams = [f"s{b}" for b in range(B)]
    for t in range(T):
        ok = valid[t]
        score, _ = calibrated_score(stats[t], seen[t], state, prior, fade)
        raw = score
        if tail:  # as TensorStep: how rare the calibrated score is for this stream
            score, state[Col.TAIL_SHORT] = tail_score(
                raw, state, det.score_tail_short, det.score_tail_shape
            )
        own_score = score  # as TensorStep: the reading's own, the lower of the two
        if newest is not None and "newest" in (alert_cfg.exit_on, alert_cfg.open_on):
            alone, _ = calibrated_score(newest[0][t], newest[1][t], state, prior, fade)
            if tail:
                alone, _ = tail_score(alone, state, 1, det.score_tail_shape)
            own_score = torch.minimum(score, alone)
        # as TensorStep: nothing held while warming or while the prior still scores a row
        own = learning_own(state, det).numpy()
        leaning = (since + 1 <= det.warmup_readings) | own
        phase = alerts.alert_phase(host, np.arange(B))
        _, held = holding.holding(
            alert_cfg.hold_normal,
            phase,
            score.numpy(),
            np.zeros(B, bool),
            leaning,
            alert_cfg.hold_score(),
        )
        held = held & ~own
        out.held[t] = held & ok
        learn = torch.as_tensor((since >= det.burn_in_readings) & ~held & ok)
        state.update(learn_calibration(stats[t], seen[t], state, learn, horizon))
        if tail:
            state.update(learn_tail(raw, state, learn, tail, det.score_tail_shape))
        since += ok
        rows = np.flatnonzero(ok)
        score_np = score.numpy()[rows]
        inputs = alerts.AlertInputs(
            streams=[streams[r] for r in rows],
            ts=np.full(len(rows), float(t)),
            offsets=np.full(len(rows), t, dtype=np.int64),
            score=score_np,
            own_score=own_score.numpy()[rows],
            quality=np.zeros(len(rows), bool),
            warming=since[rows] <= det.warmup_readings,
            top_features=lambda i: (),
            sources=lambda i, t=t: ("", 0, t),
        )
        for event in machine.step(host, rows, inputs):
            if event.event == "open":
                out.alert_open[t, streams.index(event.stream)] = True
        out.score[t] = score.numpy()
        out.in_alert[t] = host[Col.A_STATE] == alerts.OPEN
    return out


def _column(col: Column, n: int) -> np.ndarray:
    return np.full(n, col.fill, dtype=col.dtype)
