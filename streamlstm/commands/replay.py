"""``streamlstm replay``: score a file reading by reading through the live scoring path."""

from __future__ import annotations

import argparse
import csv
import sys
import time

import torch

from streamlstm.checkpoint import load_model_set
from streamlstm.commands.common import (
    add_config_args,
    add_device_arg,
    ensure_parent,
    load_config,
    pick_device,
    train_models,
)
from streamlstm.config import Config
from streamlstm.datafiles import FileData, read_file
from streamlstm.pipeline import Engine, ReplayRow, replay
from streamlstm.records import format_ts

COLUMNS = [
    "stream",
    "ts",
    "score",
    "threshold",
    "is_anomaly",
    "alert_event",
    "alert_id",
    "top_feature",
    "warming",
    "error",
]


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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamlstm.commands.evaluate import feature_names, plot_rows, summarise

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


def score_file(
    config: Config,
    path: str,
    model_dir: str | None,
    train_fraction: float,
    device: torch.device,
    quiet: bool = False,
) -> tuple[FileData, list[ReplayRow]]:
    """Read, (train,) and replay a file through the streaming path."""
    data = read_usable(path, config)
    engine = engine_for(config, data, model_dir, train_fraction, device, quiet)
    with replay_bar(len(data.readings), quiet) as bar:
        rows, _ = replay(engine, data.readings, on_batch=bar.update)
    return data, rows


def read_usable(path: str, config: Config) -> FileData:
    """The file's readings; a file without one usable reading is an error that says why."""
    data = read_file(path, config)
    if not data.readings:
        raise SystemExit(f"streamlstm: no usable readings in {path} (rejected: {data.rejected})")
    return data


def engine_for(
    config: Config,
    data: FileData,
    model_dir: str | None,
    train_fraction: float,
    device: torch.device,
    quiet: bool = False,
) -> Engine:
    """An engine with the models of ``model_dir``, or trained on the first
    ``train_fraction`` of ``data``."""
    if model_dir:
        models = load_model_set(model_dir)
    else:
        models = train_models(config, data, train_fraction, device, quiet)[0]
    return Engine.build(config, models, device)


def replay_bar(total: int, quiet: bool):
    """The progress bar of a file replay (on stderr, so stdout stays the report)."""
    from tqdm import tqdm

    return tqdm(total=total, desc="replay", unit="reading", disable=quiet, file=sys.stderr)


def write_scores(path: str, rows: list[ReplayRow], data: FileData) -> None:
    labelled = bool(data.labels)
    with ensure_parent(path).open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(COLUMNS + (["label", "anomaly_kind"] if labelled else []))
        for r in rows:
            line = [
                r.stream,
                format_ts(r.ts),
                f"{r.score:.4f}",
                r.threshold,
                int(r.is_anomaly),
                r.alert_event,
                r.alert_id,
                r.top_feature,
                int(r.warming),
                f"{r.rms_error:.5f}",
            ]
            if labelled:
                line += [data.labels[r.offset], data.kinds[r.offset]]
            out.writerow(line)
