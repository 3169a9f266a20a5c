"""Benchmarks as functions returning JSON-able dicts (``streamlstm bench ...`` prints them).

Every ratio is measured inside one run, on one machine, against a baseline timed in the
same process: machines here are noisy, so absolute numbers matter less than ratios.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from streamlstm.config import Config
from streamlstm.detect.calibration import GroupPrior
from streamlstm.detect.detector import Detector, ReadingColumns, ScoringModel
from streamlstm.detect.model import LSTMAutoencoder
from streamlstm.records import Reading


def _timeit(
    fn: Callable[[object], object],
    min_s: float = 1.0,
    min_runs: int = 3,
    prepare: Callable[[], object] = lambda: None,
) -> float:
    """Median seconds per call of ``fn(prepare())``; the time of ``prepare`` is not counted."""
    fn(prepare())  # warm-up: allocator, thread pool, lazy init
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < min_s:
        arg = prepare()
        t0 = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def matmul_ceiling(
    device: torch.device, size: int | None = None, dtype: torch.dtype = torch.float32
) -> float:
    """GFLOP/s of a large square matrix multiply: the device's practical ceiling. float32 by
    default, the step's own dtype (on CUDA, TF32 as ``torch.backends.cuda.matmul`` allows).
    A GPU needs a larger matrix than a CPU to reach its peak."""
    size = size or (2048 if device.type == "cpu" else 8192)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def run(_: object) -> None:
        a @ b
        _sync(device)

    return 2 * size**3 / _timeit(run) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_ceilings(device: torch.device) -> dict:
    """The float32 ceiling the step is compared with, and on CUDA what the tensor cores give
    (bf16, and TF32 if allowed): context, not the denominator, as the step runs float32."""
    out = {"matmul_ceiling_gflops": round(matmul_ceiling(device), 2)}
    if device.type == "cuda":
        out["matmul_tf32_allowed"] = bool(torch.backends.cuda.matmul.allow_tf32)
        out["matmul_ceiling_bf16_gflops"] = round(matmul_ceiling(device, dtype=torch.bfloat16), 2)
        out["device_name"] = torch.cuda.get_device_name(device)
    return out


def step_flops(net: LSTMAutoencoder, batch: int) -> int:
    """Multiply-add FLOPs of one batched step, from the layer shapes.

    torch's FlopCounterMode does not see inside the fused LSTM kernel, so the LSTM is
    counted from its definition: gates = [x, m] W_ih^T + h W_hh^T (4H outputs each).
    """
    f, h = net.n_features, net.cfg.hidden_size
    lstm = 2 * (2 * f + h) * 4 * h
    decoder = sum(
        2 * layer.in_features * layer.out_features
        for layer in (net.to_code, net.expand, net.to_window)
    )
    return batch * (lstm + decoder)


def _reading_source(
    n_streams: int, n_features: int, rng: np.random.Generator
) -> Callable[[], list[Reading]]:
    """Each call: one new reading per stream (time and offset advance, values vary)."""
    ids = [f"s{i}" for i in range(n_streams)]
    pool = [tuple(row) for row in rng.normal(0.0, 1.0, (n_streams + 97, n_features)).tolist()]
    step = iter(range(1, 10**9))

    def make() -> list[Reading]:
        k = next(step)
        ts = 1.767e9 + 60.0 * k
        return [
            Reading(sid, ts, pool[(i + k) % len(pool)], "bench", "t", 0, k)
            for i, sid in enumerate(ids)
        ]

    return make


def bench_detector(
    config: Config,
    device: torch.device,
    rows_per_chunk: int | None = None,
    compile_step: bool = False,
) -> Detector:
    """A detector of the config's first group with seeded random weights (speed only)."""
    group = config.groups[0]
    torch.manual_seed(0)
    f = len(group.features)
    net = LSTMAutoencoder(f, group.model)
    prior = GroupPrior((0.0,) * f, (1.0,) * f, (3.0,) * f)
    model = ScoringModel("bench", "bench-v0", group.features, net, prior)
    det = Detector(model, config.detector, config.alerts, device, rows_per_chunk)
    if compile_step:
        det.compile_step()
    return det


