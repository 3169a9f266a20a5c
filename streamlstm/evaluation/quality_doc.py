"""The detection quality report (docs/quality.md) and its plots in one deterministic run:
synthetic vitals and sensors suites with their shipped configs and every NAB series with
configs/univariate.yaml, each scored by the streaming LSTM-AE and the two baselines through
the same harness; each change listed in docs/config-changes.yaml re-scored undone."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from streamlstm import config as config_mod
from streamlstm.evaluation.metrics import event_metrics
from streamlstm.evaluation.nab import NabSeries, nab_report
from streamlstm.evaluation.quality import DETECTORS, RETRAINED, SuiteRun, score_suite
from streamlstm.evaluation.quality_data import synthetic
from streamlstm.evaluation.quality_nab import (
    load_candidates,
    load_nab,
    nab_config,
    nab_files,
    score_nab,
    undo_name,
)
from streamlstm.evaluation.quality_nab_report import nab_section
from streamlstm.evaluation.quality_normal import (
    normal_row,
    normal_section,
    pump_fault_free,
    synthetic_normal,
)
from streamlstm.evaluation.quality_plots import plot_one, plot_suite
from streamlstm.evaluation.quality_pump import change_row, pump_runs, pump_section, run_pump
from streamlstm.evaluation.quality_report import (
    SUMMARY_HEADER,
    per_kind_rows,
    pointwise_tables,
    summary_rows,
    table,
)
from streamlstm.evaluation.quality_seeds import (
    SeedRow,
    nab_rows,
    pump_rows,
    seeds_section,
    synthetic_rows,
)
from streamlstm.evaluation.retrain_replay import format_rounds

SUITES = ("vitals", "sensors", "nab", "pump")  # report order; ``--suites`` picks a subset


@dataclass(frozen=True)
class QualityOptions:
    """What ``streamlstm quality`` was asked for (its command-line options)."""

    out: Path
    configs: Path
    nab: Path
    changes: Path
    streams: int = 40
    length: int = 2000
    seed: int = 7
    tolerance: int = 10
    retrain_every_per_stream: int = 500
    pump: Path = Path("../shared/datasets/pump-dev")
    suites: tuple[str, ...] = SUITES
    candidates: Path = Path("docs/loco-candidates.yaml")


def load_changes(path: Path) -> dict[str, list[tuple[str, dict]]]:
    """suite -> [(what changed, overrides that undo it)]; no file: no change rows."""
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    return {suite: [(c["change"], c["undo"] or {}) for c in items] for suite, items in raw.items()}


def write_report(opts: QualityOptions, say: Callable[[str], None]) -> None:
    """Score the chosen suites, write the markdown report and its plots; ``say`` gets
    progress. A suite whose data folder holds nothing is skipped with a message."""
    changes_by_suite = load_changes(opts.changes)
    started = time.perf_counter()
    out = Path(opts.out)
    plots = out.parent / out.stem
    sections, changes, normal, seeds = [], [], [], []
    for kind in [k for k in ("vitals", "sensors") if k in opts.suites]:
        clean = synthetic_normal(opts.configs, kind, opts.streams, opts.length, opts.seed)
        normal.append(normal_row(f"synthetic {kind} (same streams, no anomaly)", clean))
        suite, config = _suite(opts, kind, {})
        names = list(config.groups[0].features)
        png = plot_suite(suite, plots / f"{kind}.png", config.alerts.enter, kind, names)
        sections.append(_synthetic_section(kind, opts, suite, png, out.parent))
        changes += _changes(opts, kind, suite, changes_by_suite)
        seeds += synthetic_rows(kind, suite, _rescorer(opts, kind), opts.tolerance)
        say(f"{kind}: done at {time.perf_counter() - started:.0f} s")
    if "nab" in opts.suites and not nab_files(Path(opts.nab)):
        say(f"nab: no series under {opts.nab}/data, section skipped")
    elif "nab" in opts.suites:
        section, rows, seed_rows = _nab(opts, changes_by_suite.get("nab", []), plots, say)
        sections.append(section)
        changes += rows
        seeds += seed_rows
        say(f"nab: done at {time.perf_counter() - started:.0f} s")
    if "pump" in opts.suites and not pump_runs(Path(opts.pump)):
        say(f"pump: no runs under {opts.pump}/other, section skipped")
    elif "pump" in opts.suites:
        section, seed_rows = _pump(opts, plots, changes_by_suite.get("pump", []))
        sections.append(section)
        fault_free = pump_fault_free(Path(opts.pump), Path(opts.configs), opts.seed)
        if fault_free is not None:
            normal.append(normal_row("pump testbed, fault-free run", fault_free))
        seeds += seed_rows
        say(f"pump: done at {time.perf_counter() - started:.0f} s")
    if normal:
        sections.append(normal_section(normal))
    if seeds:
        sections.append(seeds_section(seeds))
    if changes:
        sections.append(_changes_section(changes))
    seconds = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_document(opts, sections, seconds))
    say(f"wrote {out} and {plots}/ in {seconds:.0f} s")


def _pump(opts: QualityOptions, plots: Path, listed: list) -> tuple[str, list[SeedRow]]:
    """The pump section and the suite's training-seed rows."""
    root = Path(opts.out).parent
    run = run_pump(Path(opts.pump), Path(opts.configs), opts.seed)
    changes = [
        change_row(what, run_pump(Path(opts.pump), Path(opts.configs), opts.seed, undo, False), run)
        for what, undo in listed
    ]
    names = list(run.config.groups[0].features)
    pngs = [
        plot_one(t, plots / f"{t.eval.stream_id}.png", run.config.alerts.enter, names)
        for t in run.suite.by_detector[DETECTORS[0]]
    ]
    images = " ".join(f"[{p.stem}]({p.relative_to(root)})" for p in pngs)
    seed_rows = pump_rows(run, Path(opts.pump), Path(opts.configs), opts.seed)
    return pump_section(run, Path(opts.pump), opts.tolerance, images, changes), seed_rows


