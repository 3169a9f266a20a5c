"""The baselines of the quality report: lists in, lists out."""

from __future__ import annotations

import numpy as np
import torch

from streamlstm.config import AlertConfig, DetectorConfig, ModelConfig
from streamlstm.detect.model import LSTMAutoencoder
from streamlstm.evaluation.baselines import (
    calibrated_alerts,
    rolling_zscore_stats,
    sliding_lstm_stats,
    typical_error,
)
from streamlstm.evaluation.metrics import EventReport, KindRecall
from streamlstm.evaluation.quality_report import per_kind_rows, table


def test_rolling_zscore_flags_the_spike_and_not_the_noise() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(0.0, 1.0, size=(300, 1, 2))
    values[200, 0, 1] = 12.0
    stats, seen = rolling_zscore_stats(values, window=50)
    assert stats.shape == (300, 1, 3)
    assert seen[0, 0].tolist() == [0.0, 0.0, 0.0]  # nothing before the first reading
    assert float(stats[200, 0, 1]) > 8.0
    assert float(stats[100:200, 0, :2].max()) < 5.0


def test_rolling_zscore_ignores_missing_values() -> None:
    values = np.ones((20, 1, 1))
    values[5, 0, 0] = np.nan
    stats, seen = rolling_zscore_stats(values, window=4)
    assert seen[5, 0, 0] == 0.0 and stats[5, 0, 0] == 0.0
    assert torch.isfinite(stats).all()


def test_sliding_lstm_forgets_what_is_older_than_its_context() -> None:
    torch.manual_seed(0)
    net = LSTMAutoencoder(2, ModelConfig(hidden_size=8, bottleneck=3, window_len=4)).eval()
    z = torch.randn(40, 1, 2)
    m = torch.ones(40, 1, 2)
    base, _ = sliding_lstm_stats(net, z, m, context=10)
    changed = z.clone()
    changed[20] += 5.0
    after, _ = sliding_lstm_stats(net, changed, m, context=10)
    assert torch.allclose(base[:20], after[:20])  # the past does not see the change
    assert not torch.allclose(base[20:30], after[20:30])  # inside the context it does
    assert torch.allclose(base[30:], after[30:])  # no carried state beyond the context


def test_typical_error_is_median_and_mean_absolute_deviation() -> None:
    stats = torch.tensor([[[1.0]], [[2.0]], [[3.0]], [[100.0]]])
    mu, dev = typical_error(stats, torch.ones_like(stats), skip=1)
    assert mu.tolist() == [3.0]  # readings 2, 3, 100 after skipping one
    assert abs(float(dev[0]) - (1 + 0 + 97) / 3) < 1e-4


def test_calibrated_alerts_open_once_after_min_duration_and_not_while_warming() -> None:
    det = DetectorConfig(warmup_readings=20, burn_in_readings=0)
    cfg = AlertConfig(enter=5.0, exit=2.0, min_duration=3, exit_duration=2, cooldown=5)
    stats = torch.full((120, 2, 2), 1.0)
    stats[5:8, :, 1] = 50.0  # during warm-up: no alert
    stats[60:70, 0, 1] = 50.0  # stream 0 only
    seen = torch.ones_like(stats)
    prior = (torch.tensor([1.0, 1.0]), torch.tensor([0.1, 0.1]))
    trace = calibrated_alerts(stats, seen, prior, det, cfg)
    assert np.flatnonzero(trace.alert_open[:, 0]).tolist() == [62]
    assert not trace.alert_open[:, 1].any()
    assert trace.in_alert[62:70, 0].all() and not trace.in_alert[75:, 0].any()


def test_calibrated_alerts_padding_changes_nothing() -> None:
    det = DetectorConfig(warmup_readings=5, burn_in_readings=0)
    cfg = AlertConfig(enter=5.0, exit=2.0, min_duration=2, exit_duration=2, cooldown=0)
    stats = torch.full((50, 1, 2), 1.0)
    stats[30:35, 0, 0] = 40.0
    prior = (torch.tensor([1.0, 1.0]), torch.tensor([0.1, 0.1]))
    alone = calibrated_alerts(stats, torch.ones_like(stats), prior, det, cfg)
    padded_stats = torch.cat([stats, torch.full((10, 1, 2), 99.0)])
    valid = np.r_[np.ones(50, bool), np.zeros(10, bool)][:, None]
    padded = calibrated_alerts(
        padded_stats, torch.ones_like(padded_stats), prior, det, cfg, valid=valid
    )
    assert np.array_equal(padded.alert_open[:50], alone.alert_open)
    assert not padded.alert_open[50:].any()


def test_markdown_table_and_per_kind_rows() -> None:
    text = table(("a", "b"), [("x", "1")])
    assert text.splitlines() == ["| a | b |", "|:---|---:|", "| x | 1 |"]
    report = EventReport(
        0, 1, 2, 1, 1, 0, 1.0, 0.5, 0.667,
        {"spike": KindRecall(1, 1), "drift": KindRecall(0, 1)},
        [0], [0.0], 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.5, 0.667,
    )  # fmt: skip
    header, rows = per_kind_rows({"det": report})
    assert header == ("anomaly kind", "det")
    assert rows == [["drift", "0.00 (0/1)"], ["spike", "1.00 (1/1)"]]
