"""The pump testbed suite on tiny synthetic runs in the testbed's file format (never the
real data, which is GPL-3.0 and lives outside the repository)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from streamlstm import config as config_mod
from streamlstm.datafiles import InputFileError, csv_columns, read_file
from streamlstm.evaluation.metrics import Event, StreamEval
from streamlstm.evaluation.quality_pump import (
    PUMP_TRAIN,
    false_alarm_readings,
    pump_config,
    pump_data,
    pump_features,
    pump_runs,
)
from tests.cli_helpers import run_cli

SENSORS = [
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
]
HEADER = ";".join(["datetime", *SENSORS, "anomaly", "changepoint"])


def _run(path: Path, n: int, fault: tuple[int, int], seed: int, day: int = 1) -> Path:
    """One run: noisy sensors, a large step on three of them over ``fault`` (inclusive)."""
    rng = np.random.default_rng(seed)
    base = np.array([0.08, 0.13, 1.2, 0.05, 92.0, 22.0, 210.0, 76.0])
    noise = np.array([0.002, 0.003, 0.05, 0.02, 0.2, 0.05, 2.0, 0.5])
    lines = [HEADER]
    for i in range(n):
        x = base + noise * rng.standard_normal(8)
        faulty = fault[0] <= i <= fault[1]
        if faulty:
            x[[2, 3, 7]] += 60 * noise[[2, 3, 7]]
        edge = i in fault
        stamp = f"2020-03-{day:02d} {10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        cells = [stamp, *(f"{v:.6g}" for v in x), f"{float(faulty)}", f"{float(edge)}"]
        lines.append(";".join(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _folder(root: Path) -> Path:
    _run(root / "other" / "1.csv", 520, (450, 499), seed=1, day=1)
    _run(root / "other" / "2.csv", 480, (430, 479), seed=2, day=2)  # fault to the end
    return root


def _config():
    return pump_config(Path("configs"), SENSORS)


def test_read_file_reads_semicolons_datetimes_and_the_anomaly_label(tmp_path: Path) -> None:
    path = _run(tmp_path / "r.csv", 10, (6, 8), seed=0)
    assert csv_columns(path) == ["datetime", *SENSORS, "anomaly", "changepoint"]
    data = read_file(path, _config())
    assert len(data.readings) == 10 and not data.rejected
    assert data.labels == [0, 0, 0, 0, 0, 0, 1, 1, 1, 0]
    assert np.diff([r.ts for r in data.readings]).tolist() == [1.0] * 9
    first = path.read_text().splitlines()[1].split(";")
    assert data.readings[0].values[2] == pytest.approx(float(first[3]))  # Current


def test_a_file_without_a_time_column_names_the_separator_it_read(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("when;" + ";".join(SENSORS) + "\n2020-01-01;" + ";".join(["1"] * 8) + "\n")
    with pytest.raises(InputFileError, match=r"bad.csv: no 'timestamp'.*separated by ';'"):
        read_file(path, _config())


def test_pump_config_replaces_only_the_feature_list() -> None:
    shipped = config_mod.load(Path("configs/sensors.yaml")).model_dump()
    pump = _config().model_dump()
    assert pump["groups"][0].pop("features") == SENSORS
    assert shipped["groups"][0].pop("features") != SENSORS
    assert pump == shipped


def test_runs_are_found_in_run_order_and_must_share_their_columns(tmp_path: Path) -> None:
    for n in (10, 2, 1):
        _run(tmp_path / "other" / f"{n}.csv", 5, (3, 4), seed=n)
    files = pump_runs(tmp_path)
    assert [f.stem for f in files] == ["1", "2", "10"]
    assert pump_features(files) == SENSORS
    text = (tmp_path / "other" / "2.csv").read_text()
    (tmp_path / "other" / "2.csv").write_text(text.replace("Voltage", "Volts", 1))
    with pytest.raises(ValueError, match=r"2\.csv: columns"):
        pump_features(files)


def test_pump_data_is_one_stream_per_run_with_its_labels(tmp_path: Path) -> None:
    files = pump_runs(_folder(tmp_path))
    data, events_for = pump_data(_config(), files)
    by_stream = data.by_stream()
    assert {s: len(i) for s, i in by_stream.items()} == {"pump-1": 520, "pump-2": 480}
    assert [r.stream for r in data.readings[:4]] == ["pump-1", "pump-2"] * 2
    (event,) = events_for("pump-2", np.zeros(480), by_stream["pump-2"])
    assert (event.start_idx, event.end_idx) == (430, 479)
    (event,) = events_for("pump-1", np.zeros(520), by_stream["pump-1"])
    assert (event.start_idx, event.end_idx) == (450, 499)


def test_a_run_with_nothing_after_the_training_part_is_refused(tmp_path: Path) -> None:
    _run(tmp_path / "other" / "1.csv", PUMP_TRAIN, (300, 320), seed=1)
    with pytest.raises(ValueError, match=r"no reading after the first 400: \['pump-1'\]"):
        pump_data(_config(), pump_runs(tmp_path))


def _small_configs(folder: Path) -> Path:
    """configs/sensors.yaml with a small, quick model; every other setting as shipped."""
    tree = yaml.safe_load(Path("configs/sensors.yaml").read_text())
    tree["groups"][0]["model"] = {"hidden_size": 16, "bottleneck": 4, "window_len": 4}
    tree["training"]["epochs"] = 2
    folder.mkdir()
    (folder / "sensors.yaml").write_text(yaml.safe_dump(tree))
    return folder


def _row(text: str, detector: str, *after: str) -> list[str]:
    """The cells of ``detector``'s first table row after the texts ``after``, in turn."""
    tail = text
    for anchor in after:
        tail = tail[tail.index(anchor) :]
    line = next(ln for ln in tail.splitlines() if ln.startswith(f"| {detector} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_quality_scores_the_pump_suite_alone(tmp_path: Path) -> None:
    data = _folder(tmp_path / "pump")
    out = tmp_path / "q" / "quality.md"
    run_cli(
        "quality", "--suites", "pump", "--pump", str(data), "--out", str(out),
        "--configs", str(_small_configs(tmp_path / "cfg")),
    )  # fmt: skip
    text = out.read_text()
    assert "## Pump testbed (2 runs)" in text
    assert "## Synthetic" not in text and "## NAB" not in text
    assert "Suites: pump only" in text
    scored, fault = (520 - PUMP_TRAIN) + (480 - PUMP_TRAIN), 50 + 50
    for detector in ("streaming LSTM-AE", "sliding-window LSTM-AE", "rolling z-score"):
        events = _row(text, detector, "## Pump")
        assert events[1] == "2"  # one episode per run, both after the training part
        points = _row(text, detector, "## Pump", "Point-wise (")
        assert points[1] == f"{scored} ({fault})"
    # A 60-sigma step on three sensors: the rolling z-score alerts in both faults.
    assert _row(text, "rolling z-score", "## Pump", "Point-wise (")[7] == "2/2"
    assert re.search(r"^\| pump-1 \| 120 \(50\) \|", text, re.M)
    assert re.search(r"^\| pump-2 \| 80 \(50\) \|", text, re.M)
    # the last row sums the runs; each false-alarm cell is its total and its split
    total = re.search(r"^\| all \| 200 \(100\) \|(.*)\|$", text, re.M)
    assert total is not None
    for cell in total.group(1).split("|")[1::2]:
        n, before, outlasting, later = (
            int(x) for x in re.fullmatch(r" (\d+) \((\d+) / (\d+) / (\d+)\) ", cell).groups()
        )
        assert n == before + outlasting + later
    for run in ("pump-1", "pump-2"):
        assert (out.parent / "quality" / f"{run}.png").read_bytes()[:4] == b"\x89PNG"
    # Each change docs/config-changes.yaml lists for the pump suite, re-scored undone.
    listed = yaml.safe_load(Path("docs/config-changes.yaml").read_text())["pump"]
    pump_part = text[text.index("## Pump") :]
    for change in listed:
        line = next(ln for ln in pump_part.splitlines() if ln.startswith(f"| {change['change']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        assert len(cells) == 6  # F1, false-alarm rate, episodes alerted; before, then after
        for f1, far, alerted in (cells[:3], cells[3:]):
            assert 0.0 <= float(f1) <= 1.0 and far.endswith(" %") and alerted.endswith("/2")


def test_false_alarm_readings_split_at_the_fault() -> None:
    in_alert = np.zeros(20, dtype=bool)
    # 2 before; an alert over the fault (8-12) that outlasts it by 2; a later one of 3
    in_alert[[1, 2, 9, 10, 11, 12, 13, 14, 17, 18, 19]] = True
    opens = np.zeros(20, dtype=bool)
    opens[[1, 9, 17]] = True
    run = StreamEval("r", np.arange(20.0), opens, in_alert, [Event(8, 12)])
    assert false_alarm_readings(run) == (2, 2, 3)
    no_fault = StreamEval("n", np.arange(20.0), opens, in_alert, [])
    assert false_alarm_readings(no_fault) == (11, 0, 0)


def test_an_alert_that_opens_right_as_another_ends_is_a_later_alert() -> None:
    # The fault's alert ends at 13; a new one opens at 14 without a reading outside alerts
    # between them: its readings are not the fault's alert outlasting it.
    in_alert = np.zeros(20, dtype=bool)
    in_alert[9:17] = True
    opens = np.zeros(20, dtype=bool)
    opens[[9, 14]] = True
    run = StreamEval("r", np.arange(20.0), opens, in_alert, [Event(8, 12)])
    assert false_alarm_readings(run) == (0, 1, 3)