def bench_step(
    config: Config,
    n_streams: int,
    device: torch.device,
    naive_streams: int = 300,
    min_s: float = 2.0,
    rows_per_chunk: int | None = None,
    compile_step: bool = False,
) -> dict:
    """Batched detector vs a loop stepping each stream alone; GFLOP/s vs the ceiling."""
    det = bench_detector(config, device, rows_per_chunk, compile_step)
    f = len(det.model.features)
    table = det.new_table(capacity=n_streams)
    make = _reading_source(n_streams, f, np.random.default_rng(0))

    def score(batches: list[list[Reading]]) -> None:
        for batch in batches:
            det.score(table, batch)
        _sync(device)

    def score_columns(cols: ReadingColumns) -> None:
        det.score_columns(table, cols)
        _sync(device)

    # Same streams, same table, same model: all of them in one call, or one call each.
    batched_s = _timeit(score, min_s, prepare=lambda: [make()])
    columns_s = _timeit(score_columns, min_s, prepare=lambda: ReadingColumns.of(make()))
    naive_s = _timeit(score, min_s, prepare=lambda: [[r] for r in make()[:naive_streams]])
    tensor_s = _time_tensor_step(det, table, n_streams, f, device, min_s)
    flops = step_flops(det.net, n_streams)
    ceilings = device_ceilings(device)
    ceiling = ceilings["matmul_ceiling_gflops"]
    batched_rate = n_streams / batched_s
    naive_rate = naive_streams / naive_s
    return {
        "bench": "step",
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "rows_per_chunk": det.rows_per_chunk,
        "compiled": compile_step,
        "streams": n_streams,
        "features": f,
        "hidden_size": det.net.cfg.hidden_size,
        "window_len": det.net.cfg.window_len,
        "batched_stream_steps_per_s": round(batched_rate),
        "columns_stream_steps_per_s": round(n_streams / columns_s),
        "tensor_stream_steps_per_s": round(n_streams / tensor_s),
        "naive_stream_steps_per_s": round(naive_rate),
        "naive_streams_timed": naive_streams,
        "batched_over_naive": round(batched_rate / naive_rate, 1),
        "flops_per_step": flops,
        "step_ms": round(batched_s * 1e3, 3),
        "step_gflops": round(flops / batched_s / 1e9, 2),
        "columns_step_ms": round(columns_s * 1e3, 3),
        "tensor_step_ms": round(tensor_s * 1e3, 3),
        "tensor_step_gflops": round(flops / tensor_s / 1e9, 2),
        **ceilings,
        "step_over_ceiling": round(flops / batched_s / 1e9 / ceiling, 3),
        "tensor_step_over_ceiling": round(flops / tensor_s / 1e9 / ceiling, 3),
        "notes": "step = Detector.score on one reading per stream (Reading objects to "
        "columns, order checks, gather, tensor step, scatter, alert state machine); "
        "columns_step = Detector.score_columns on readings already in arrays (what a decoder "
        "that parses records into arrays pays); tensor_step = the chunked tensor math with "
        "gather and scatter only; flops count the LSTM and decoder multiply-adds; the "
        "ceiling is a float32 matmul timed in the same run on the same device.",
    }


def _time_tensor_step(
    det: Detector, table, n: int, f: int, device: torch.device, min_s: float
) -> float:
    rows = np.arange(n)
    x = np.random.default_rng(1).normal(size=(n, f)).astype(np.float32)
    no = np.zeros(n, dtype=bool)
    phase = np.zeros(n, dtype=np.int8)
    ts, dt = np.full(n, 1.767e9), np.full(n, 60.0)  # the seasons' inputs; the same each step

    def run(_: object) -> None:
        det.step_in_chunks(table, rows, x, no, phase, ts, dt)
        _sync(device)

    return _timeit(run, min_s)
