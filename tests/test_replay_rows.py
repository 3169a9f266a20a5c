"""``streamlstm replay`` keeps every input row, in input order; CSV delimiters."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from streamlstm import config as config_mod
from streamlstm.datafiles import InputFileError, read_file, to_series
from tests.cli_helpers import run_cli

SMALL = [
    "--set", "training.epochs=1",
    "--set", "groups.0.model.hidden_size=8",
    "--set", "groups.0.model.bottleneck=2",
    "--set", "detector.warmup_readings=5",
]  # fmt: skip


def _univariate():
    return config_mod.load(Path("configs/univariate.yaml"), {})


def _series(n: int, repeat_at: int | None = None, bad_at: int | None = None) -> list[str]:
    """Hourly ``timestamp,value`` rows; one repeated timestamp and one non-number if asked."""
    rows = []
    for h in range(n):
        stamp = f"2020-01-{1 + h // 24:02d} {h % 24:02d}:00:00"
        rows.append(f"{stamp},{'oops' if h == bad_at else 10 + h % 5}")
        if h == repeat_at:
            rows.append(f"{stamp},{11}")  # a daylight-saving-style repeat
    return rows


def test_read_file_keeps_file_order_and_the_rows_it_rejected(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    lines = _series(6, bad_at=2)
    lines[3], lines[4] = lines[4], lines[3]  # hour 4 before hour 3: not re-sorted
    path.write_text("timestamp,value\n" + "\n".join(lines) + "\n")
    data = read_file(path, _univariate())
    assert [r.values[0] for r in data.readings] == [10, 11, 14, 13, 10]
    assert data.source_rows == [0, 1, 3, 4, 5]
    assert [(r.row, r.stream) for r in data.rejected_rows] == [(2, "s")]
    assert data.rejected == {data.rejected_rows[0].reason: 1}
    # Training leaves out what the detector would reject: hour 3 after hour 4.
    (series,) = to_series(data)
    assert list(series.values[:, 0]) == [10, 11, 14, 10]


@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_and_tab_files_are_read(tmp_path: Path, sep: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"timestamp{sep}value\n" + "\n".join(_series(4)).replace(",", sep) + "\n")
    assert len(read_file(path, _univariate()).readings) == 4


def test_an_unknown_delimiter_fails_naming_the_one_it_saw(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("timestamp|value\n2020-01-01 00:00:00|1\n")
    with pytest.raises(InputFileError) as err:
        read_file(path, _univariate())
    text = str(err.value)
    assert "['timestamp|value']" in text and "separated by ','" in text and "a tab" in text


def _replay(tmp_path: Path, lines: list[str]):
    """``streamlstm replay`` of ``timestamp,value`` lines, 40 rows trained: (result, rows)."""
    path, scores = tmp_path / "s.csv", tmp_path / "scores.csv"
    path.write_text("timestamp,value\n" + "\n".join(lines) + "\n")
    res = run_cli(
        "replay", "-c", "configs/univariate.yaml", *SMALL, "--input", str(path),
        "--output", str(scores), "--train-rows", "40", "--quiet",
    )  # fmt: skip
    return res, list(csv.DictReader(scores.open()))


def test_replay_writes_one_row_per_input_row_in_input_order(tmp_path: Path) -> None:
    lines = _series(120, repeat_at=80, bad_at=90)
    res, rows = _replay(tmp_path, lines)
    assert [int(r["row"]) for r in rows] == list(range(len(lines)))
    rejected = {int(r["row"]): r["rejected"] for r in rows if r["rejected"]}
    # row 81 repeats row 80's timestamp; row 91 holds hour 90's non-number
    assert rejected[81] == "duplicate" and rejected[91] and len(rejected) == 2
    assert all(r["score"] == "" for r in rows if r["rejected"])
    assert all(r["score"] != "" for r in rows if not r["rejected"])
    assert rows[81]["ts"] == rows[80]["ts"] and rows[91]["ts"] == ""
    assert "rejected 2 " in res.stdout


def test_train_rows_must_be_positive(tmp_path: Path) -> None:
    res = run_cli(
        "replay", "-c", "configs/univariate.yaml", "--input", str(tmp_path / "x.csv"),
        "--output", str(tmp_path / "o.csv"), "--train-rows", "0", check=False,
    )  # fmt: skip
    assert res.returncode != 0 and "--train-rows must be >= 1" in res.stderr


def test_a_stuck_sensors_alert_is_marked_signal_quality_in_the_scores(tmp_path: Path) -> None:
    # Hourly values that change every reading, then one value for 50 hours: a stuck sensor.
    lines = _series(160)
    stuck_from, stuck_to = 90, 140
    for h in range(stuck_from, stuck_to):
        lines[h] = lines[h].split(",")[0] + ",12"
    res, rows = _replay(tmp_path, lines)
    sensor_opens = [
        r for r in rows if r["alert_event"] == "open" and r["alert_kind"] == "signal_quality"
    ]
    assert f"({len(sensor_opens)} on a stuck or missing sensor)" in res.stdout
    assert sensor_opens
    kinds = {r["alert_kind"] for r in rows[stuck_from:stuck_to] if r["is_anomaly"] == "1"}
    assert kinds == {"signal_quality"}
    # An alert's kind on every reading inside it, none outside
    assert all(r["alert_kind"] == "" for r in rows if r["is_anomaly"] == "0")
    assert all(r["alert_kind"] for r in rows if r["is_anomaly"] == "1")
