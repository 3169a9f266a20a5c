"""``streamlstm replay``: score a file reading by reading through the live scoring path."""

from __future__ import annotations

import argparse
import time

from streamlstm.commands.common import (
    add_config_args,
    add_device_arg,
    add_threads_arg,
    load_config,
    pick_device,
    set_threads,
)
from streamlstm.evaluation.replay import score_file, write_scores
from streamlstm.evaluation.summary import feature_names, plot_rows, summarise


def add_parser(sub) -> None:
    p = sub.add_parser(
        "replay",
        help="score a file offline through the same streaming code path as the live worker",
        description="Replay a CSV/JSONL file in timestamp order through the streaming "
        "detector (carried LSTM state per stream, calibration, alert state machine) and write "
        "one row per reading. Without --model, trains on the first --train-fraction of each "
        "stream first. With a label column, prints event-wise detection metrics.",
        epilog="example: streamlstm replay -c configs/vitals.yaml --input vitals.csv "
        "--output scores.csv --plot scores.png",
    )
    add_config_args(p)
    p.add_argument("--input", required=True, help="CSV (timestamp, [stream], features, [label])")
    p.add_argument("--model", help="model directory from `streamlstm train`")
    p.add_argument("--output", required=True, help="scores CSV to write")
    p.add_argument(
        "--train-fraction",
        type=float,
        default=0.15,
        help="without --model: train on this first share of each stream",
    )
    p.add_argument("--plot", help="PNG of a few streams: readings, score, threshold, alerts")
    p.add_argument(
        "--tolerance",
        type=int,
        default=10,
        help="readings after an event in which an alert still counts (default 10)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_arg(p)
    add_threads_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    set_threads(args.threads)
    config = load_config(args)
    started = time.perf_counter()
    data, rows = score_file(
        config, args.input, args.model, args.train_fraction, pick_device(args.device), args.quiet
    )
    seconds = time.perf_counter() - started
    write_scores(args.output, rows, data)
    opened = sum(r.alert_event == "open" for r in rows)
    print(
        f"scored {len(rows)} readings of {len(data.by_stream())} streams in {seconds:.1f} s "
        f"(training included); {opened} alerts opened; "
        f"rejected {sum(data.rejected.values()) + len(data.readings) - len(rows)}; "
        f"wrote {args.output}"
    )
    features = feature_names(config, data)
    if data.labels:
        print(summarise(rows, data, args.tolerance, args.plot, features))
    elif args.plot:
        plot_rows(args.plot, rows, data, features)
        print(f"plot: {args.plot}")
    return 0
