"""``streamlstm demo``: the whole live pipeline on one machine, on embedded defaults."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamlstm.commands.common import add_config_args, load_config, pick_device


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="start a local Kafka + Ray, simulate ICU patients, score live, summarise",
        description="One command for the whole pipeline: starts a local Apache Kafka broker "
        "(KRaft) and a local Ray, streams simulated vital signs of --streams patients with "
        "injected episodes (desaturation, tachycardia, spikes, sensor dropouts...) into Kafka, "
        "trains the first model on the first readings, runs the Ray partition workers that "
        "carry every patient's LSTM state, prints alerts as they open and resolve, and after "
        "--duration prints a summary against the injected truth and writes a PNG.",
        epilog="example: streamlstm demo --duration 120 --streams 100",
    )
    add_config_args(p)
    p.add_argument("--duration", type=float, default=150.0, help="seconds (default 150)")
    p.add_argument("--streams", type=int, default=200, help="patients (default 200)")
    p.add_argument(
        "--rate",
        type=float,
        default=4.0,
        help="readings per second per patient; each is one simulated minute",
    )
    p.add_argument("--workers", type=int, default=2, help="Ray worker actors (default 2)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--readings-per-record",
        type=int,
        default=1,
        metavar="N",
        help="readings of a patient per Kafka record: 1 = one each, N > 1 = batched records",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: Ray and Kafka load only when this command runs, not for --help
    from streamlstm.adapters.dev.demo import DemoOptions, run_demo

    out = Path(args.out).resolve()
    args.set = [
        f"checkpoint.dir={out / 'snapshots'}",
        f"retrain.registry={out / 'models'}",
        f"ray.workers={args.workers}",
        f"retrain.bootstrap_readings={args.streams * 100}",
        "checkpoint.interval_s=2",
        *args.set,
    ]
    config = load_config(args)
    opts = DemoOptions(
        out,
        args.streams,
        args.rate,
        args.duration,
        args.workers,
        args.seed,
        device=str(pick_device("auto")),
        per_record=args.readings_per_record,
    )
    summary = run_demo(config, opts)
    print(f"\n{reconciliation(summary)}")
    print("summary:")
    print(json.dumps(summary, indent=2))
    return 0 if summary["reconciled"] else 1


def reconciliation(s: dict) -> str:
    """One line: every reading produced is accounted for, and how long scoring took.
    Records (what Kafka counts) and readings (what the workers score) are compared apart:
    with --readings-per-record N a record holds N readings."""
    verdict = "every reading accounted for" if s["reconciled"] else "NOT reconciled"
    drain = (
        f"the workers reached the end offsets {s['drain_seconds']} s after the simulator "
        "had stopped and they had started"
        if s["drained_to_end_offsets"]
        else f"drain timed out with {s['records_behind']} records not taken"
    )
    outcomes = s["scored"] + s["warming"] + s["dlq"]
    return (
        f"{verdict}: produced {s['produced']} readings in {s['produced_records']} records; "
        f"records in the topic {s['in_topic']}, taken by the workers "
        f"{s['records_processed']}; readings scored {s['scored']} + warming {s['warming']} "
        f"+ DLQ {s['dlq']} = {outcomes}; {drain} (training {s['training_seconds']} s, "
        f"workers {s['worker_seconds']} s, {s['total_seconds']} s in all)"
    )
