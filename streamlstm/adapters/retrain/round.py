"""One retrain round: per model group, train a candidate with Ray Train, gate it against the
current version on recent normal data, record it in the registry, promote it if no worse.

Used by ``streamlstm retrain`` (files or topics, on demand) and by the supervisor's
schedule (topics, every ``retrain.interval_s``; see ``retrain_schedule``); a promotion reaches
running workers as a hot-swap through the registry.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from streamlstm.adapters.devkafka.shared import kafka_bootstrap
from streamlstm.adapters.retrain.data import topic_training_data
from streamlstm.adapters.retrain.ray_train import train_group
from streamlstm.config import Config
from streamlstm.datafiles import FileData, to_series
from streamlstm.records import format_ts
from streamlstm.train.checkpoint import load_model
from streamlstm.train.gate import decide, gate_stats
from streamlstm.train.rounds import (
    carry_out,
    skip_before_training,
    skip_nothing_newer,
    skip_reproduced,
    training_digest,
)
from streamlstm.train.select import HOLDOUT, split_held_out

log = logging.getLogger("streamlstm.retrain")
RUN_PREFIX = "train"  # Ray Train run names of `streamlstm retrain` (the schedule: "scheduled")


@dataclass(frozen=True)
class RetrainData:
    data: FileData  # training readings
    source: str  # where they came from, recorded in the registry
    validation: FileData | None = None  # recent normal readings for the gate; None: the tail
    holdout: float = HOLDOUT  # share of each stream's end held out when ``validation`` is None
    by: str = "streamlstm retrain"  # who promotes, recorded in the registry
    run_prefix: str = RUN_PREFIX  # Ray Train run names: <prefix>-<group>-<epoch s>-<id>
    # Skip when no reading is newer than the current version's newest (scheduled rounds on
    # the topics; a file given by hand may hold other data over the same times).
    only_newer: bool = False


def sweep_killed_runs(registry, prefix: str, max_age_s: float) -> list[str]:
    """Remove the Ray Train run folders that rounds named ``prefix`` left when killed (a run
    that finishes removes its own), logging what went; returns their names."""
    swept = registry.sweep_train_runs(prefix, max_age_s)
    if swept:
        log.warning("retrain: removed the Train run folders of killed rounds: %s", swept)
    return swept


def retrain_all(
    config: Config, inputs: RetrainData, registry, progress: bool = True
) -> dict[str, dict]:
    return {
        group.name: retrain_group(config, group.name, inputs, registry, progress)
        for group in config.groups
    }


def retrain_group(
    config: Config, group: str, inputs: RetrainData, registry, progress: bool = True
) -> dict:
    """Train, gate, record and (if no worse) promote one group's candidate."""
    data, validation = inputs.data, inputs.validation
    if validation is None:
        train_idx, held_idx = split_held_out(data, group, inputs.holdout)
        held = to_series(data, held_idx)
    else:
        train_idx, _ = split_held_out(data, group, 0.0)
        held = to_series(validation, split_held_out(validation, group, 1.0)[1])
    n_train = sum(len(v) for v in train_idx.values())
    if n_train < config.retrain.min_readings:
        reason = f"{n_train} training readings < retrain.min_readings {config.retrain.min_readings}"
        log.warning("retrain %s: skipped, %s", group, reason)
        return {"outcome": "skipped", "reasons": [reason], "training_readings": n_train}
    series = to_series(data, train_idx)
    digest = training_digest(series, training_settings(config, group))
    streams = data.by_stream()
    newest = max(data.readings[streams[name][-1]].ts for name in train_idx)
    unchanged = skip_before_training(digest, registry.entries(group))
    if unchanged is None and inputs.only_newer and registry.current(group):
        unchanged = skip_nothing_newer(newest, registry.entry(group, registry.current(group)))
    if unchanged is not None:
        log.warning("retrain %s: skipped, %s", group, "; ".join(unchanged.reasons))
        return {"outcome": "skipped", "reasons": unchanged.reasons, "training_readings": n_train}
    try:
        candidate, metrics, outcome = _train_candidate(
            config, group, series, progress, registry.train_storage(), inputs.run_prefix
        )
    except Exception as exc:  # a failed run is reported; the current version stays
        log.error("retrain %s: training failed: %s", group, exc)
        return {"outcome": "failed", "error": str(exc)[:500]}
    used = [data.readings[i].ts for rows in train_idx.values() for i in rows]
    trainer = {
        "kind": "ray-train",
        "workers": config.retrain.workers,
        "use_gpu": config.retrain.use_gpu,
        "wall_s": round(outcome.wall_s, 2),
        "to_first_epoch_s": outcome.first_report_s and round(outcome.first_report_s, 2),
    }
    entry = {
        "source": inputs.source,
        "data_range": [format_ts(min(used)), format_ts(max(used))],
        "data_digest": digest,
        "newest_reading_at": newest,
        "training_readings": n_train,
        "trainer": trainer,
    }
    result = record_candidate(config, candidate, metrics, entry, held, registry, inputs.by)
    return result | {"train_wall_s": trainer["wall_s"]}


