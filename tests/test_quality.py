"""The quality report's data loaders (no training): NAB series interleaving and events."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

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
    # The normal-only check: both synthetic suites again, no anomaly, every opening false.
    assert "## Normal-only check" in text
    for kind in ("vitals", "sensors"):
        row = re.search(
            rf"^\| synthetic {kind} \(same streams, no anomaly\) \| 4 \| 4000 \|", text, re.M
        )
        assert row, kind
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
    # What a change must beat: each headline with the model trained from three seeds.
    assert "## Training-seed spread" in text
    for kind in ("vitals", "sensors"):
        cells = r"((?: [\d.]+ \|){4})$"
        row = re.search(rf"^\| synthetic {kind} \| event-wise F1 \|" + cells, text, re.M)
        assert row, kind
        *values, spread = (float(v) for v in row.group(1).split("|")[:-1])
        assert min(values) >= 0.0 and max(values) <= 1.0
        assert abs(spread - (max(values) - min(values))) <= 0.0015  # rounded to 3 places


def _tiny_nab(root: Path) -> Path:
    """Three hourly series in two categories, a window in each (generated, not NAB data)."""
    windows = {}
    for category, name, jump in [("catA", "a1", 300), ("catA", "a2", 250), ("catB", "b1", 280)]:
        folder = root / "data" / category
        folder.mkdir(parents=True, exist_ok=True)
        rows = [
            f"2020-01-{1 + h // 24:02d} {h % 24:02d}:00:00,{(50 if h >= jump else 10) + h % 3}"
            for h in range(400)
        ]
        (folder / f"{name}.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
        start, end = jump - 5, jump + 5
        windows[f"{category}/{name}.csv"] = [
            [f"2020-01-{1 + h // 24:02d} {h % 24:02d}:00:00" for h in (start, end)]
        ]
    (root / "combined_windows.json").write_text(json.dumps(windows))
    return root


def test_quality_nab_reports_categories_one_model_per_series_and_loco(tmp_path: Path) -> None:
    from tests.cli_helpers import run_cli

    configs = tmp_path / "configs"
    configs.mkdir()
    small = config_mod.load(Path("configs/univariate.yaml"), {})
    assert small.groups[0].features == ["value"]  # the shipped config the suite runs
    text = Path("configs/univariate.yaml").read_text()
    text = text.replace("epochs: 20", "epochs: 1").replace("hidden_size: 128", "hidden_size: 8")
    (configs / "univariate.yaml").write_text(text)
    (tmp_path / "changes.yaml").write_text(
        "nab:\n- change: '`alerts.enter: 4.0` (before: 5)'\n  undo: {alerts.enter: 5.0}\n"
    )
    (tmp_path / "cands.yaml").write_text(
        "- {name: today, overrides: {}}\n- {name: high, overrides: {alerts.enter: 6.0}}\n"
    )
    out = tmp_path / "q.md"
    run_cli(
        "quality", "--suites", "nab", "--out", str(out), "--configs", str(configs),
        "--nab", str(_tiny_nab(tmp_path / "nab")), "--changes", str(tmp_path / "changes.yaml"),
        "--candidates", str(tmp_path / "cands.yaml"),
    )  # fmt: skip
    text = out.read_text()
    assert "## NAB development subset (3 series)" in text
    categories = re.findall(r"^\| (catA|catB|all) \| (\d) \| (\d) \|", text, re.M)
    assert categories == [("catA", "2", "2"), ("catB", "1", "1"), ("all", "3", "3")]
    # Where the points go: pooled score and its three losses add up to 100 in every row.
    losses = re.findall(
        r"^\| (catA|catB|all) \| \*\*(-?[\d.]+)\*\* \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| \*\*",
        text,
        re.M,
    )
    assert [row[0] for row in losses] == ["catA", "catB", "all"]
    for _, *cells in losses:
        assert sum(float(c) for c in cells) == pytest.approx(100.0, abs=0.25)
    folds = re.findall(
        r"^\| (catA|catB) \| (today's config|undo alerts\.enter: 4\.0|high) \|", text, re.M
    )
    assert [f[0] for f in folds] == ["catA", "catB"]
    assert "*undo alerts.enter: 4.0*: `{'alerts.enter': 5.0}`" in text
    assert re.search(r"^\| NAB dev \(pooled\) \| standard score \|(?: -?[\d.]+ \|){4}$", text, re.M)
    assert re.search(r"^\| streaming LSTM-AE, one model per series \| 3 \|", text, re.M)
    assert re.search(r"^\| nab \| `alerts.enter: 4.0`", text, re.M)
