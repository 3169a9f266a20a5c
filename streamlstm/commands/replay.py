"""``streamlstm replay``: score a file reading by reading through the live scoring path."""

from __future__ import annotations

import argparse
import time

from streamlstm.commands.common import (
    add_config_args,
    add_device_arg,
    add_threads_arg,
    add_tolerance_arg,
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
        description="Replay a CSV/JSONL file in its row order through the streaming "
        "detector (carried LSTM state per stream, calibration, alert state machine) and write "
        "one row per input row, in input order: `row` is the input's data row (0 = the first "
        "after the header); a row that was not scored (a repeated or out-of-order timestamp, "
        "an unusable value: what the live worker would send to the DLQ) has no score and its "
        "reason in the `rejected` column. Without --model, trains on the first "
        "--train-fraction (or --train-rows) of each stream first. With a label column, "
        "prints event-wise detection metrics.",
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
        help="without --model: train on this first share of each stream (default 0.15)",
    )
    p.add_argument(
        "--train-rows",
        type=int,
        metavar="N",
        help="without --model: train on the first N readings of each stream instead",
    )
    p.add_argument("--plot", help="PNG of a few streams: readings, score, threshold, alerts")
    add_tolerance_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_arg(p)
    add_threads_arg(p)
    p.set_defaults(func=run)


def check_train_rows(train_rows: int | None) -> None:
    if train_rows is not None and train_rows < 1:
        raise SystemExit(f"streamlstm: --train-rows must be >= 1 (got {train_rows})")


def run(args: argparse.Namespace) -> int:

    set_threads(args.threads)
    config = load_config(args)
    check_train_rows(args.train_rows)
    started = time.perf_counter()
    device = pick_device(args.device)
    data, rows, refused = score_file(
        config, args.input, args.model, args.train_fraction, device, args.quiet, args.train_rows
    )
    seconds = time.perf_counter() - started
    write_scores(args.output, rows, data, refused)
    opened = sum(r.alert_event == "open" for r in rows)
    sensor = sum(r.alert_event == "open" and r.alert_kind == "signal_quality" for r in rows)
    reasons = dict(data.rejected)
    for _, rejection in refused:
        reasons[rejection.reason] = reasons.get(rejection.reason, 0) + 1
    print(
        f"scored {len(rows)} readings of {len(data.by_stream())} streams in {seconds:.1f} s "
        f"(training included); {opened} alerts opened ({sensor} on a stuck or missing "
        "sensor); "
        f"rejected {sum(reasons.values())} {reasons or ''}(rows kept, marked); "
        f"wrote {args.output}"
    )
    features = feature_names(config, data)
    if data.labels:
        print(summarise(rows, data, args.tolerance, args.plot, features))
    elif args.plot:
        plot_rows(args.plot, rows, data, features)
        print(f"plot: {args.plot}")
    return 0
