"""How much of a difference is noise: each suite's headline numbers with the model trained
from other seeds (``training.seed``), the data and every setting unchanged.

Every other table of the report trains with the configs' own seed, once. A change that
moves a headline by less than this spread is not evidence for it, whatever its sign: the
report's change rows and the leave-one-category-out check are read against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from streamlstm.evaluation.metrics import event_metrics
from streamlstm.evaluation.nab import nab_report
from streamlstm.evaluation.pointwise import pointwise_metrics
from streamlstm.evaluation.quality import DETECTORS, SuiteRun
from streamlstm.evaluation.quality_nab import NabData, nab_config, nab_series_of, score_pooled
from streamlstm.evaluation.quality_pump import PumpRun, run_pump

Run = TypeVar("Run")
EXTRA_SEEDS = (1, 2)  # beside the configs' own (training.seed, 0 in every shipped config)


@dataclass(frozen=True)
class SeedRow:
    """One headline of one suite, per training seed (the configs' own first)."""

    suite: str
    metric: str
    values: list[float]
    fmt: str = ".3f"

    def spread(self) -> float:
        return float(np.max(self.values) - np.min(self.values))


def synthetic_rows(
    kind: str, own: SuiteRun, score: Callable[[dict], SuiteRun], tolerance: int
) -> list[SeedRow]:
    """``own``: the suite as the report scored it; ``score(overrides)`` scores it again
    (streaming only) for each other seed."""
    f1, far = [], []
    for run in _per_seed(own, score):
        evals = run.evals(DETECTORS[0])
        f1.append(event_metrics(evals, tolerance).f1)
        far.append(100.0 * pointwise_metrics(evals).far)
    return [
        SeedRow(f"synthetic {kind}", "event-wise F1", f1),
        SeedRow(f"synthetic {kind}", "point-wise false-alarm rate, %", far, ".1f"),
    ]


def nab_rows(own: SuiteRun, configs: Path, nab: NabData, seed: int) -> list[SeedRow]:
    """NAB standard score, all series pooled in one model group (``own``: as the report
    scored it)."""

    def score(overrides: dict) -> SuiteRun:
        return score_pooled(nab_config(configs, overrides), nab, seed, baselines=False)

    standard = [
        nab_report(nab_series_of(run.evals(DETECTORS[0]), nab))["standard"]
        for run in _per_seed(own, score)
    ]
    return [SeedRow("NAB dev (pooled)", "standard score", standard, ".1f")]


def pump_rows(own: PumpRun, folder: Path, configs: Path, seed: int) -> list[SeedRow]:
    """Point-wise F1 and false-alarm rate on the pump testbed runs (``own``: as the report
    scored them)."""
    f1, far = [], []
    for run in _per_seed(own, lambda overrides: run_pump(folder, configs, seed, overrides, False)):
        report = pointwise_metrics(run.scored[DETECTORS[0]])
        f1.append(report.f1)
        far.append(100.0 * report.far)
    return [
        SeedRow("pump testbed", "point-wise F1", f1),
        SeedRow("pump testbed", "point-wise false-alarm rate, %", far, ".1f"),
    ]


def _per_seed(own: Run, score: Callable[[dict], Run]) -> list[Run]:
    """The report's own run, then the same scored with each of ``EXTRA_SEEDS``."""
    return [own] + [score({"training.seed": s}) for s in EXTRA_SEEDS]


def seeds_section(rows: list[SeedRow]) -> str:
    seeds = ["config's own"] + [f"seed {s}" for s in EXTRA_SEEDS]
    header = ["suite", "headline", *seeds, "spread (max - min)"]
    lines = [
        "## Training-seed spread",
        "",
        "Each suite's headline numbers with the model trained from other seeds "
        "(`training.seed`), data and settings unchanged. Every other table trains once, with "
        "the configs' own seed: a difference smaller than the spread here is not evidence for "
        "a change, whatever its sign.",
        "",
        "| " + " | ".join(header) + " |",
        "|:---|:---|" + "---:|" * (len(seeds) + 1),
    ]
    for r in rows:
        cells = [format(v, r.fmt) for v in r.values]
        spread = format(r.spread(), r.fmt)
        lines.append("| " + " | ".join([r.suite, r.metric, *cells, spread]) + " |")
    return "\n".join(lines) + "\n"
