"""The normal-only check of ``streamlstm quality``: streams with no anomaly at all, so every
alert that opens is a false alarm.

  * the synthetic suites' streams generated again with the same seed and no anomaly
    (``simulate.generate(anomaly_rate=0)``: the identical normal data), the suite's config
    and protocol (training on the first 15 % of each stream, every reading scored);
  * the pump testbed's fault-free run (``anomaly-free.csv`` beside ``other/``, read in place)
    with the pump suite's config and protocol (its first ``PUMP_TRAIN`` readings train, the
    rest are scored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from streamlstm import config as config_mod
from streamlstm.datafiles import csv_columns, read_file
from streamlstm.evaluation.metrics import StreamEval, event_metrics
from streamlstm.evaluation.pointwise import scored_part
from streamlstm.evaluation.quality import DETECTORS, score_suite
from streamlstm.evaluation.quality_data import synthetic
from streamlstm.evaluation.quality_pump import (
    NOT_FEATURES,
    PUMP_TRAIN,
    pump_config,
    pump_features,
    pump_runs,
)
from streamlstm.evaluation.quality_report import Row, table

FAULT_FREE = "anomaly-free.csv"  # the pump testbed's run without faults

NORMAL_HEADER = (
    "data (no anomaly)",
    "streams",
    "scored readings",
    "stream-days",
    "alerts opened",
    "false alarms / stream-day",
    "readings inside an alert",
    "streams with any alert",
)


def synthetic_normal(
    configs: Path, kind: str, streams: int, length: int, seed: int
) -> list[StreamEval]:
    """The synthetic suite's streams without anomalies, scored by the streaming detector."""
    torch.manual_seed(seed)
    config = config_mod.load(Path(configs) / f"{kind}.yaml", {})
    data, events_for = synthetic(config, kind, streams, length, seed, anomaly_rate=0.0)
    return score_suite(config, data, events_for, baselines=False).evals(DETECTORS[0])


def pump_fault_free(folder: Path, configs: Path, seed: int) -> list[StreamEval] | None:
    """The pump testbed's fault-free run after its first ``PUMP_TRAIN`` readings; None when
    the folder has no such run."""
    path = Path(folder) / FAULT_FREE
    if not path.is_file():
        return None
    runs = pump_runs(Path(folder))
    features = (
        pump_features(runs) if runs else [c for c in csv_columns(path) if c not in NOT_FEATURES]
    )
    torch.manual_seed(seed)
    config = pump_config(Path(configs), features)
    data = read_file(path, config)
    if len(data.readings) <= PUMP_TRAIN:
        raise ValueError(f"{path}: no reading after the first {PUMP_TRAIN}")
    run = score_suite(config, data, lambda *_: [], baselines=False, train_readings=PUMP_TRAIN)
    return [scored_part(s, PUMP_TRAIN) for s in run.evals(DETECTORS[0])]


def normal_row(name: str, evals: list[StreamEval]) -> Row:
    """One line of the normal-only table: every opening is a false alarm."""
    for s in evals:
        if s.events:
            raise ValueError(f"{name}: stream {s.stream_id} has labelled events")
    r = event_metrics(evals)
    readings = sum(len(s.ts) for s in evals)
    inside = sum(int(np.sum(s.in_alert)) for s in evals)
    alerted = sum(bool(np.any(s.alert_open)) for s in evals)
    fa = "–" if r.fa_per_stream_day is None else f"**{r.fa_per_stream_day:.2f}**"
    share = f"{100 * inside / readings:.2f} %" if readings else "–"
    return [
        name,
        str(len(evals)),
        str(readings),
        f"{r.stream_days:.2f}",
        str(r.fp),
        fa,
        share,
        f"{alerted}/{len(evals)}",
    ]


def normal_section(rows: list[Row]) -> str:
    return "\n\n".join(
        [
            "## Normal-only check",
            "Streams without any anomaly, so every alert opening is a false alarm (streaming "
            "LSTM-AE, each suite's config and protocol): the synthetic suites' streams "
            "generated again with the same seed and no anomaly (the identical normal data), "
            "and the pump testbed's fault-free run (read in place; its first "
            f"{PUMP_TRAIN} readings train, the rest are scored). False alarms per stream-day "
            "extrapolate a run shorter than a day to a day.",
            table(NORMAL_HEADER, rows),
        ]
    )
