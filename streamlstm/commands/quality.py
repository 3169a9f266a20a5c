"""``streamlstm quality``: regenerate docs/quality.md and its plots in one deterministic run.

Synthetic vitals and sensors suites (fixed seed) with their shipped configs, every NAB
series under ``--nab`` with configs/univariate.yaml (pooled, one model per series, per
category, and a leave-one-category-out check over ``--candidates``) and the pump runs under
``--pump`` with configs/sensors.yaml (``--suites`` picks some); each scored by the streaming
LSTM-AE and the two baselines (``evaluation.baselines``) through one harness
(``evaluation.metrics``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from streamlstm.commands.common import add_tolerance_arg
from streamlstm.evaluation.quality_doc import SUITES, QualityOptions, write_report

RETRAIN_PER_STREAM = 500  # readings per stream between two simulated retrain rounds
DEFAULT_OUT = "docs/quality.md"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "quality",
        help="regenerate the detection quality report (docs/quality.md) and its plots",
        description="Score the synthetic vitals and sensors suites, the NAB series and the pump "
        "testbed runs with the "
        "streaming LSTM-AE and two baselines (rolling z-score; the same autoencoder over a "
        "sliding window without carried state) and write a markdown report (event-wise, "
        "point-wise, coverage) with plots.",
        epilog="example: streamlstm quality --out docs/quality.md",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="markdown report to write")
    p.add_argument("--configs", default="configs", help="folder with vitals/sensors/univariate")
    p.add_argument("--nab", default="../shared/datasets/nab-dev", help="NAB data folder")
    p.add_argument(
        "--pump",
        default="../shared/datasets/pump-dev",
        help="pump testbed folder (other/<n>.csv, ';'-separated; read in place)",
    )
    p.add_argument(
        "--suites",
        default=",".join(SUITES),
        help=f"comma-separated subset of {','.join(SUITES)} (default: all). A subset must be "
        f"written elsewhere than {DEFAULT_OUT} (--out), which is the full report",
    )
    p.add_argument(
        "--changes",
        default="docs/config-changes.yaml",
        help="the config changes to re-score undone (YAML: suite -> [{change, undo}])",
    )
    p.add_argument(
        "--candidates",
        default="docs/loco-candidates.yaml",
        help="candidate settings for the NAB leave-one-category-out check (YAML: "
        "[{name, overrides}]); each listed NAB change undone is a candidate too",
    )
    p.add_argument("--streams", type=int, default=40, help="streams per synthetic suite")
    p.add_argument("--length", type=int, default=2000, help="readings per synthetic stream")
    p.add_argument("--seed", type=int, default=7)
    add_tolerance_arg(p)
    p.add_argument(
        "--retrain-every-per-stream",
        type=int,
        default=RETRAIN_PER_STREAM,
        metavar="N",
        help="also score each suite as deployed, with a retrain round every N readings per "
        "stream (the evaluate --retrain-every simulation; 0: off)",
    )
    p.set_defaults(func=run)


def _suites(args: argparse.Namespace) -> tuple[str, ...]:
    """The chosen suites in report order; a subset may not replace the full report."""
    asked = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = sorted(set(asked) - set(SUITES))
    if unknown or not asked:
        raise SystemExit(f"streamlstm quality: --suites {args.suites!r}: choose from {SUITES}")
    chosen = tuple(s for s in SUITES if s in asked)
    # docs/quality.md says every number in it comes from one full run: a subset written
    # there would silently drop the other sections.
    if chosen != SUITES and Path(args.out).resolve() == Path(DEFAULT_OUT).resolve():
        raise SystemExit(
            f"streamlstm quality: --suites {','.join(chosen)} is a subset; {DEFAULT_OUT} holds "
            "the full report, so give --out another file (e.g. --out /tmp/quality.md)"
        )
    return chosen


def run(args: argparse.Namespace) -> int:
    suites = _suites(args)
    torch.set_num_threads(min(torch.get_num_threads(), 2))  # the stated budget: 2 cores
    options = QualityOptions(
        out=Path(args.out),
        configs=Path(args.configs),
        nab=Path(args.nab),
        changes=Path(args.changes),
        streams=args.streams,
        length=args.length,
        seed=args.seed,
        tolerance=args.tolerance,
        retrain_every_per_stream=args.retrain_every_per_stream,
        pump=Path(args.pump),
        suites=suites,
        candidates=Path(args.candidates),
    )
    write_report(options, say=lambda line: print(line, flush=True))
    return 0