def training_settings(config: Config, group: str) -> dict:
    """Every setting that shapes a group's trained weights (for ``training_digest``)."""
    return {
        "group": config.group(group).model_dump(mode="json"),
        "training": config.training.model_dump(mode="json"),
        "detector": config.detector.model_dump(mode="json"),
        "workers": config.retrain.workers,
    }


def _train_candidate(
    config: Config, group: str, series, progress: bool, storage: Path | str, run_prefix: str
):
    """Ray Train with a progress bar; returns (model, metrics, TrainOutcome).

    Ray Train's run storage is beside the registry (``storage``): where the registry is
    shared, as it must be on a cluster, so is the storage every Train worker writes to."""
    from tqdm import tqdm

    bar = tqdm(
        total=config.training.epochs,
        desc=f"retrain {group}",
        unit="epoch",
        file=sys.stderr,
        disable=not progress,
    )

    def on_epoch(epoch: int, loss: float) -> None:
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)

    try:
        with tempfile.TemporaryDirectory() as tmp:
            outcome = train_group(config, group, series, Path(tmp), storage, on_epoch, run_prefix)
            candidate = load_model(outcome.model_dir)
            metrics = json.loads((outcome.model_dir / "metrics.json").read_text())
    finally:
        bar.close()
    return candidate, metrics, outcome


def record_candidate(config: Config, candidate, metrics, entry, held, registry, by: str) -> dict:
    """The gate's decision on held-out normal data, recorded and carried out."""

    group, version = candidate.group, candidate.version
    current = registry.current(group)
    known = registry.status_of(group, version)
    reproduced = skip_reproduced(version, known, current)
    if reproduced is not None:
        log.warning("retrain %s: skipped, %s", group, "; ".join(reproduced.reasons))
        return {"outcome": "skipped", "version": version, "reasons": reproduced.reasons}
    cand_stats = gate_stats(candidate, held, config.detector, config.alerts)
    cur_stats = (
        gate_stats(registry.load(group), held, config.detector, config.alerts) if current else None
    )
    decision = decide(cand_stats, cur_stats, config.retrain.gate_margin)
    registry.add(candidate, metrics, {**entry, "validation": decision.to_dict()})
    pin = registry.control.pinned(group)  # read last: a rollback during the gate counts
    result = carry_out(decision, pin and pin["version"])
    if result.outcome == "promoted":
        # A round never releases an operator's pin, and yields to one that lands while it
        # promotes (``registry._back_to_pin``): then the candidate is held after all.
        promoted = registry.promote(group, version, by, release_pin=False)
        if promoted["status"] != "promoted":
            result = carry_out(decision, promoted["held_by_pin"]["version"])
    elif result.outcome == "held":
        registry.hold(group, version, pin, by)
    else:
        registry.set_status(group, version, "rejected", by)
    return {
        "outcome": result.outcome,
        "version": version,
        "previous": current,
        "reasons": result.reasons,
        "validation": decision.to_dict(),
    }


def from_topics(config: Config, bootstrap: str | None = None) -> tuple[FileData, str]:

    if bootstrap is None:
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
