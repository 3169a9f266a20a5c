"""``streamlstm bench``: measured speed, printed as JSON."""

from __future__ import annotations

import argparse
import json

from streamlstm.commands.common import add_config_args, add_device_arg, load_config, pick_device


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
    step.add_argument("--json", action="store_true", help="print JSON only")
    step.set_defaults(func=run_step)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_step(args: argparse.Namespace) -> int:
    from streamlstm.bench import bench_step

    config = load_config(args)
    result = bench_step(
        config, args.streams, pick_device(args.device), args.naive_streams, args.seconds
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0
