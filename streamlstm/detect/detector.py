"""``Detector.score(table, readings)``: the one scoring path, for one reading or many.

Per poll a worker hands over every reading it got. Readings are split into sub-steps (the
k-th reading of each stream goes to sub-step k) so a stream's readings run in order with
its carried state; each sub-step gathers the rows of its streams, runs one batched step
(normalise -> LSTM step -> window reconstruction -> per-feature error -> calibrated score),
scatters the rows back and advances the alert state machine.

Scoring one reading is scoring a batch of one: there is no second path to drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from streamlstm.config import AlertConfig, DetectorConfig
from streamlstm.detect import alerts
from streamlstm.detect.calibration import (
    GroupPrior,
    calibration_horizons,
    n_calibrated,
    store_calibration_state,
)
from streamlstm.detect.columns import Col
from streamlstm.detect.model import LSTMAutoencoder
from streamlstm.detect.seasons import season_phase, season_share
from streamlstm.detect.state import StateTable
from streamlstm.detect.step import TensorStep, restart
from streamlstm.detect.table import table_columns
from streamlstm.records import AlertEvent, Reading, Rejection


@dataclass
class ScoringModel:
    """A model group's weights and priors, as loaded from a checkpoint."""

    group: str
    version: str
    features: list[str]
    net: LSTMAutoencoder
    prior: GroupPrior


@dataclass
class Scored:
    """Results in processing order; ``index`` points into the readings passed to ``score``."""

    index: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    raw_error: list[float] = field(default_factory=list)
    warming: list[bool] = field(default_factory=list)
    in_alert: list[bool] = field(default_factory=list)
    held: list[bool] = field(default_factory=list)  # kept from the stream's normal
    events: list[AlertEvent] = field(default_factory=list)
    rejected: list[tuple[int, Rejection]] = field(default_factory=list)
    replayed: int = 0  # readings at or below a stream's last applied offset: skipped


# Rows per tensor step on a CPU: the (rows, 4H) gates at H=128 are 4 MiB, about a core's L2.
# Measured at 10k streams (2 cores): 512 rows 39 ms, 1024 31, 2048 27, 4096 29, unchunked 40.
CPU_ROWS_PER_CHUNK = 2048


