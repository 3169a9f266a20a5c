"""``streamlstm bench``: measured speed, printed as JSON."""

from __future__ import annotations

import argparse
import json

from streamlstm.commands.common import (
    add_config_args,
    add_device_arg,
    add_threads_arg,
    load_config,
    pick_device,
    set_threads,
)
from streamlstm.evaluation.bench import bench_step


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks (JSON): batched step vs naive loop, GFLOP/s vs matmul ceiling",
        description="Benchmarks whose ratios are measured in one run on this machine.",
    )
    kinds = p.add_subparsers(dest="bench", metavar="BENCH")
    step = kinds.add_parser(
        "step",
        help="stream-steps/s of the batched detector vs stepping each stream alone",
        description="Times Detector.score on one reading for each of N streams (the batched "
        "step) against a loop calling it once per stream (the naive step) with the same model "
        "in the same run, counts the step's multiply-add FLOPs and compares its GFLOP/s with "
        "a float32 matrix multiply timed in the same run (the ceiling).",
    )
    add_config_args(step)
    add_device_arg(step)
    step.add_argument("--streams", type=int, default=10_000, help="streams per batch")
    step.add_argument(
        "--naive-streams",
        type=int,
        default=300,
        help="streams stepped one by one for the naive rate (default 300)",
    )
    step.add_argument("--seconds", type=float, default=2.0, help="minimum timing per variant")
    step.add_argument(
        "--rows-per-chunk",
        type=int,
        default=None,
        metavar="N",
        help="rows per tensor step (default: 2048 on a CPU; on a GPU 32 KiB of its memory "
        "per row, 65536 to 1048576)",
    )
    step.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the tensor step first (compiling takes a while; not timed)",
    )
    add_threads_arg(step)
    step.add_argument("--json", action="store_true", help="print JSON only")
    step.set_defaults(func=run_step)
    e2e = kinds.add_parser(
        "e2e",
        help="end-to-end readings/s through Kafka and Ray workers vs bare consume+decode",
        description="Against a real local broker (or $KAFKA_BOOTSTRAP), pre-loaded with "
        "--streams x --per-stream records: the bare kafka-python consume+JSON-decode rate "
        "(the ingest ceiling: fresh consumers' passes over the topic for at least 3 s), the "
        "end-to-end rate through --workers Ray workers, their ratio, and p50/p99 latency from "
        "broker append time to score at half and at a quarter of that load, with the CPU "
        "seconds the load generator itself used.",
    )
    add_config_args(e2e)
    e2e.add_argument("--streams", type=int, default=2000)
    e2e.add_argument("--per-stream", type=int, default=100)
    e2e.add_argument("--workers", type=int, default=2)
    e2e.add_argument("--latency-seconds", type=float, default=15.0)
    e2e.add_argument(
        "--readings-per-record",
        type=int,
        default=1,
        metavar="N",
        help="readings per input record: 1 = single-reading records, N > 1 = batched "
        "records of N readings of one stream (default 1)",
    )
    e2e.add_argument(
        "--profile",
        action="store_true",
        help="add the seconds each worker loop stage took (fetch, decode, group, step, "
        "alerts, produce, snapshot, commit) per reading and per poll, per phase, and the "
        "workers' garbage collections (count, full ones, longest pause)",
    )
    e2e.add_argument("--out", default="runs/bench")
    e2e.add_argument("--json", action="store_true", help="print JSON only")
    e2e.set_defaults(func=run_e2e)
    scale = kinds.add_parser(
        "scale",
        help="latency and record accounting across a live scale-out and scale-in",
        description="As e2e (real broker, Ray workers, latency from broker append time to "
        "score at half the end-to-end rate), with the worker count changed mid-load: "
        "--window-seconds steady on --before workers, the scale-out to --after (snapshot "
        "hand-off), steady on --after, the scale-in back; p50/p99 per window; then records "
        "in the topic against records the workers counted, and readings replayed.",
    )
    add_config_args(scale)
    scale.add_argument("--streams", type=int, default=2000)
    scale.add_argument("--per-stream", type=int, default=100)
    scale.add_argument("--before", type=int, default=2, help="workers before the scale-out")
    scale.add_argument("--after", type=int, default=3, help="workers after it")
    scale.add_argument("--window-seconds", type=float, default=10.0)
    scale.add_argument(
        "--load", type=float, default=0.5, help="offered load, as a fraction of the e2e rate"
    )
    scale.add_argument("--out", default="runs/bench")
    scale.add_argument("--json", action="store_true", help="print JSON only")
    scale.set_defaults(func=run_scale)
    mem = kinds.add_parser(
        "memory",
        help="resident bytes per idle stream in a worker's state table",
        description="Adds --streams streams to a detector's state table (one reading each) "
        "and reports the process's resident-memory growth per stream. With --churn N: N "
        "short-lived streams come and go (--per-stream readings 10 s apart, --arrivals-per-s "
        "starting per second) beside --steady long-lived ones, through a real worker loop "
        "that evicts streams idle for --ttl s of stream time every state.evict_check_s; "
        "reports active streams, state-table, snapshot and resident bytes before, halfway, "
        "at the end of the churn and after the TTL.",
    )
    add_config_args(mem)
    mem.add_argument("--streams", type=int, default=100_000)
    mem.add_argument(
        "--churn",
        type=int,
        metavar="N",
        help="instead: N short-lived streams come and go through a real worker loop with "
        "idle eviction; reports active streams and bytes before, during and after",
    )
    mem.add_argument("--steady", type=int, default=1_000, help="--churn: long-lived streams")
    mem.add_argument(
        "--per-stream", type=int, default=4, help="--churn: readings per short-lived stream"
    )
    mem.add_argument(
        "--arrivals-per-s",
        type=int,
        default=100,
        help="--churn: short-lived streams starting per second of stream time",
    )
    mem.add_argument(
        "--ttl", type=float, default=60.0, help="--churn: state.evict_idle_s (stream time)"
    )
    add_threads_arg(mem)
    mem.add_argument("--json", action="store_true", help="print JSON only")
    mem.set_defaults(func=run_memory)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _print(result: dict, as_json: bool) -> int:
    print(json.dumps(result) if as_json else json.dumps(result, indent=2))
    return 0


