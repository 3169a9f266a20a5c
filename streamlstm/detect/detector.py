"""``Detector.score(table, readings)``: the one scoring path, for one reading or many.

Per poll a worker hands over every reading it got. Readings are split into sub-steps (the
k-th reading of each stream goes to sub-step k) so a stream's readings run in order with
its carried state; each sub-step gathers the rows of its streams, runs one batched step
(normalise -> LSTM step -> window reconstruction -> per-feature error -> calibrated score),
scatters the rows back and advances the alert state machine.

Scoring one reading is scoring a batch of one: there is no second path to drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from streamlstm.detect.scored import ReadingColumns, Scored, substeps, top_shares
from streamlstm.detect.seasons import season_phase, season_share
from streamlstm.detect.state import StateTable
from streamlstm.detect.step import TensorStep, restart
from streamlstm.detect.table import table_columns
from streamlstm.records import Reading, Rejection

__all__ = ["Detector", "ReadingColumns", "Scored", "ScoringModel", "top_shares"]


@dataclass
class ScoringModel:
    """A model group's weights and priors, as loaded from a checkpoint."""

    group: str
    version: str
    features: list[str]
    net: LSTMAutoencoder
    prior: GroupPrior


# Rows per tensor step on a CPU: the (rows, 4H) gates at H=128 are 4 MiB, about a core's L2.
# Measured at 10k streams (2 cores): 512 rows 39 ms, 1024 31, 2048 27, 4096 29, unchunked 40.
CPU_ROWS_PER_CHUNK = 2048
# On a GPU the batch should fill the device and pay the ~400 kernel launches of a step once
# per many rows, but not grow without bound: a row's step needs a few KiB of temporaries
# (gates, window, gathered state), so a chunk gets a 32 KiB share of device memory per
# row, between 2^16 and 2^20 rows (2^20 on an 80 GB or larger GPU).
GPU_ROWS_PER_CHUNK = (1 << 16, 1 << 20)
GPU_BYTES_PER_ROW = 32 * 1024