class Detector:
    def __init__(
        self,
        model: ScoringModel,
        cfg: DetectorConfig,
        alert_cfg: AlertConfig,
        device: torch.device | str = "cpu",
    ):
        self.model = model
        self.cfg = cfg
        self.device = torch.device(device)
        self.net = model.net.to(self.device).eval()
        self.alerts = alerts.AlertMachine(alert_cfg, model.version)
        n_features = len(model.features)
        self.prior = model.prior.tensors(self.device, n_calibrated(cfg, n_features))
        horizons = calibration_horizons(cfg, n_features)
        self.step_rows = TensorStep(
            cfg,
            self.net,
            torch.as_tensor(horizons, device=self.device),
            alert_cfg,
            (self.prior[Col.CAL_MU], self.prior[Col.CAL_DEV]),
        )
        # A GPU wants the whole batch at once; a CPU wants cache-sized chunks (see below).
        self.rows_per_chunk = CPU_ROWS_PER_CHUNK if self.device.type == "cpu" else 1 << 30

    def new_table(self, capacity: int = 1024) -> StateTable:
        mcfg = self.net.cfg
        dev_cols, host_cols = table_columns(
            len(self.model.features), mcfg.hidden_size, mcfg.window_len, self.cfg
        )
        return StateTable(dev_cols, host_cols, self.device, capacity)

    def score(self, table: StateTable, readings: list[Reading]) -> Scored:
        out = Scored()
        for substep in _substeps(readings):
            self._substep(table, readings, substep, out)
        return out

    # --- one sub-step: at most one reading per stream ---------------------------------
    def _substep(
        self, table: StateTable, readings: list[Reading], idx: list[int], out: Scored
    ) -> None:
        rows, is_new = table.rows_for([readings[i].stream for i in idx])
        if is_new.any():
            self.init_rows(table, rows[is_new])
        ts = np.fromiter((readings[i].ts for i in idx), np.float64, len(idx))
        offsets = np.fromiter((readings[i].offset for i in idx), np.int64, len(idx))
        keep = self._check_order(table, rows, ts, offsets, idx, out)
        if not keep.all():
            idx = [i for i, k in zip(idx, keep, strict=True) if k]
            rows, ts, offsets = rows[keep], ts[keep], offsets[keep]
            if not idx:
                return
        values = np.array([readings[i].values for i in idx], dtype=np.float32)
        dt = ts - table.host[Col.LAST_TS][rows]  # inf for a new stream
        gap = dt > self.cfg.max_gap_s
        a_phase = alerts.alert_phase(table.host, rows)
        res = self.step_in_chunks(table, rows, values, gap, a_phase, ts, dt)
        table.host[Col.LAST_TS][rows] = ts
        table.host[Col.LAST_OFFSET][rows] = offsets
        self._emit(table, readings, idx, rows, ts, offsets, res, out)

    def step_in_chunks(self, table, rows, values, gap, a_phase, ts, dt) -> dict[str, Tensor]:
        """gather -> step_rows -> scatter, ``rows_per_chunk`` rows at a time. ``a_phase`` (B,)
        int8: the stream's ``alerts.alert_phase``. ``ts`` (epoch seconds) and ``dt``
        (seconds since the stream's previous reading) place each reading in the seasons
        (``detector.season_periods_s``).

        Rows are independent, so chunking changes no result. On a CPU it keeps every
        temporary of the step (the (B, 4H) gates and the rest) in the core's cache instead of
        streaming tens of megabytes through memory for every element-wise op.
        """
        chunk = self.rows_per_chunk
        phase = share = None
        if self.cfg.season_periods_s:
            phase = season_phase(torch.as_tensor(ts, dtype=torch.float64), self.cfg)
            share = season_share(torch.as_tensor(dt, dtype=torch.float64), self.cfg)
        parts = []
        for lo in range(0, len(rows), chunk):
            row_t = torch.as_tensor(rows[lo : lo + chunk], device=self.device)
            state = table.gather(row_t)
            parts.append(
                self.step_rows(
                    state,
                    torch.as_tensor(values[lo : lo + chunk], device=self.device),
                    torch.as_tensor(gap[lo : lo + chunk], device=self.device),
                    torch.as_tensor(a_phase[lo : lo + chunk], device=self.device),
                    None if phase is None else phase[lo : lo + chunk].to(self.device),
                    None if share is None else share[lo : lo + chunk].to(self.device),
                )
            )
            table.scatter(row_t, state)
        if len(parts) == 1:
            return parts[0]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def init_rows(self, table: StateTable, rows: np.ndarray) -> None:
        """A new stream: calibration from the group prior; its normalisation from its own first
        readings (the prior mean/variance set here are replaced by the first reading)."""
        idx = torch.as_tensor(rows, device=self.device)
        n = len(rows)
        p = self.prior
        table.dev[Col.MEAN][idx] = p[Col.MEAN].expand(n, -1)
        table.dev[Col.VAR][idx] = p["std"].square().expand(n, -1)
        table.dev[Col.MAX_RUN][idx] = p[Col.MAX_RUN].expand(n, -1)
        store_calibration_state(
            table.dev, {k: p[k].expand(n, -1) for k in (Col.CAL_MU, Col.CAL_DEV)}, idx
        )

    def _rebaseline(self, table: StateTable, rows: np.ndarray) -> None:
        """Accept the streams' current state as their normal: from their next reading on,
        LSTM state, window and normaliser start afresh and the stream warms up again (no
        alert opens meanwhile). The error calibration is kept: errors are in normalised
        units, so what a normal error is does not move with the level."""
        idx = torch.as_tensor(rows, device=self.device)
        state = table.gather(idx)
        restart(state, torch.ones(len(rows), dtype=torch.bool, device=self.device))
        state[Col.N_OBS] = torch.zeros_like(state[Col.N_OBS])
        table.scatter(idx, state)

    def _check_order(self, table, rows, ts, offsets, idx, out: Scored) -> np.ndarray:
        """Skip readings already applied (replays); reject ones older than the stream."""
        replayed = offsets <= table.host[Col.LAST_OFFSET][rows]
        last_ts = table.host[Col.LAST_TS][rows]
        late = ~replayed & (ts < last_ts)
        dup = ~replayed & (ts == last_ts)
        if replayed.any() or late.any() or dup.any():
            out.replayed += int(replayed.sum())
            for j in np.flatnonzero(late | dup):
                out.rejected.append(
                    (idx[j], Rejection.of("out_of_order" if late[j] else "duplicate"))
                )
        return ~(replayed | late | dup)

    def _emit(self, table, readings, idx, rows, ts, offsets, res, out: Scored) -> None:
        score = res["score"].cpu().numpy()
        warming = res["warming"].cpu().numpy()
        stuck = res["stuck"].cpu().numpy()
        quality = stuck.any(axis=1) & ~warming
        feats = self.model.features
        lazy: dict[str, np.ndarray] = {}

        def top_features(i: int) -> tuple[tuple[str, float], ...]:
            if stuck[i].any() and score[i] < self.alerts.cfg.enter:
                names = [feats[f] for f in np.flatnonzero(stuck[i])]
                return tuple((n, 1.0 / len(names)) for n in names)
            if not lazy:
                lazy["z"] = res["z"].cpu().numpy()
            return top_shares(lazy["z"][i], feats)

        def sources(i: int) -> tuple[str, int, int]:
            r = readings[idx[i]]
            return (r.topic, r.partition, r.offset)

        inputs = alerts.AlertInputs(
            [readings[i].stream for i in idx],
            ts,
            offsets,
            score,
            quality,
            warming,
            top_features,
            sources,
        )
        events = self.alerts.step(table.host, rows, inputs)
        rebased = {e.stream for e in events if e.event == "rebaseline"}
        if rebased:
            self._rebaseline(table, rows[[s in rebased for s in inputs.streams]])
        out.events.extend(events)
        out.index.extend(idx)
        out.score.extend(score.tolist())
        out.raw_error.extend(res["rms_err"].cpu().numpy().tolist())
        out.warming.extend(warming.tolist())
        out.held.extend(res["held"].cpu().numpy().tolist())
        out.in_alert.extend((table.host[Col.A_STATE][rows] == alerts.OPEN).tolist())


def top_shares(z: np.ndarray, names: list[str], k: int = 3) -> tuple[tuple[str, float], ...]:
    """Share of the per-feature excess error (calibrated z), the largest ``k`` first."""
    total = float(z.sum())
    if total <= 0:
        return ()
    order = [f for f in np.argsort(-z)[:k] if z[f] > 0]
    return tuple((names[f], float(z[f]) / total) for f in order)


def _substeps(readings: list[Reading]) -> list[list[int]]:
    """Indices grouped so sub-step k holds the k-th reading of every stream (input order)."""
    if len({r.stream for r in readings}) == len(readings):
        return [list(range(len(readings)))]  # the common case: one reading per stream
    seen: dict[str, int] = {}
    steps: list[list[int]] = []
    for i, r in enumerate(readings):
        k = seen.get(r.stream, 0)
        seen[r.stream] = k + 1
        if k == len(steps):
            steps.append([])
        steps[k].append(i)
    return steps
