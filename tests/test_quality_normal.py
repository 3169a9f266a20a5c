"""The normal-only check: every alert on a stream without anomalies is a false alarm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamlstm.evaluation.metrics import DAY_S, Event, StreamEval
from streamlstm.evaluation.quality_normal import normal_row, pump_fault_free
from streamlstm.evaluation.quality_pump import PUMP_TRAIN


def _stream(name: str, opens: list[int], inside: list[int], n: int = 1441) -> StreamEval:
    ts = np.arange(n) * 60.0  # a reading a minute: 1441 readings span exactly one day
    alert_open = np.zeros(n, bool)
    alert_open[opens] = True
    in_alert = np.zeros(n, bool)
    in_alert[inside] = True
    return StreamEval(name, ts, alert_open, in_alert, [])


def test_normal_row_counts_every_opening_as_a_false_alarm() -> None:
    evals = [_stream("a", [100, 900], [100, 101, 900]), _stream("b", [], [])]
    row = normal_row("clean", evals)
    assert row[:5] == ["clean", "2", "2882", f"{2 * 1440 * 60 / DAY_S:.2f}", "2"]
    assert row[5] == "**1.00**"  # 2 openings over 2 stream-days
    assert row[6] == f"{100 * 3 / 2882:.2f} %" and row[7] == "1/2"


def test_normal_row_refuses_streams_with_labelled_events() -> None:
    s = _stream("a", [], [])
    s.events.append(Event(3, 5))
    with pytest.raises(ValueError, match="labelled events"):
        normal_row("clean", [s])


def test_pump_fault_free_run_is_scored_after_its_training_part(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    text = Path("configs/sensors.yaml").read_text()
    (configs / "sensors.yaml").write_text(text.replace("epochs: 20", "epochs: 1"))
    folder = tmp_path / "pump"
    folder.mkdir()
    assert pump_fault_free(folder, configs, seed=1) is None  # no fault-free run: no row
    rng = np.random.default_rng(0)
    n = PUMP_TRAIN + 150
    rows = [
        f"2020-02-08 13:{30 + i // 60:02d}:{i % 60:02d};{1 + 0.1 * rng.standard_normal():.4f};"
        f"{5 + 0.1 * rng.standard_normal():.4f}"
        for i in range(n)
    ]
    (folder / "anomaly-free.csv").write_text("datetime;flow;pressure\n" + "\n".join(rows) + "\n")
    (evaluated,) = pump_fault_free(folder, configs, seed=1)
    assert evaluated.stream_id == "anomaly-free" and evaluated.events == []
    assert len(evaluated.ts) == n - PUMP_TRAIN
    assert normal_row("pump", [evaluated])[2] == str(n - PUMP_TRAIN)