def run_e2e(args: argparse.Namespace) -> int:
    from pathlib import Path

    # lazy: Ray and Kafka load only when this command runs, not for --help
    from streamlstm.adapters.dev.bench_live import run_e2e_command

    result = run_e2e_command(
        load_config(args),
        args.streams,
        args.per_stream,
        args.workers,
        args.latency_seconds,
        Path(args.out),
        args.readings_per_record,
        args.profile,
    )
    return _print(result, args.json)


def run_scale(args: argparse.Namespace) -> int:
    from pathlib import Path

    # lazy: Ray and Kafka load only when this command runs, not for --help
    from streamlstm.adapters.dev.bench_scale import run_scale_command

    result = run_scale_command(
        load_config(args),
        args.streams,
        args.per_stream,
        args.before,
        args.after,
        args.window_seconds,
        Path(args.out),
        args.load,
    )
    return _print(result, args.json)


def run_memory(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    # lazy: Ray and Kafka load only when this command runs, not for --help
    from streamlstm.adapters.dev.bench_live import bench_memory

    if args.churn is not None:
        from streamlstm.adapters.dev.bench_churn import Churn, bench_churn

        plan = Churn(args.churn, args.steady, args.per_stream, 10, args.arrivals_per_s, args.ttl)
        return _print(bench_churn(load_config(args), plan), args.json)
    return _print(bench_memory(load_config(args), args.streams), args.json)


def run_step(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    config = load_config(args)
    result = bench_step(
        config,
        args.streams,
        pick_device(args.device),
        args.naive_streams,
        args.seconds,
        args.rows_per_chunk,
        args.compile,
    )
    return _print(result, args.json)