def _nab(opts, listed: list[tuple[str, dict]], plots: Path, say):
    """The NAB section, its change rows and training-seed rows: each listed change undone
    is also a LOCO candidate, so one run per change serves both tables."""
    root = Path(opts.out).parent
    nab = load_nab(Path(opts.nab))
    undo: dict[str, dict] = {}
    for k, (what, restore) in enumerate(listed):
        name = undo_name(what, k)
        undo[name if name not in undo else f"{name} ({k + 1})"] = restore
    candidates = {**undo, **load_candidates(Path(opts.candidates))}
    scored = score_nab(Path(opts.configs), nab, opts.seed, candidates, say)
    enter = nab_config(Path(opts.configs), {}).alerts.enter
    pngs = [
        plot_one(t, plots / f"nab_{t.eval.stream_id}.png", enter)
        for t in scored.pooled.by_detector[DETECTORS[0]]
    ]
    images = " ".join(f"[{p.stem}]({p.relative_to(root)})" for p in pngs)
    after = _headline(opts, scored.pooled, nab.windows)
    rows = [
        ["nab", what, *_headline(opts, scored.candidates[name], nab.windows), *after]
        for (what, _), name in zip(listed, undo, strict=True)
    ]
    undone = {name: what for (what, _), name in zip(listed, undo, strict=True)}
    seed_rows = nab_rows(scored.pooled, Path(opts.configs), nab, opts.seed)
    return nab_section(scored, undone, opts.tolerance, images), rows, seed_rows


def _suite(opts, kind: str, overrides: dict, baselines: bool = True):
    """Score one synthetic suite: (SuiteRun, config). Seeded per suite, so a re-run with
    overrides starts from the same initial weights."""

    torch.manual_seed(opts.seed)
    config = config_mod.load(Path(opts.configs) / f"{kind}.yaml", overrides)
    data, events_for = synthetic(config, kind, opts.streams, opts.length, opts.seed)
    every = opts.retrain_every_per_stream * len(data.by_stream()) if baselines else 0
    suite = score_suite(config, data, events_for, baselines=baselines, retrain_every=every)
    return suite, config


def _rescorer(opts, kind: str) -> Callable[[dict], SuiteRun]:
    """overrides -> the synthetic ``kind`` suite scored again, streaming detector only."""
    return lambda overrides: _suite(opts, kind, overrides, baselines=False)[0]


def _headline(opts, suite: SuiteRun, windows) -> list[str]:
    evals = suite.evals(DETECTORS[0])
    r = event_metrics(evals, opts.tolerance)
    fa = "–" if r.fa_per_stream_day is None else f"{r.fa_per_stream_day:.2f}"
    cells = [f"{r.f1:.3f}", f"{r.recall:.3f}", str(r.fp), fa]
    if windows is None:
        worst = min(r.per_kind.items(), key=lambda kv: kv[1].recall)
        return [*cells, f"{worst[0]} {worst[1].recall:.2f}"]
    series = [NabSeries(s.ts, s.alert_open, windows[s.stream_id]) for s in evals]
    return [*cells, f"NAB standard {nab_report(series)['standard']:.1f}"]


def _changes(opts, kind: str, suite: SuiteRun, changes: dict) -> list[list[str]]:
    rows = []
    for what, restore in changes.get(kind, []):
        before, _ = _suite(opts, kind, restore, baselines=False)
        rows.append([kind, what, *_headline(opts, before, None), *_headline(opts, suite, None)])
    return rows


