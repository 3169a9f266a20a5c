"""``Detector.score(table, readings)``: the one scoring path, for one reading or many.

Per poll a worker hands over every reading it got. Readings are split into sub-steps (the
k-th reading of each stream goes to sub-step k) so a stream's readings run in order with
its carried state. Once per poll (``poll_plan``): rows looked up, order checks, inputs laid
out and moved to the device, the rows gathered (``working.WorkingRows``). Per sub-step: one
batched step (normalise -> LSTM step -> window reconstruction -> per-feature error ->
calibrated score) on a prefix of the gathered rows, and the alert state machine, whose
phase the next sub-step's step reads (``holding.holding``). The rows are written back once.

Scoring one reading is scoring a batch of one: there is no second path to drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from streamlstm.detect.normalise import level_rate
from streamlstm.detect.poll_plan import plan_poll
from streamlstm.detect.scored import ReadingColumns, Scored, explained, top_shares
from streamlstm.detect.seasons import season_phase, season_share
from streamlstm.detect.state import StateTable
from streamlstm.detect.step import TensorStep
from streamlstm.detect.table import table_columns
from streamlstm.detect.working import WorkingRows
from streamlstm.records import Reading, TopFeature

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
        plan = plan_poll(table, cols, out)  # rows, order checks: once per poll
        if len(plan.new_rows):
            self.init_rows(table, plan.new_rows)
        if not plan.sizes:
            return out
        index = plan.index()
        values = cols.values if plan.order is None else cols.values[index]
        ts = cols.ts if plan.order is None else cols.ts[index]
        inputs = self._inputs(values, plan.dt > self.cfg.max_gap_s, ts, plan.dt)
        with torch.inference_mode():  # less bookkeeping per op than no_grad
            self._substeps(table, cols, plan, index, ts, inputs, out)
        return out

    def _substeps(self, table, cols, plan, index, ts, inputs, out: Scored) -> None:
        work = WorkingRows(table, plan.rows)
        lo = 0
        for n in plan.sizes:  # sub-step: the next reading of working rows [0, n)
            at = slice(lo, lo + n)
            rows = plan.rows[:n]
            a_phase = alerts.alert_phase(table.host, rows)
            res = self._step_rows(work, n, {k: v[at] for k, v in inputs.items()}, a_phase)
            self._emit(table, work, cols, index[at], rows, ts[at], res, out)
            lo += n
        work.close()

    def _inputs(self, values, gap, ts, dt) -> dict:
        """A poll's step inputs on the device, once: (A, ...) in plan order. ``ts`` (epoch
        seconds) and ``dt`` (seconds since the stream's previous reading) place each
        reading in the seasons (``detector.season_periods_s``) and weigh it in the level
        (``detector.norm_horizon_s``)."""
        dev = self.device
        got = {"x": torch.as_tensor(values, device=dev), "gap": torch.as_tensor(gap, device=dev)}
        got["gap_host"] = gap  # numpy: whether a chunk holds a gap, without a device wait
        gaps = torch.as_tensor(dt, dtype=torch.float64)
        if self.cfg.season_periods_s:
            got["season"] = season_phase(torch.as_tensor(ts, dtype=torch.float64), self.cfg).to(dev)
            got["share"] = season_share(gaps, self.cfg).to(dev)
        if self.cfg.norm_horizon_s:
            got["rate"] = level_rate(gaps, self.cfg).to(dev)
        return got

    def _step_rows(
        self, work: WorkingRows, n: int, inputs: dict, a_phase: np.ndarray
    ) -> dict[str, Tensor]:
        """One reading for each of working rows [0, n): ``step_rows``, ``rows_per_chunk``
        rows at a time. ``a_phase`` (n,) int8: the stream's ``alerts.alert_phase``.

        Rows are independent, so chunking changes no result. On a CPU it keeps every
        temporary of the step (the (B, 4H) gates and the rest) in the core's cache instead of
        streaming tens of megabytes through memory for every element-wise op.
        """
        phase_t = torch.as_tensor(a_phase, device=self.device)
        season, share, rate = inputs.get("season"), inputs.get("share"), inputs.get("rate")
        parts = []
        for lo in range(0, n, self.rows_per_chunk):
            hi = min(n, lo + self.rows_per_chunk)
            state = work.rows(lo, hi)
            given = dict(state)
            parts.append(
                self.step_rows(
                    state,
                    inputs["x"][lo:hi],
                    inputs["gap"][lo:hi],
                    phase_t[lo:hi],
                    None if season is None else season[lo:hi],
                    None if share is None else share[lo:hi],
                    None if rate is None else rate[lo:hi],
                    any_gap=bool(inputs["gap_host"][lo:hi].any()),
                    any_open=bool((a_phase[lo:hi] == alerts.PHASE_OPEN).any()),
                )
            )
            work.put(lo, hi, given, state)
        if len(parts) == 1:
            return parts[0]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def step_in_chunks(self, table, rows, values, gap, a_phase, ts, dt) -> dict[str, Tensor]:
        """The tensor step alone on ``rows`` (distinct), gathered and written back: what a
        poll's sub-step computes, without order checks or alerts (``bench step``)."""
        work = WorkingRows(table, rows)
        res = self._step_rows(work, len(rows), self._inputs(values, gap, ts, dt), a_phase)
        work.close()
        return res

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

    def _emit(self, table, work, cols, idx, rows, ts, res, out: Scored) -> None:
        """Readings ``idx`` of ``cols`` were stepped on ``rows`` (working rows [0, n)):
        advance their alert state machines and append the results to ``out``."""
        got = _to_host(res)  # one device -> host copy for everything read per reading
        score, warming, stuck = got["score"], got["warming"], got["stuck"]
        quality = stuck.any(axis=1) & ~warming
        feats = self.model.features
        lazy: dict[str, np.ndarray] = {}

        def top_features(i: int) -> tuple[TopFeature, ...]:
            if not lazy:  # only for an alert event: a second copy, rarely
                lazy.update({k: res[k].cpu().numpy() for k in ("z", "expected", "scale")})
            if stuck[i].any() and score[i] < self.alerts.cfg.enter:
                stuck_f = np.flatnonzero(stuck[i])
                picked = [(int(f), 1.0 / len(stuck_f)) for f in stuck_f]
            else:
                picked = top_shares(lazy["z"][i])
            value = cols.values[idx[i]]
            return explained(feats, picked, value, lazy["expected"][i], lazy["scale"][i])

        inputs = alerts.AlertInputs(
            _Picked(cols.streams, idx),  # a stream id is read for an alert event only
            ts,
            cols.offsets[idx],
            score,
            quality,
            warming,
            top_features,
            lambda i: cols.source(int(idx[i])),
            got["own_score"],
            got["held_off"],
        )
        events = self.alerts.step(table.host, rows, inputs)
        if any(e.event == "rebaseline" for e in events):
            # Accept the streams' current state as their normal: from their next reading
            # on, LSTM state, window and normaliser start afresh and the stream warms up
            # again (no alert opens meanwhile). The error calibration is kept: errors are in
            # normalised units, so what a normal error is does not move with the level.
            rebased = [table.index[e.stream] for e in events if e.event == "rebaseline"]
            work.restart(np.flatnonzero(np.isin(rows, rebased)))
        out.events.extend(events)
        out.index.extend(idx.tolist())
        out.score.extend(score.tolist())
        out.raw_error.extend(got["rms_err"].tolist())
        out.warming.extend(warming.tolist())
        out.held.extend(got["held"].tolist())
        out.in_alert.extend((table.host[Col.A_STATE][rows] == alerts.OPEN).tolist())


class _Picked(Sequence[str]):
    """``streams[idx[i]]`` without building the list: read for alert events only."""

    def __init__(self, streams: Sequence[str], idx: np.ndarray):
        self.streams, self.idx = streams, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i):  # type: ignore[override]
        return self.streams[int(self.idx[i])]


def _to_host(res: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """The per-reading results as host arrays, packed into one tensor for one copy: on a
    GPU each separate ``.cpu()`` would be a transfer and a wait of its own."""
    per_row = [res["score"], res["own_score"], res["rms_err"], res["warming"], res["held"]]
    per_row.append(res["held_off"])
    per_row = [t.float() for t in per_row]
    packed = torch.cat([torch.stack(per_row, dim=1), res["stuck"].float()], dim=1)
    host = packed.cpu().numpy()
    return {
        "score": host[:, 0],
        "own_score": host[:, 1],
        "rms_err": host[:, 2],
        "warming": host[:, 3] > 0,
        "held": host[:, 4] > 0,
        "held_off": host[:, 5] > 0,
        "stuck": host[:, 6:] > 0,
    }
