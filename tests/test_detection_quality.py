"""Detection on fixed-seed files from `streamlstm simulate`, with the shipped configs, through
the same CLI a user runs (simulate -> replay). Event-wise, no point adjustment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

SLOW_KINDS = ("drift", "pump_imbalance")


def _cli(*args: str) -> str:
    return run_cli(*args).stdout


@pytest.mark.parametrize("kind", ["vitals", "sensors"])
def test_event_f1_on_the_fixed_seed_synthetic_suite(kind: str, tmp_path: Path) -> None:
    data = tmp_path / f"{kind}.csv"
    _cli(
        "simulate",
        "--out",
        str(data),
        "--kind",
        kind,
        "--streams",
        "40",
        "--length",
        "2000",
        "--seed",
        "7",
    )
    out = _cli(
        "replay",
        "-c",
        f"configs/{kind}.yaml",
        "--input",
        str(data),
        "--output",
        str(tmp_path / "scores.csv"),
        "--quiet",
    )
    f1 = float(re.search(r"F1 ([0-9.]+)", out).group(1))
    precision = float(re.search(r"precision ([0-9.]+)", out).group(1))
    assert f1 >= 0.78, out
    assert precision >= 0.9, out
    recall = {
        kind: float(value)
        for kind, value in re.findall(r"^\s+([a-z_]+)\s+\d+/\d+\s+([0-9.]+)$", out, re.M)
    }
    assert "drift" in recall, out
    # Faults that develop slowly (a drift, a growing pump imbalance) are followed by the
    # adaptive normal and found only when they end, which no longer counts as finding them
    # (evaluation/metrics.py): a known gap (docs/quality.md), left out of the floor below.
    found_while_under_way = {k: r for k, r in recall.items() if k not in SLOW_KINDS}
    assert min(found_while_under_way.values()) >= 0.5, out
    header = (tmp_path / "scores.csv").read_text().splitlines()[0]
    # ``row``: the input row each line answers (replay keeps every row, in input order)
    assert header.startswith(
        "row,stream,ts,score,threshold,is_anomaly,alert_event,alert_id,top_feature"
    )
