"""The quality report's data loaders (no training): NAB series interleaving and events."""

from __future__ import annotations

import json
import re
from pathlib import Path

from streamlstm import config as config_mod
from streamlstm.evaluation.quality_data import nab_series, nab_windows


def _series(path: Path, n: int, start_day: int) -> Path:
    rows = [f"2020-01-{start_day:02d} {h:02d}:00:00,{h}" for h in range(n)]
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    return path


def test_nab_series_interleaves_streams_and_keeps_each_in_time_order(tmp_path: Path) -> None:
    config = config_mod.load(Path("configs/univariate.yaml"), {})
    a = _series(tmp_path / "a.csv", 5, 1)
    b = _series(tmp_path / "b.csv", 3, 2)
    (tmp_path / "w.json").write_text(
        json.dumps({"x/a.csv": [["2020-01-01 01:00:00", "2020-01-01 02:00:00"]], "x/b.csv": []})
    )
    windows = nab_windows(tmp_path / "w.json")
    data, events_for = nab_series(config, [a, b], windows)
    assert [r.stream for r in data.readings] == ["a", "b", "a", "b", "a", "b", "a", "a"]
    assert [r.offset for r in data.readings] == list(range(8))
    by_stream = data.by_stream()
    assert [data.readings[i].values[0] for i in by_stream["a"]] == [0, 1, 2, 3, 4]
    ts = [data.readings[i].ts for i in by_stream["a"]]
    (event,) = events_for("a", ts, by_stream["a"])
    assert (event.start_idx, event.end_idx) == (1, 2)
    assert events_for("b", [data.readings[i].ts for i in by_stream["b"]], by_stream["b"]) == []


def test_evaluate_writes_one_png_per_stream(tmp_path: Path) -> None:
    from tests.cli_helpers import run_cli

    data = tmp_path / "v.csv"
    run_cli("simulate", "--out", str(data), "--streams", "3", "--length", "300", "--seed", "3")
    out = run_cli(
        "evaluate", "-c", "configs/test.yaml", "--input", str(data), "--json",
        "--plot-dir", str(tmp_path / "plots"),
    ).stdout  # fmt: skip
    report = json.loads(out.splitlines()[-1])
    assert "f1" in report
    # Point-wise and event-wise views come from the same alert flags and labels.
    points = report["pointwise"]
    assert points["coverage"]["episodes"] == report["n_events"]
    assert points["readings"] == 3 * 300
    assert points["tp"] + points["fn"] == points["anomalous"] == 52  # label 1 in seed 3's file
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert len(pngs) == 3
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_quality_command_writes_the_report_with_the_retrained_run(tmp_path: Path) -> None:
    from tests.cli_helpers import run_cli

    out = tmp_path / "quality.md"
    run_cli(
        "quality", "--out", str(out), "--streams", "4", "--length", "1000",
        "--nab", str(tmp_path / "no-nab"), "--pump", str(tmp_path / "no-pump"),
        "--retrain-every-per-stream", "300",
    )  # fmt: skip
    text = out.read_text()
    for section in ("## Synthetic vitals", "## Synthetic sensors", "## Changes"):
        assert section in text
    assert "## Pump" not in text and "Suites:" not in text  # all suites, the pump one empty
    # Each synthetic suite has a point-wise table with all four detectors' rows.
    assert text.count("| detector | readings (anomalous) |") == 2
    assert len(re.findall(r"^\| rolling z-score \| \d+ \(\d+\) \|", text, re.M)) == 2
    rows = [line for line in text.splitlines() if line.startswith("| streaming LSTM-AE, ret")]
    assert len(rows) == 4  # a summary and a point-wise row per synthetic suite
    assert text.count("retrain rounds") == 2
    # Rounds really trained and were gated (not only skipped): a table row says so.
    gated = re.findall(r"^\s+\d+\s+\d+\s+\S+\s+(promoted|rejected)\s", text, re.M)
    assert gated, text
    assert (tmp_path / "quality" / "vitals.png").read_bytes()[:4] == b"\x89PNG"
