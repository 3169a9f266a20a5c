"""The NAB suite of ``streamlstm quality``: every series under ``--nab`` with
``configs/univariate.yaml``, scored three ways so that a gain found on the development series
is tested before it is kept.

  * *pooled*: one model group over all series (shared weights, per-series state), all three
    detectors; the model trains inside NAB's probationary period of each series (the first
    15 %, at most 750 readings: ``nab.nab_train_rows``), so it never sees a scored reading;
  * *one model per series*: each series trained and replayed alone, as a user replays one
    file (``streamlstm replay --train-rows``); the streaming detector only;
  * per NAB category (the folder a series is in) for both, and a leave-one-category-out
    check (``evaluation.loco``) over candidate settings: today's config, each listed config
    change undone, and the candidates of ``--candidates``.

The tables are written by ``quality_nab_report``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from streamlstm import config as config_mod
from streamlstm.config import Config
from streamlstm.evaluation.metrics import StreamEval
from streamlstm.evaluation.nab import NabSeries, NabTally, nab_tally, nab_train_rows
from streamlstm.evaluation.quality import DETECTORS, SuiteRun, score_suite
from streamlstm.evaluation.quality_data import nab_series, nab_windows

NAB_CONFIG = "univariate.yaml"
TODAY = "today's config"  # the LOCO baseline: the shipped config, no override


@dataclass(frozen=True)
class NabData:
    files: list[Path]
    windows: dict[str, list[tuple[float, float]]]
    categories: dict[str, str]  # series (file stem) -> NAB category (its folder)


def nab_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("data/*/*.csv"))


def load_nab(folder: Path) -> NabData:
    files = nab_files(folder)
    windows = nab_windows(Path(folder) / "combined_windows.json")
    return NabData(files, windows, {f.stem: f.parent.name for f in files})


def nab_config(configs: Path, overrides: dict) -> Config:
    return config_mod.load(Path(configs) / NAB_CONFIG, overrides)


def score_pooled(config: Config, nab: NabData, seed: int, baselines: bool = True) -> SuiteRun:
    """All series in one model group, trained inside each series' probationary period."""
    torch.manual_seed(seed)
    data, events_for = nab_series(config, nab.files, nab.windows)
    return score_suite(config, data, events_for, baselines=baselines, train_readings=nab_train_rows)


def score_alone(config: Config, nab: NabData, seed: int) -> list[StreamEval]:
    """The streaming detector with one model per series (each seeded alike)."""
    out = []
    for f in nab.files:
        torch.manual_seed(seed)
        data, events_for = nab_series(config, [f], nab.windows)
        run = score_suite(config, data, events_for, baselines=False, train_readings=nab_train_rows)
        out += run.evals(DETECTORS[0])
    return out


def load_candidates(path: Path) -> dict[str, dict]:
    """name -> config overrides (YAML: a list of {name, overrides}); no file: none. The
    candidate without overrides is today's config, named ``TODAY`` whatever the file says."""
    if not path.exists():
        return {}
    items = yaml.safe_load(path.read_text()) or []
    return {c["name"]: dict(c.get("overrides") or {}) for c in items if c.get("overrides")}


def undo_name(change: str, k: int) -> str:
    """A short candidate name for a listed change undone: its first `code` span."""
    code = re.search(r"`([^`]+)`", change)
    return f"undo {code.group(1)}" if code else f"undo change {k + 1}"


@dataclass
class NabScored:
    """Everything the NAB section reports: the pooled run, the per-series run and the
    streaming detector's pooled runs under each candidate setting."""

    nab: NabData
    pooled: SuiteRun
    alone: list[StreamEval]
    candidates: dict[str, SuiteRun] = field(default_factory=dict)  # TODAY first
    overrides: dict[str, dict] = field(default_factory=dict)


def score_nab(
    configs: Path,
    nab: NabData,
    seed: int,
    candidates: dict[str, dict],
    say: Callable[[str], None],
) -> NabScored:
    """The pooled run, the per-series run and one pooled run per candidate."""
    pooled = score_pooled(nab_config(configs, {}), nab, seed)
    say("nab: pooled run scored")
    alone = score_alone(nab_config(configs, {}), nab, seed)
    say("nab: one model per series scored")
    scored = NabScored(nab, pooled, alone, {TODAY: pooled}, {TODAY: {}})
    for name, overrides in candidates.items():
        run = score_pooled(nab_config(configs, overrides), nab, seed, baselines=False)
        scored.candidates[name], scored.overrides[name] = run, overrides
        say(f"nab: candidate {name!r} scored")
    return scored


def nab_series_of(evals: list[StreamEval], nab: NabData) -> list[NabSeries]:
    return [
        NabSeries(s.ts, s.alert_open, nab.windows.get(s.stream_id, []), s.stream_id) for s in evals
    ]


def category_tallies(
    evals: list[StreamEval], nab: NabData, profile: str = "standard"
) -> dict[str, NabTally]:
    """Per NAB category, the summed tallies of its series (categories in first-seen order)."""
    out: dict[str, NabTally] = {}
    for s in nab_series_of(evals, nab):
        category = nab.categories[s.name]
        out[category] = out.get(category, NabTally()) + nab_tally(s, profile)
    return out
