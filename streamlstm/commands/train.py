"""``streamlstm train``: fit a model per group from a file, in-process, with progress."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from streamlstm.commands.common import add_config_args, add_device_arg, load_config, pick_device
from streamlstm.datafiles import read_file
from streamlstm.records import format_ts
from streamlstm.train.checkpoint import save_model
from streamlstm.train.models import train_models


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model per group from a CSV/JSONL file",
        description="Train the LSTM autoencoder of each model group on a file (stateful "
        "truncated BPTT over each stream) and write a self-describing model directory "
        "(model.json, weights.safetensors, prior.json, metrics.json per group).",
        epilog="example: streamlstm train -c configs/vitals.yaml --input vitals.csv "
        "--out models/vitals",
    )
    add_config_args(p)
    p.add_argument("--input", required=True, help="CSV (timestamp, [stream], features) or JSONL")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        help="use the first fraction of each stream (default 1.0)",
    )
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    data = read_file(args.input, config)
    if not data.readings:
        print(f"streamlstm train: no usable readings in {args.input} (rejected: {data.rejected})")
        return 1
    started = time.perf_counter()
    models, metrics = train_models(config, data, args.train_fraction, pick_device(args.device))
    for group, model in models.items():
        used = [r.ts for r in data.readings if r.group == group]
        info = {
            "created": format_ts(time.time()),
            "source": str(args.input),
            "data_range": [format_ts(min(used)), format_ts(max(used))],
        }
        path = save_model(Path(args.out) / group, model, metrics[group], info)
        loss = metrics[group]["train_loss"]
        print(
            f"{group}: version {model.version}, {metrics[group]['readings']} readings, "
            f"{metrics[group]['streams']} streams, loss {loss[0]:.4f} -> {loss[-1]:.4f}, "
            f"written to {path}"
        )
    print(
        json.dumps({"seconds": round(time.perf_counter() - started, 2), "rejected": data.rejected})
    )
    return 0
