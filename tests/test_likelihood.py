"""The tail-probability score (detect/likelihood.py) on plain tensors: the same calibrated
score is rare on a quiet stream and ordinary on a bursty one; a noise-free stream's spread
has a floor; readings that may not teach leave the distribution unchanged; on a heavy-tailed
score the power shape's tail units mean what they say and the Gaussian's do not. Then the detector
with ``score_tail_horizon`` set: it scores, alerts on a step and snapshots its new columns."""

from __future__ import annotations

import dataclasses

import torch

from streamlstm import config as config_mod
from streamlstm.detect.columns import Col
from streamlstm.detect.detector import Detector
from streamlstm.detect.likelihood import TAIL_PRIOR, learn_tail, tail_score, tail_start
from tests.helpers import series, tiny_config, tiny_model


def _state(b: int = 1) -> dict[str, torch.Tensor]:
    return {
        Col.TAIL_MU: torch.full((b,), TAIL_PRIOR[0]),
        Col.TAIL_DEV: torch.full((b,), TAIL_PRIOR[1]),
        Col.TAIL_N: torch.zeros(b),
        Col.TAIL_SHORT: torch.full((b,), TAIL_PRIOR[0]),
    }


def _learnt(raw: torch.Tensor, shape: str = "gaussian") -> dict[str, torch.Tensor]:
    """The state after learning every row of ``raw`` (T, B)."""
    b = raw.shape[1]
    state = {name: torch.full((b,), fill) for name, fill in tail_start(shape).items()}
    learn = torch.ones(b, dtype=torch.bool)
    for t in range(raw.shape[0]):
        state.update(learn_tail(raw[t], state, learn, 500, shape))
    return state


def _exceedance(shape: str, raw: torch.Tensor, threshold: float) -> float:
    """Share of ``raw``'s second half that scores at or above ``threshold`` in tail units,
    against the distribution learnt from its first half."""
    half = raw.shape[0] // 2
    state = _learnt(raw[:half], shape)
    score, _ = tail_score(raw[half:, 0], state, 1, shape)
    return float((score >= threshold).float().mean())


def test_on_a_power_law_score_the_power_shape_keeps_its_promise_and_the_gaussian_does_not() -> None:
    # A calibrated score whose survival falls as score^-1.5 (Pareto, index 1.5): what the
    # NAB series' scores look like outside alerts (index ~1.1, likelihood.py).
    gen = torch.Generator().manual_seed(3)
    u = torch.rand(40_000, 1, generator=gen)
    raw = u.pow(-1.0 / 1.5) - 1.0
    power = _exceedance("power", raw, 2.0)  # promised: 1 in 100
    gaussian = _exceedance("gaussian", raw, 2.0)
    assert 0.002 < power < 0.05
    assert gaussian > 0.04  # "1 in 100" on one reading in 25 or more
    assert _exceedance("gaussian", raw, 8.0) > 0.01  # "1 in 10^8" on 1 in 100
    assert _exceedance("power", raw, 4.0) < 0.005


def test_the_same_score_is_rarer_on_a_quiet_stream_than_on_a_bursty_one() -> None:
    gen = torch.Generator().manual_seed(0)
    quiet = 1.0 + 0.3 * torch.randn(800, generator=gen).abs()
    bursty = 1.0 + 3.0 * torch.randn(800, generator=gen).abs() ** 2  # heavy upper tail
    state = _learnt(torch.stack([quiet, bursty], dim=1))
    score, _ = tail_score(torch.tensor([8.0, 8.0]), state, short_len=1)
    assert float(score[0]) > 10.0  # far out on the quiet stream
    assert float(score[1]) < 3.0  # an everyday burst on the other
    assert float(score[0]) > 3 * float(score[1])


def test_a_noise_free_streams_spread_has_a_floor() -> None:
    state = _learnt(torch.zeros(500, 1))  # a score that never moves
    flicker, _ = tail_score(torch.tensor([0.3]), state, short_len=1)
    assert float(flicker) < 3.0  # a flicker of 0.3 z is not an anomaly ...
    step, _ = tail_score(torch.tensor([3.0]), state, short_len=1)
    assert float(step) > 15.0  # ... a 3 z error still is


def test_the_short_window_smooths_and_a_lone_extreme_reading_still_counts() -> None:
    state = _learnt(torch.ones(300, 1))
    one, short = tail_score(torch.tensor([40.0]), state, short_len=5)
    assert abs(float(short) - (TAIL_PRIOR[0] + (40.0 - TAIL_PRIOR[0]) / 5)) < 1e-5
    plain, _ = tail_score(torch.tensor([40.0]), state, short_len=1)
    assert 5.0 < float(one) < float(plain)


def test_readings_that_may_not_teach_leave_the_distribution_unchanged() -> None:
    state = _learnt(torch.ones(100, 2))
    learn = torch.tensor([False, True])
    after = learn_tail(torch.tensor([50.0, 50.0]), state, learn, 500)
    for name in (Col.TAIL_MU, Col.TAIL_DEV, Col.TAIL_N):
        assert float(after[name][0]) == float(state[name][0])
        assert float(after[name][1]) != float(state[name][1])


def _tail_detector() -> Detector:
    base = tiny_config()
    raw = base.model_dump()
    raw["detector"].update(score_tail_horizon=200, score_tail_short=2)
    raw["alerts"].update(enter=5.0, exit=2.0, critical=9.0)
    cfg = config_mod.from_dict(raw)
    return Detector(tiny_model(seed=1), cfg.detector, cfg.alerts)


def test_the_detector_scores_in_tail_units_alerts_on_a_step_and_snapshots_it() -> None:
    det = _tail_detector()
    table = det.new_table()
    readings = series("pump-3", 200, seed=5)
    for r in readings[:150]:
        det.score(table, [r])
    row = table.rows_for(["pump-3"])[0]
    learnt = {name: float(table.dev[name][int(row[0])]) for name in (Col.TAIL_N, Col.TAIL_MU)}
    assert learnt[Col.TAIL_N] > 50  # learnt past the warm-up
    shifted = [
        dataclasses.replace(r, values=tuple(v + 60.0 for v in r.values)) for r in readings[150:]
    ]
    events = [e for r in shifted for e in det.score(table, [r]).events]
    assert any(e.event == "open" for e in events)
    assert all(e.threshold == 5.0 for e in events if e.event == "open")
    restored = det.new_table()
    assert restored.restore(table.snapshot())[0] == ["pump-3"]
    mine, theirs = int(row[0]), int(restored.rows_for(["pump-3"])[0][0])
    for name in (Col.TAIL_MU, Col.TAIL_DEV, Col.TAIL_N, Col.TAIL_SHORT):
        assert float(restored.dev[name][theirs]) == float(table.dev[name][mine])
