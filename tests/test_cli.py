"""The commands a user runs, as subprocesses: help, simulate -> train -> replay --model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from streamlstm import cli
from tests.cli_helpers import run_cli

COMMANDS = [name.replace("_", "-") for name in cli.COMMANDS]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    out = run_cli(command, "--help").stdout
    assert "usage: streamlstm" in out and len(out) > 200


def test_train_writes_a_model_that_replay_serves(tmp_path: Path) -> None:
    data = tmp_path / "v.csv"
    run_cli("simulate", "--out", str(data), "--streams", "4", "--length", "400", "--seed", "3")
    model = tmp_path / "model"
    out = run_cli(
        "train",
        "-c",
        "configs/test.yaml",
        "--input",
        str(data),
        "--out",
        str(model),
        "--train-fraction",
        "0.5",
    ).stdout
    assert "version vitals-" in out
    group = model / "vitals"
    assert {p.name for p in group.iterdir()} == {
        "model.json",
        "weights.safetensors",
        "prior.json",
        "metrics.json",
    }
    card = json.loads((group / "model.json").read_text())
    assert card["features"] == ["hr", "spo2", "rr", "sbp", "dbp", "temp"]
    assert len(json.loads((group / "metrics.json").read_text())["train_loss"]) == 2
    scores = tmp_path / "s.csv"
    run_cli(
        "replay",
        "-c",
        "configs/test.yaml",
        "--input",
        str(data),
        "--model",
        str(model),
        "--output",
        str(scores),
        "--quiet",
    )
    rows = list(csv.DictReader(scores.open()))
    assert len(rows) == 4 * 400
    assert {r["stream"] for r in rows} == {f"icu1-bed00{i}" for i in range(1, 5)}


def test_replay_of_a_missing_column_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("timestamp,value\n2026-01-01T00:00:00Z,1\n")
    res = run_cli(
        "replay",
        "-c",
        "configs/vitals.yaml",
        "--input",
        str(bad),
        "--output",
        str(tmp_path / "o.csv"),
        check=False,
    )
    assert res.returncode == 2 and "configs/univariate.yaml" in res.stderr
    assert "Traceback" not in res.stderr
