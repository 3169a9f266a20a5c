"""One contract every detector passes (River's ``river/checks`` idea): the streaming LSTM-AE
and both baselines the quality report measures it against, through the same entry point,
``trace(values (T, B, F), ts (T,)) -> AlertTrace``. Checks that need a notion the baselines
do not have (time gaps, carried state) run where the candidate declares it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from streamlstm.detect.calibration import calibration_horizons
from streamlstm.evaluation.baselines import (
    AlertTrace,
    calibrated_alerts,
    rolling_zscore_stats,
    sliding_lstm_stats,
    typical_error,
)
from streamlstm.evaluation.quality import ZSCORE_WINDOW
from streamlstm.records import Reading
from streamlstm.train.fit import normalise_lanes
from tests.helpers import FEATURES, tiny_config, tiny_detector, tiny_model

CFG = tiny_config()
WARMUP = CFG.detector.warmup_readings
STEP_S = 60.0
PRIOR_READINGS = 100  # a baseline's calibration prior: its stream's first readings


@dataclass(frozen=True)
class Candidate:
    name: str
    trace: Callable[[np.ndarray, np.ndarray], AlertTrace]
    stateful: bool  # carries state across calls: gaps reset it, snapshots hold it


def _readings(values: np.ndarray, ts: np.ndarray, t: int, offset0: int = 0) -> list[Reading]:
    return [
        Reading(f"s{b}", float(ts[t]), tuple(map(float, values[t, b])), "g", "t", 0, offset0 + t)
        for b in range(values.shape[1])
    ]


def streaming_trace(values: np.ndarray, ts: np.ndarray) -> AlertTrace:
    detector = tiny_detector()
    table = detector.new_table()
    return _stream(detector, table, values, ts, 0)


def _stream(detector, table, values: np.ndarray, ts: np.ndarray, t0: int) -> AlertTrace:
    T, B, _ = values.shape
    out = AlertTrace(np.zeros((T, B)), np.zeros((T, B), bool), np.zeros((T, B), bool))
    for t in range(T):
        batch = _readings(values, ts, t, t0)
        scored = detector.score(table, batch)
        for j, i in enumerate(scored.index):
            out.score[t, i], out.in_alert[t, i] = scored.score[j], scored.in_alert[j]
        for event in scored.events:
            if event.event == "open":
                out.alert_open[t, int(event.stream[1:])] = True
    return out


def _calibrated(stats: torch.Tensor, seen: torch.Tensor, horizon=None) -> AlertTrace:
    """The detector's calibration and alert machine over a baseline's statistics, each
    stream's prior from its own first ``PRIOR_READINGS`` (as the quality report's training
    share): no stream's prior depends on another's readings."""
    n, skip = PRIOR_READINGS, CFG.detector.burn_in_readings
    priors = [
        typical_error(stats[:n, b : b + 1], seen[:n, b : b + 1], skip)
        for b in range(stats.shape[1])
    ]
    prior = (torch.stack([p[0] for p in priors]), torch.stack([p[1] for p in priors]))
    return calibrated_alerts(stats, seen, prior, CFG.detector, CFG.alerts, horizon=horizon)


def zscore_trace(values: np.ndarray, ts: np.ndarray) -> AlertTrace:
    return _calibrated(*rolling_zscore_stats(values, ZSCORE_WINDOW))


def sliding_trace(values: np.ndarray, ts: np.ndarray) -> AlertTrace:
    model = tiny_model()
    lanes = [
        type("S", (), {"stream": f"s{b}", "ts": ts, "values": values[:, b]})()
        for b in range(values.shape[1])
    ]
    z, m, _ = normalise_lanes(lanes, model.prior, CFG.detector, torch.device("cpu"))
    stats, seen = sliding_lstm_stats(model.net, z, m, context=8)
    return _calibrated(stats, seen, calibration_horizons(CFG.detector, len(FEATURES)))


CANDIDATES = [
    Candidate("streaming LSTM-AE", streaming_trace, stateful=True),
    Candidate("sliding-window LSTM-AE", sliding_trace, stateful=False),
    Candidate("rolling z-score", zscore_trace, stateful=False),
]


def normal_values(T: int, B: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([70.0, 97.0, 16.0]) + rng.normal(0, [5, 1, 2], size=(1, B, 3))
    return base + rng.normal(0, [2, 0.5, 1], size=(T, B, 3))


def times(T: int) -> np.ndarray:
    return 1.767e9 + STEP_S * np.arange(T)


@pytest.fixture(params=CANDIDATES, ids=lambda c: c.name)
def candidate(request) -> Candidate:
    return request.param


def test_no_alert_during_warm_up(candidate: Candidate) -> None:
    values = normal_values(WARMUP + 20, 2)
    values[2 : WARMUP - 1, 0, 0] += 400.0  # absurd, and sustained, but the stream is warming
    trace = candidate.trace(values, times(len(values)))
    assert not trace.alert_open[:WARMUP].any()
    assert not trace.in_alert[:WARMUP].any()


def test_a_clear_fault_after_warm_up_opens_an_alert(candidate: Candidate) -> None:
    """The contract is not met by a detector that never alerts."""
    values = normal_values(200, 1)
    values[150:170, 0, 0] += 60.0
    trace = candidate.trace(values, times(200))
    assert trace.alert_open[150:175, 0].any()
    assert not trace.alert_open[:150, 0].any()


def test_deterministic_and_input_not_mutated(candidate: Candidate) -> None:
    values = normal_values(120, 3)
    values[90:100, 1, 2] += 30.0
    before = values.copy()
    a = candidate.trace(values, times(120))
    b = candidate.trace(values, times(120))
    np.testing.assert_array_equal(values, before)
    np.testing.assert_array_equal(a.score, b.score)
    np.testing.assert_array_equal(a.alert_open, b.alert_open)


def test_batching_changes_nothing(candidate: Candidate) -> None:
    """Streams scored together give what each gives alone: no stream affects another."""
    values = normal_values(150, 3, seed=4)
    values[100:115, 2, 1] -= 8.0
    together = candidate.trace(values, times(150))
    for b in range(3):
        alone = candidate.trace(values[:, b : b + 1], times(150))
        np.testing.assert_allclose(alone.score[:, 0], together.score[:, b], atol=1e-5)
        np.testing.assert_array_equal(alone.alert_open[:, 0], together.alert_open[:, b])


def test_a_long_gap_resets_and_re_warms(candidate: Candidate) -> None:
    if not candidate.stateful:
        pytest.skip(f"{candidate.name} has no time axis: nothing carries across a gap")
    values = normal_values(200, 1)
    ts = times(200)
    ts[100:] += CFG.detector.max_gap_s * 2  # a long outage after reading 99
    values[101 : 100 + WARMUP - 1, 0, 0] += 400.0  # inside the new warm-up: no alert
    trace = candidate.trace(values, ts)
    assert not trace.alert_open[100 : 100 + WARMUP].any()


def test_state_round_trips_through_a_snapshot(candidate: Candidate) -> None:
    if not candidate.stateful:
        pytest.skip(f"{candidate.name} carries no state between calls")
    values = normal_values(160, 2)
    values[130:140, 1, 0] += 50.0
    ts = times(160)
    straight = streaming_trace(values, ts)
    detector = tiny_detector()
    table = detector.new_table()
    first = _stream(detector, table, values[:80], ts[:80], 0)
    restored = tiny_detector()
    fresh = restored.new_table()
    fresh.restore(table.snapshot())
    second = _stream(restored, fresh, values[80:], ts[80:], 80)
    np.testing.assert_allclose(np.concatenate([first.score, second.score]), straight.score)
    np.testing.assert_array_equal(
        np.concatenate([first.alert_open, second.alert_open]), straight.alert_open
    )


@pytest.mark.parametrize("name", ["streaming LSTM-AE"])
def test_readings_inside_an_alert_do_not_teach_normal(name: str) -> None:
    """A sustained fault keeps its alert open: what it shows is not learnt as normal.
    The baselines are left out by design: the rolling z-score's window of raw readings and
    the sliding-window LSTM-AE's normaliser learn from every reading, as such detectors are
    usually deployed (their calibration holds back alert readings like the detector's)."""
    candidate = next(c for c in CANDIDATES if c.name == name)
    values = normal_values(400, 1)
    values[150:, 0, 0] += 40.0  # a level that stays off for 250 readings
    trace = candidate.trace(values, times(400))
    assert trace.in_alert[150:, 0].mean() >= 0.9