def default_rows_per_chunk(device: torch.device) -> int:
    if device.type == "cpu":
        return CPU_ROWS_PER_CHUNK
    low, high = GPU_ROWS_PER_CHUNK
    if device.type != "cuda":
        return low
    total = torch.cuda.get_device_properties(device).total_memory
    return int(min(high, max(low, total // GPU_BYTES_PER_ROW)))


class Detector:
    def __init__(
        self,
        model: ScoringModel,
        cfg: DetectorConfig,
        alert_cfg: AlertConfig,
        device: torch.device | str = "cpu",
        rows_per_chunk: int | None = None,
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
        # A CPU wants cache-sized chunks, a GPU device-sized ones (see the constants above).
        self.rows_per_chunk = rows_per_chunk or default_rows_per_chunk(self.device)

    def compile_step(self) -> None:
        """Run the tensor step through ``torch.compile`` (dynamic shapes: chunk sizes vary):
        its element-wise ops fuse into a few kernels. Optional (``bench step --compile``):
        the first call compiles for a while, and the fused kernels may round differently
        from eager ones at float precision."""
        self.step_rows = torch.compile(self.step_rows, dynamic=True)

    def new_table(self, capacity: int = 1024) -> StateTable:
        mcfg = self.net.cfg
        hold_set = self.alerts.cfg.hold_normal == "features"
        dev_cols, host_cols = table_columns(
            len(self.model.features), mcfg.hidden_size, mcfg.window_len, self.cfg, hold_set
        )
        return StateTable(dev_cols, host_cols, self.device, capacity)

    def score(self, table: StateTable, readings: list[Reading]) -> Scored:
        return self.score_columns(table, ReadingColumns.of(readings))

    def score_columns(self, table: StateTable, cols: ReadingColumns) -> Scored:
        """``score`` on readings already laid out as columns (a decoder that parses records
        straight into arrays calls this; ``Scored.index`` points into the columns)."""
        out = Scored()
        if not len(cols.streams):
            return out
        steps = substeps(cols.streams)
        if steps is None:  # one reading per stream: no index arrays, no copies
            self._substep(table, cols, None, out)
        else:
            for idx in steps:
                self._substep(table, cols, idx, out)
        return out

    # --- one sub-step: at most one reading per stream ---------------------------------
    def _substep(
        self, table: StateTable, cols: ReadingColumns, idx: np.ndarray | None, out: Scored
    ) -> None:
        """Readings ``idx`` of ``cols`` (all of them when None), each of a different stream."""
        whole = idx is None
        if whole:
            streams, ts, offsets = cols.streams, cols.ts, cols.offsets
            idx = np.arange(len(streams))
        else:
            streams = [cols.streams[i] for i in idx]
            ts, offsets = cols.ts[idx], cols.offsets[idx]
        rows, is_new = table.rows_for(streams)
        if is_new.any():
            self.init_rows(table, rows[is_new])
        keep = self._check_order(table, rows, ts, offsets, idx, out)
        if not keep.all():
            whole = False
            idx, rows, ts, offsets = idx[keep], rows[keep], ts[keep], offsets[keep]
            streams = [cols.streams[i] for i in idx]
            if not len(idx):
                return
        values = cols.values if whole else cols.values[idx]
        dt = ts - table.host[Col.LAST_TS][rows]  # inf for a new stream
        gap = dt > self.cfg.max_gap_s
        a_phase = alerts.alert_phase(table.host, rows)
        res = self.step_in_chunks(table, rows, values, gap, a_phase, ts, dt)
        table.host[Col.LAST_TS][rows] = ts
        table.host[Col.LAST_OFFSET][rows] = offsets
        self._emit(table, cols, streams, idx, rows, ts, offsets, res, out)

    def step_in_chunks(self, table, rows, values, gap, a_phase, ts, dt) -> dict[str, Tensor]:
        """gather -> step_rows -> scatter, ``rows_per_chunk`` rows at a time. ``a_phase`` (B,)
        int8: the stream's ``alerts.alert_phase``. ``ts`` (epoch seconds) and ``dt``
        (seconds since the stream's previous reading) place each reading in the seasons
        (``detector.season_periods_s``).

        Rows are independent, so chunking changes no result. On a CPU it keeps every
        temporary of the step (the (B, 4H) gates and the rest) in the core's cache instead of
        streaming tens of megabytes through memory for every element-wise op.

        Inputs go to the device once per call, not once per chunk, and nothing here waits
        for the device: whether a chunk holds a gap is read from the host's ``gap``.
        """
        dev, chunk = self.device, self.rows_per_chunk
        rows_t = torch.as_tensor(rows, device=dev)
        x_t = torch.as_tensor(values, device=dev)
        gap_t = torch.as_tensor(gap, device=dev)
        phase_t = torch.as_tensor(a_phase, device=dev)
        season = share = None
        if self.cfg.season_periods_s:
            season = season_phase(torch.as_tensor(ts, dtype=torch.float64), self.cfg).to(dev)
            share = season_share(torch.as_tensor(dt, dtype=torch.float64), self.cfg).to(dev)
        parts = []
        for lo in range(0, len(rows), chunk):
            hi = lo + chunk
            first = _first_of_run(rows[lo:hi])
            view = None if first is None else table.view(first, first + len(rows[lo:hi]))
            state = table.gather(rows_t[lo:hi]) if view is None else dict(view)
            parts.append(
                self.step_rows(
                    state,
                    x_t[lo:hi],
                    gap_t[lo:hi],
                    phase_t[lo:hi],
                    None if season is None else season[lo:hi],
                    None if share is None else share[lo:hi],
                    any_gap=bool(gap[lo:hi].any()),
                )
            )
            if view is None:
                table.scatter(rows_t[lo:hi], state)
            else:
                table.write_back(first, view, state)
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
                    (int(idx[j]), Rejection.of("out_of_order" if late[j] else "duplicate"))
                )
        return ~(replayed | late | dup)

    def _emit(self, table, cols, streams, idx, rows, ts, offsets, res, out: Scored) -> None:
        got = _to_host(res)  # one device -> host copy for everything read per reading
        score, warming, stuck = got["score"], got["warming"], got["stuck"]
        quality = stuck.any(axis=1) & ~warming
        feats = self.model.features
        lazy: dict[str, np.ndarray] = {}

        def top_features(i: int) -> tuple[tuple[str, float], ...]:
            if stuck[i].any() and score[i] < self.alerts.cfg.enter:
                names = [feats[f] for f in np.flatnonzero(stuck[i])]
                return tuple((n, 1.0 / len(names)) for n in names)
            if not lazy:  # only for an alert event: a second copy, rarely
                lazy["z"] = res["z"].cpu().numpy()
            return top_shares(lazy["z"][i], feats)

        inputs = alerts.AlertInputs(
            streams,
            ts,
            offsets,
            score,
            quality,
            warming,
            top_features,
            lambda i: cols.source(int(idx[i])),
        )
        events = self.alerts.step(table.host, rows, inputs)
        if any(e.event == "rebaseline" for e in events):
            rebased = {e.stream for e in events if e.event == "rebaseline"}
            self._rebaseline(table, rows[[s in rebased for s in streams]])
        out.events.extend(events)
        out.index.extend(idx.tolist())
        out.score.extend(score.tolist())
        out.raw_error.extend(got["rms_err"].tolist())
        out.warming.extend(warming.tolist())
        out.held.extend(got["held"].tolist())
        out.in_alert.extend((table.host[Col.A_STATE][rows] == alerts.OPEN).tolist())


def _first_of_run(rows: np.ndarray) -> int | None:
    """The first row when ``rows`` are consecutive ascending (r, r + 1, ...), else None."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all():
        return int(rows[0])
    return None


def _to_host(res: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """The per-reading results as host arrays, packed into one tensor for one copy: on a
    GPU each separate ``.cpu()`` would be a transfer and a wait of its own."""
    per_row = [res["score"], res["rms_err"], res["warming"].float(), res["held"].float()]
    packed = torch.cat([torch.stack(per_row, dim=1), res["stuck"].float()], dim=1)
    host = packed.cpu().numpy()
    return {
        "score": host[:, 0],
        "rms_err": host[:, 1],
        "warming": host[:, 2] > 0,
        "held": host[:, 3] > 0,
        "stuck": host[:, 4:] > 0,
    }
