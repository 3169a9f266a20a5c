"""``streamlstm run``: the supervisor of the live pipeline (Kafka -> Ray workers -> alerts)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from streamlstm.commands.common import add_config_args, add_device_arg, load_config, pick_device
from streamlstm.train.checkpoint import load_model
from streamlstm.train.models import train_first_model

log = logging.getLogger("streamlstm.run")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run the live workers: Kafka input -> Ray actors with carried LSTM state -> alerts",
        description="Start (or join) Ray, create the PartitionWorker actors, assign them the "
        "input partitions and keep them running: each restores its partitions' snapshots, "
        "scores every reading with the stream's carried LSTM state, produces alert events "
        "and DLQ records, and every checkpoint.interval_s flushes, snapshots and commits. "
        "Without kafka.bootstrap (or $KAFKA_BOOTSTRAP) it uses the local broker of "
        "`streamlstm kafka up`. SIGINT/SIGTERM drain the workers (final snapshot and "
        "commit) and exit 0; 1 when a worker could not drain.",
        epilog="example: streamlstm run -c configs/vitals.yaml --model models/vitals",
    )
    add_config_args(p)
    p.add_argument(
        "--model",
        help="model set directory (default: config model_dir; else the promoted versions "
        "in retrain.registry; else a first model is trained from the input topics, "
        "registered and promoted)",
    )
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    add_device_arg(p)
    p.set_defaults(func=run)


def resolve_models(config, bootstrap: str, model_arg: str | None, device_name: str):
    """(model files, their registry or None) to serve: --model, model_dir, else the
    registry's promoted versions, else a cold-start model trained from the input topics
    (registered and promoted). Served from the registry, promotions hot-swap in."""
    # lazy: Ray and Kafka load only when this command runs, not for --help
    from streamlstm.adapters.kafka.topics import read_topic_readings
    from streamlstm.adapters.ray.workers import model_files
    from streamlstm.adapters.retrain.registry import ModelRegistry

    chosen = model_arg or config.model_dir
    if chosen:
        return model_files(chosen), None
    registry = ModelRegistry(config.retrain.registry)
    groups = [g.name for g in config.groups]
    if all(registry.current(g) for g in groups):
        log.info("serving the registry's promoted versions from %s", registry.root)
        return registry.current_files(groups), registry
    need = config.retrain.bootstrap_readings
    log.info("no model yet: collecting %d readings from the input topics to train one", need)
    readings = read_topic_readings(config, bootstrap, need, timeout_s=3600.0)
    with tempfile.TemporaryDirectory() as tmp:
        first = train_first_model(config, readings, Path(tmp), str(pick_device(device_name)))
        for group in groups:
            if (first / group / "model.json").exists() and not registry.current(group):
                model = load_model(first / group)
                metrics = json.loads((first / group / "metrics.json").read_text())
                registry.add(model, metrics, {"source": "kafka bootstrap", "trainer": "first"})
                registry.promote(group, model.version)
    return registry.current_files(groups), registry


def run(args: argparse.Namespace) -> int:
    # lazy: Ray and Kafka load only when this command runs, not for --help
    from streamlstm.adapters.devkafka.shared import kafka_bootstrap
    from streamlstm.adapters.kafka.topics import ensure_worker_topics
    from streamlstm.adapters.ray.supervise import StopFlag, supervise

    config = load_config(args)
    bootstrap, _ = kafka_bootstrap(config)
    ensure_worker_topics(config, bootstrap)
    stop = StopFlag()
    files, registry = resolve_models(config, bootstrap, args.model, args.device)

    def status(stats: list[dict]) -> None:
        total = {k: sum(s.get(k, 0) for s in stats) for k in ("records", "scored", "dlq", "alerts")}
        print(f"status: {json.dumps(total)}", file=sys.stderr)

    result = supervise(config, bootstrap, files, stop, args.duration, status, registry=registry)
    print(
        json.dumps(
            {
                "final": result["workers"],
                # workers removed by `streamlstm scale`; their partitions' outcome counts
                # moved with the snapshots to the workers in "final" (stream/ledger.py)
                "retired": result["retired"],
                "handoffs": result["handoffs"],
                "restarts": result["restarts"],
                "retrains": result["retrains"],
                "undrained": result["undrained"],
            }
        )
    )
    if result["undrained"]:
        # Their last records may be scored but not committed: a replay re-scores them (same
        # alert ids). Exit non-zero so an orchestrator or operator knows to look.
        log.error("workers %s did not drain: exiting 1", result["undrained"])
        return 1
    return 0
