"""The pump testbed suite of ``streamlstm quality``: SKAB's ``other`` runs, read in place.

The benchmark's protocol: one stream per run; the first ``PUMP_TRAIN`` readings of each run
are fault-free and train the model (and warm the calibration up); only the readings after
them are scored. The config is ``configs/sensors.yaml`` with only the feature list replaced
by the runs' columns: what a user deploys is what is scored, nothing tuned to these data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamlstm import config as config_mod
from streamlstm.config import Config
from streamlstm.datafiles import FileData, csv_columns, read_file
from streamlstm.evaluation.metrics import StreamEval, event_metrics, events_from_labels
from streamlstm.evaluation.pointwise import episode_coverage, pointwise_metrics, scored_part
from streamlstm.evaluation.quality import DETECTORS, EventsFor, SuiteRun, score_suite
from streamlstm.evaluation.quality_data import interleave
from streamlstm.evaluation.quality_report import (
    SUMMARY_HEADER,
    Row,
    pointwise_tables,
    summary_rows,
    table,
)

PUMP_TRAIN = 400  # readings per run before scoring starts (the benchmark's fault-free part)
NOT_FEATURES = ("datetime", "anomaly", "changepoint")  # time and label columns
CONFIG = "sensors.yaml"


@dataclass
class PumpRun:
    """The suite scored: all readings per detector, and the protocol's scored part of them."""

    suite: SuiteRun
    config: Config
    files: list[Path]
    scored: dict[str, list[StreamEval]]  # per detector, each run without its first PUMP_TRAIN


def pump_runs(folder: Path) -> list[Path]:
    """``other/<n>.csv`` in run order (numbered runs by number, then any other name)."""
    files = (folder / "other").glob("*.csv")
    return sorted(
        files,
        key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.stem),
    )


def pump_features(files: list[Path]) -> list[str]:
    """The runs' sensor columns; every run must have the same ones."""
    columns = [c for c in csv_columns(files[0]) if c not in NOT_FEATURES]
    for f in files[1:]:
        other = [c for c in csv_columns(f) if c not in NOT_FEATURES]
        if other != columns:
            raise ValueError(f"{f}: columns {other} differ from {files[0].name}'s {columns}")
    return columns


def pump_config(configs: Path, features: list[str], overrides: dict | None = None) -> Config:
    """``configs/sensors.yaml`` with only the first group's feature list replaced (and, to
    re-score a listed config change undone, its ``overrides``)."""
    return config_mod.load(configs / CONFIG, {"groups.0.features": features, **(overrides or {})})


def pump_data(config: Config, files: list[Path]) -> tuple[FileData, EventsFor]:
    """The runs as streams ``pump-<n>``, interleaved by position (as ``nab_series``)."""
    per_run = [(f"pump-{f.stem}", read_file(f, config)) for f in files]
    too_short = [name for name, d in per_run if len(d.readings) <= PUMP_TRAIN]
    if too_short:
        raise ValueError(f"pump runs with no reading after the first {PUMP_TRAIN}: {too_short}")
    data = interleave(per_run)

    def events_for(_stream: str, _ts: np.ndarray, offsets: list[int]):
        return events_from_labels([max(data.labels[i], 0) for i in offsets])

    return data, events_for


def run_pump(
    folder: Path, configs: Path, seed: int, overrides: dict | None = None, baselines: bool = True
) -> PumpRun:
    """Train on each run's first ``PUMP_TRAIN`` readings, score all three detectors (or the
    streaming one alone, without ``baselines``)."""
    files = pump_runs(folder)
    if not files:
        raise ValueError(f"{folder}: no other/*.csv runs")
    torch.manual_seed(seed)  # the same initial weights on every run of the report
    config = pump_config(configs, pump_features(files), overrides)
    data, events_for = pump_data(config, files)
    suite = score_suite(config, data, events_for, train_readings=PUMP_TRAIN, baselines=baselines)
    scored = {d: [scored_part(s, PUMP_TRAIN) for s in suite.evals(d)] for d in suite.by_detector}
    return PumpRun(suite, config, files, scored)


def per_run_rows(scored: dict[str, list[StreamEval]]) -> tuple[Row, list[Row]]:
    """Per run: its fault's length, then per detector the fault's coverage and the normal
    readings inside an alert, split as ``false_alarm_readings`` splits them; a last row sums
    the runs."""
    names = list(scored)
    header = ["run", "scored readings (fault)"]
    for n in names:
        header += [f"{n}: coverage", SPLIT_HEADER]
    rows = []
    totals = {n: np.zeros(3, dtype=np.int64) for n in names}
    scored_total = fault_total = 0
    for i, s in enumerate(scored[names[0]]):
        fault = sum(ev.end_idx - ev.start_idx + 1 for ev in s.events)
        scored_total, fault_total = scored_total + len(s.ts), fault_total + fault
        cells = [s.stream_id, f"{len(s.ts)} ({fault})"]
        for n in names:
            run = scored[n][i]
            shares = [c for _, c in episode_coverage(run)]
            cover = f"{100 * float(np.mean(shares)):.0f} %" if shares else "–"
            split = false_alarm_readings(run)
            totals[n] += split
            cells += [cover, _split_cell(split)]
        rows.append(cells)
    last = ["all", f"{scored_total} ({fault_total})"]
    for n in names:
        last += ["", _split_cell(totals[n])]
    return tuple(header), [*rows, last]