def _changes_section(rows: list[list[str]]) -> str:
    header = ["suite", "change"]
    for when in ("before", "after"):
        header += [
            f"F1 {when}",
            f"recall {when}",
            f"false alarms {when}",
            f"false alarms / stream-day {when}",
            f"NAB / worst kind {when}",
        ]
    return "\n\n".join(
        [
            "## Changes and their measured effect",
            "Streaming LSTM-AE only; *before* is this run re-scored with the change undone.",
            table(tuple(header), rows),
        ]
    )


def _synthetic_section(kind: str, opts, suite: SuiteRun, png: Path, root: Path) -> str:
    reports = {d: event_metrics(suite.evals(d), opts.tolerance) for d in suite.by_detector}
    kind_header, kind_rows = per_kind_rows(reports)
    return "\n\n".join(
        [
            f"## Synthetic {kind}",
            f"`streamlstm simulate --kind {kind} --streams {opts.streams} --length "
            f"{opts.length} --seed {opts.seed}`, config `configs/{kind}.yaml`; the model trains "
            "on the first 15 % of each stream (anomalies start after the first 25 %).",
            table(SUMMARY_HEADER, summary_rows(reports, {})),
            "Recall per anomaly kind:",
            table(kind_header, kind_rows),
            *pointwise_tables({d: suite.evals(d) for d in suite.by_detector}),
            *_rounds_text(opts, suite),
            f"![{kind}]({png.relative_to(root)})",
        ]
    )


def _rounds_text(opts, suite: SuiteRun) -> list[str]:
    """The retrain rounds of the as-deployed run, as `evaluate --retrain-every` prints them."""
    if not suite.rounds:
        return []

    return [
        f"*{RETRAINED}*: `streamlstm evaluate --retrain-every N` with N = "
        f"{opts.retrain_every_per_stream} readings per stream; the same first model, then "
        "these rounds (training data: the last `retrain.lookback_s` minus the replay's own "
        "alert episodes; the same gate and shadow warm-up as live):",
        "```\n" + format_rounds(suite.rounds) + "\n```",
    ]


def _document(opts, sections: list[str], seconds: float) -> str:
    head = [
        "# Detection quality",
        "Generated by `make quality` (`streamlstm quality --out docs/quality.md`); every number "
        "below comes from that run. Do not edit by hand.",
        f"Run: {seconds:.0f} s on {platform.machine()} ({torch.get_num_threads()} torch "
        f"threads), seed {opts.seed}, tolerance {opts.tolerance} readings.",
        *_subset_note(opts),
        "**How it is measured** (`evaluation/metrics.py`): an event is a labelled segment or "
        "NAB window; it is detected when an alert *opens* while it is under way (for an event "
        "shorter than the tolerance: up to the tolerance after its start); an opening after a "
        "long event's end (a drift snapping back, a pump put right) detects nothing and is no "
        "false alarm either; every alert opening outside all events and their tolerance is "
        "one false alarm. No point "
        "adjustment in precision/recall/F1; the point-adjusted F1 is shown only for comparison "
        "(it flatters long alerts). TTD = first matching opening minus event start.",
        "**Point-wise** (`evaluation/pointwise.py`), from the same alert flags: every reading "
        "is a prediction (an alert is open on it or not). False-alarm rate = normal readings "
        "inside an alert / normal readings; missed-alarm rate = anomalous readings outside "
        "every alert / anomalous readings. *Coverage* of an episode = the share of its "
        "readings inside an open alert; median and p10 over episodes. The event-wise table "
        "rewards an alert that opens; these reward one that stays open while the fault lasts.",
        "**Detectors**: *streaming LSTM-AE* is `streamlstm`'s live scoring path (carried "
        "`(h, c)`, O(1) per reading) with its first model. *" + RETRAINED + "* is the same, "
        "with the live retraining schedule simulated in the replay (below each table). "
        "*sliding-window LSTM-AE* is the same trained network re-run "
        "from a zero state over the last `training.chunk_len` readings for every reading. "
        "*rolling z-score* is |x - mean| / std of the previous 100 readings per feature. "
        "Both baselines go through the same calibration (robust z against the stream's own "
        "EMA, frozen inside alerts, same warm-up) and the same alert state machine and "
        "thresholds as the detector. The baselines have no flat-line/dropout check, so the "
        "streaming detector's `signal_quality` alerts are its own (they count as detections).",
    ]
    return "\n\n".join(head + sections) + "\n"


def _subset_note(opts: QualityOptions) -> list[str]:
    if tuple(opts.suites) == SUITES:
        return []
    return [f"Suites: {', '.join(opts.suites)} only (`--suites`); not the full report."]
