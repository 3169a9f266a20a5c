"""``streamlstm retrain``: train candidates with Ray Train, gate them, record them in the
registry, and promote the ones that are no worse than the current version."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from streamlstm.commands.common import add_config_args, load_config
from streamlstm.datafiles import read_file

log = logging.getLogger("streamlstm.retrain")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "retrain",
        help="train, validate and register new model versions (Ray Train)",
        description="For each model group: split each stream of --input by time into "
        "training data and a held-out recent part, train a candidate with Ray Train "
        "(retrain.workers workers, GPUs if retrain.use_gpu), replay the held-out part "
        "through the candidate and the current version, and promote the candidate only if "
        "its reconstruction error and its alert rate on that normal data are no worse by "
        "retrain.gate_margin. Every candidate is kept in the registry with its numbers; a "
        "rejected one is marked rejected. A group pinned by `models rollback` or `models pin` "
        "keeps its version: a passing candidate is held (outcome held). Data and settings "
        "already trained on give outcome skipped, without training. First removes the Ray "
        "Train run folders that killed retrains left, older than retrain.timeout_s. Joins "
        "ray.address / $RAY_ADDRESS or starts a local Ray.",
        epilog="example: streamlstm retrain -c configs/vitals.yaml --input vitals.csv; "
        "then streamlstm models list -c configs/vitals.yaml",
    )
    add_config_args(p)
    p.add_argument(
        "--input",
        help="CSV (timestamp, [stream], features) or JSONL; without it the input topics "
        "over retrain.lookback_s, minus readings inside alert episodes",
    )
    p.add_argument("--registry", help="registry directory (default: retrain.registry)")
    p.add_argument(
        "--validate-on",
        metavar="FILE",
        help="recent normal readings for the gate; then all of --input is training data",
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=0.2,
        help="share of each stream, at its end, held out for the gate (default 0.2)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: Ray and Kafka load only when this command runs, not for --help
    from streamlstm.adapters.ray.supervisor import init_ray
    from streamlstm.adapters.retrain.registry import ModelRegistry
    from streamlstm.adapters.retrain.round import (
        RUN_PREFIX,
        RetrainData,
        from_topics,
        retrain_all,
        sweep_killed_runs,
    )

    config = load_config(args)
    if not 0.0 < args.holdout < 1.0:
        print("streamlstm retrain: --holdout must be between 0 and 1", file=sys.stderr)
        return 2
    registry = ModelRegistry(args.registry or config.retrain.registry)
    # A retrain killed mid-way (Ctrl-C, SIGKILL, a lost pod) leaves its Ray Train run folder
    # in the registry's run storage. retrain.timeout_s bounds a scheduled round, not this
    # command: a run here still going after that long when another retrain starts loses its
    # folder and fails (its group keeps its version).
    sweep_killed_runs(registry, RUN_PREFIX, config.retrain.timeout_s)
    if args.input:
        data, source = read_file(args.input, config), str(args.input)
    else:
        data, source = from_topics(config)
    validation = read_file(args.validate_on, config) if args.validate_on else None
    init_ray(config)
    inputs = RetrainData(data, source, validation, args.holdout)
    results = retrain_all(config, inputs, registry)
    print(json.dumps(results, indent=2))
    return 0 if all(r["outcome"] != "failed" for r in results.values()) else 1