SPLIT_HEADER = "false-alarm readings (before the fault / in its alert after it / in later alerts)"


def _split_cell(split: tuple[int, int, int] | np.ndarray) -> str:
    before, outlasting, later = (int(x) for x in split)
    return f"{before + outlasting + later} ({before} / {outlasting} / {later})"


def false_alarm_readings(s: StreamEval) -> tuple[int, int, int]:
    """Normal readings inside an alert, in three parts: before the first fault's start (an
    alert on a normal the detector has not learnt); after it in an alert that was also open
    during a fault (the fault's alert outlasting it); after it in alerts that covered no
    fault reading (opened on the state the testbed was left in)."""
    normal = np.ones(len(s.ts), dtype=bool)
    for ev in s.events:
        normal[ev.start_idx : ev.end_idx + 1] = False
    start = min((ev.start_idx for ev in s.events), default=len(s.ts))
    false_alarm = s.in_alert & normal
    alert = _alert_numbers(s)
    covered = np.unique(alert[s.in_alert & ~normal])
    outlasting = false_alarm & np.isin(alert, covered)
    outlasting[:start] = False
    before = int(false_alarm[:start].sum())
    return before, int(outlasting.sum()), int(false_alarm[start:].sum()) - int(outlasting.sum())


def _alert_numbers(s: StreamEval) -> np.ndarray:
    """(T,) int: 1, 2, ... for the readings of each alert (one starts where an alert opens or
    the stream enters an alert), 0 outside alerts."""
    entered = s.in_alert & ~np.r_[False, s.in_alert[:-1]]
    return np.where(s.in_alert, np.cumsum(entered | (s.alert_open & s.in_alert)), 0)


CHANGE_HEADER = ["change to configs/sensors.yaml", "F1 before", "false-alarm rate before",
                 "episodes alerted before", "F1 after", "false-alarm rate after",
                 "episodes alerted after"]  # fmt: skip


def change_row(change: str, before: PumpRun, after: PumpRun) -> Row:
    """One listed config change: the streaming detector's point-wise F1, false-alarm rate
    and episodes with any alert, re-scored with the change undone (before) and as shipped."""
    cells = []
    for run in (before, after):
        r = pointwise_metrics(run.scored[DETECTORS[0]])
        cells += [
            f"{r.f1:.3f}",
            f"{100 * r.far:.1f} %",
            f"{r.coverage.alerted}/{r.coverage.episodes}",
        ]
    return [change, *cells]


def pump_section(
    run: PumpRun, folder: Path, tolerance: int, images: str, changes: list[Row] | None = None
) -> str:
    """The report's pump section: event-wise, point-wise and per-run tables, the listed
    config changes undone, plot links."""
    reports = {d: event_metrics(e, tolerance) for d, e in run.scored.items()}
    run_header, run_rows = per_run_rows(run.scored)
    features = ", ".join(f"`{f}`" for f in run.config.groups[0].features)
    return "\n\n".join(
        [
            f"## Pump testbed ({len(run.files)} runs)",
            f"SKAB's `other` runs from `{folder}` (GPL-3.0; read in place, never copied into "
            "this repository): one stream per run, one labelled fault episode each. Config "
            f"`configs/{CONFIG}` with only the feature list replaced by the runs' columns "
            f"({features}); nothing else tuned to these data. The benchmark's protocol: the "
            f"first {PUMP_TRAIN} readings of every run (fault-free) train one model group "
            "(shared weights) and warm the per-run calibration up; only the readings after "
            "them are scored, event-wise and point-wise. The protocol scores point-wise: an "
            "alert must stay open while the fault lasts.",
            table(SUMMARY_HEADER, summary_rows(reports, {})),
            *pointwise_tables(run.scored),
            "Per run (coverage of its fault; normal readings inside an alert):",
            table(run_header, run_rows),
            *_changes_part(changes),
            f"Plots (streaming LSTM-AE; the whole run, its first {PUMP_TRAIN} readings "
            "unscored; drawn by `make quality` on your machine and not committed, since "
            f"they render the GPL-3.0 data): {images}",
        ]
    )


def _changes_part(changes: list[Row] | None) -> list[str]:
    if not changes:
        return []
    return [
        "Each change made to the config while measuring this suite (listed in "
        "docs/config-changes.yaml), undone: the same run re-scored without it (streaming "
        "LSTM-AE, point-wise):",
        table(CHANGE_HEADER, changes),
    ]
