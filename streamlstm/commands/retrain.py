"""``streamlstm retrain``: train candidates with Ray Train, gate them, record them in the
registry, and promote the ones that are no worse than the current version."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from streamlstm.commands.common import add_config_args, load_config
from streamlstm.config import Config
from streamlstm.datafiles import FileData, read_file, to_series
from streamlstm.records import format_ts

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
        "rejected one is marked rejected. Joins ray.address / $RAY_ADDRESS or starts a "
        "local Ray.",
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
    from streamlstm.adapters.registry import ModelRegistry
    from streamlstm.adapters.supervisor import init_ray

    config = load_config(args)
    if not 0.0 < args.holdout < 1.0:
        print("streamlstm retrain: --holdout must be between 0 and 1", file=sys.stderr)
        return 2
    if args.input:
        data, source = read_file(args.input, config), str(args.input)
    else:
        data, source = _from_topics(config)
    validation = read_file(args.validate_on, config) if args.validate_on else None
    registry = ModelRegistry(args.registry or config.retrain.registry)
    init_ray(config)
    results = {}
    for group in config.groups:
        results[group.name] = retrain_group(
            config, group.name, data, validation, args.holdout, source, registry
        )
    print(json.dumps(results, indent=2))
    return 0 if all(r["outcome"] != "failed" for r in results.values()) else 1


def retrain_group(
    config: Config,
    group: str,
    data: FileData,
    validation: FileData | None,
    holdout: float,
    source: str,
    registry,
) -> dict:
    from tqdm import tqdm

    from streamlstm.adapters.ray_train import train_group
    from streamlstm.checkpoint import load_model
    from streamlstm.gate import decide, gate_stats

    if validation is None:
        train_idx, held_idx = _split(data, group, holdout)
        held_data = data
    else:
        train_idx, _ = _split(data, group, 0.0)
        _, held_idx = _split(validation, group, 1.0)
        held_data = validation
    n_train = sum(len(v) for v in train_idx.values())
    if n_train < config.retrain.min_readings:
        log.warning(
            "retrain %s: skipped, %d training readings < retrain.min_readings %d",
            group,
            n_train,
            config.retrain.min_readings,
        )
        return {"outcome": "skipped", "training_readings": n_train}
    bar = tqdm(total=config.training.epochs, desc=f"retrain {group}", unit="epoch", file=sys.stderr)

    def on_epoch(epoch: int, loss: float) -> None:
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)

    with tempfile.TemporaryDirectory() as tmp:
        try:
            outcome = train_group(
                config, group, to_series(data, train_idx), Path(tmp), Path(tmp) / "ray", on_epoch
            )
        except Exception as exc:  # a failed run is reported; the current version stays
            bar.close()
            log.error("retrain %s: training failed: %s", group, exc)
            return {"outcome": "failed", "error": str(exc)[:500]}
        bar.close()
        candidate = load_model(outcome.model_dir)
        metrics = json.loads((outcome.model_dir / "metrics.json").read_text())
    held = to_series(held_data, held_idx)
    cand_stats = gate_stats(candidate, held, config.detector, config.alerts)
    current = registry.current(group)
    cur_stats = (
        gate_stats(registry.load(group), held, config.detector, config.alerts) if current else None
    )
    decision = decide(cand_stats, cur_stats, config.retrain.gate_margin)
    used = [data.readings[i].ts for rows in train_idx.values() for i in rows]
    registry.add(
        candidate,
        metrics,
        {
            "source": source,
            "data_range": [format_ts(min(used)), format_ts(max(used))],
            "training_readings": n_train,
            "trainer": {
                "kind": "ray-train",
                "workers": config.retrain.workers,
                "use_gpu": config.retrain.use_gpu,
                "wall_s": round(outcome.wall_s, 2),
                "to_first_epoch_s": outcome.first_report_s and round(outcome.first_report_s, 2),
            },
            "validation": decision.to_dict(),
        },
    )
    if decision.promote:
        registry.promote(group, candidate.version)
    else:
        registry.set_status(group, candidate.version, "rejected")
    return {
        "outcome": "promoted" if decision.promote else "rejected",
        "version": candidate.version,
        "previous": current,
        "reasons": decision.reasons,
        "validation": decision.to_dict(),
        "train_wall_s": round(outcome.wall_s, 2),
    }


def _from_topics(config: Config) -> tuple[FileData, str]:
    from streamlstm.adapters.retrain_data import topic_training_data
    from streamlstm.adapters.runtime import kafka_bootstrap

    bootstrap, _ = kafka_bootstrap(config)
    readings, counts = topic_training_data(config, bootstrap)
    log.info(
        "retrain data: %d readings from %s over the last %.0f s, %d of them dropped inside "
        "%d alert episodes",
        counts["read"],
        ",".join(config.kafka.input_topics),
        config.retrain.lookback_s,
        counts["dropped_in_episodes"],
        counts["episodes"],
    )
    source = (
        f"kafka:{','.join(config.kafka.input_topics)} lookback {config.retrain.lookback_s:.0f} s"
    )
    return FileData(readings), source


def _split(data: FileData, group: str, holdout: float):
    train, held = {}, {}
    for stream, rows in data.by_stream().items():
        if data.readings[rows[0]].group != group:
            continue
        cut = round(len(rows) * (1.0 - holdout))
        train[stream], held[stream] = rows[:cut], rows[cut:]
    return train, held
