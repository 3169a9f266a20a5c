"""``alerts.hold_from`` (readings stop teaching the normal below ``enter``) and
``alerts.exit_when_back`` (no resolve while a held sensor is still off). Plain arrays,
tensors and readings; no Kafka."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamlstm.config import AlertConfig
from streamlstm.detect import alerts, holding
from streamlstm.detect.columns import Col
from streamlstm.detect.detector import Detector
from tests.test_alerts import run
from tests.test_hold_normal import _full_detector, _step, _warm_state


def test_a_reading_between_hold_from_and_enter_is_held_and_one_below_is_not() -> None:
    phase = np.full(3, alerts.PHASE_IDLE, np.int8)
    score = np.array([3.9, 4.0, 6.9])
    no = np.zeros(3, bool)
    held, cal_held = holding.holding("pending", phase, score, no, no, 4.0)
    assert held.tolist() == [False, True, True] and cal_held.tolist() == held.tolist()
    held, _ = holding.holding("pending", phase, score, no, no, AlertConfig(enter=7).hold_score())
    assert not held.any()
    warming = np.ones(3, bool)  # never while warming up
    assert not holding.holding("features", phase, score, no, warming, 4.0)[0].any()


def test_hold_from_defaults_to_enter_and_may_not_exceed_it() -> None:
    assert AlertConfig(enter=6).hold_score() == 6
    assert AlertConfig(enter=6, hold_from=2.5).hold_score() == 2.5
    with pytest.raises(ValueError, match="hold_from"):
        AlertConfig(enter=6, hold_from=6.5)


def _detector(policy: str = "features", **alert_fields) -> Detector:
    det = _full_detector(policy)
    cfg = det.alerts.cfg.model_copy(update=alert_fields)
    return Detector(det.model, det.cfg, cfg)


def test_the_step_holds_from_hold_from() -> None:
    """An ordinary reading of a warm stream scores above a tiny ``hold_from``: held, its
    normal unchanged; the same reading with the default (``enter``) teaches the normal."""
    for hold_from, held in ((None, False), (1e-6, True)):
        det = _detector("pending", hold_from=hold_from)
        state = _warm_state(det)
        before = state[Col.MEAN].clone()
        out = _step(det, state, alerts.PHASE_IDLE, (71.0, 97.2, 16.5))
        assert 1e-6 <= float(out["score"][0]) < det.alerts.cfg.enter
        assert bool(out["held"][0]) is held
        assert torch.equal(state[Col.MEAN], before) is held


def test_still_off_asks_only_the_held_sensors_that_read() -> None:
    held_set = torch.tensor([[0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.uint8)
    z = torch.tensor([[0.1, -4.5, 0.2], [9.0, 0.5, 9.0], [3.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
    m = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    # row 0: the held sensor 4.5 std off; row 1: the held one is back, others off do not
    # count; row 2: the held sensor did not read; row 3: nothing held
    assert holding.still_off(held_set, z, m).tolist() == [True, False, False, False]


def test_the_step_reports_a_held_sensor_still_off_only_with_exit_when_back() -> None:
    for exit_when_back in (False, True):
        det = _detector(exit_when_back=exit_when_back)
        state = _warm_state(det)
        out = _step(det, state, alerts.PHASE_OPEN, (71.0, 97.2, 90.0))  # the third is off
        assert state[Col.HOLD_SET][0].tolist() == [0, 0, 1]
        assert bool(out["held_off"][0]) is exit_when_back


def test_an_alert_does_not_resolve_while_a_held_sensor_is_still_off() -> None:
    scores = [0, 6, 6, 1, 1, 1, 1, 1]
    assert run(scores, held_off=[False] * 8) == [(2, "open", "warning"), (4, "resolve", "warning")]
    off = [False, False, False, True, True, True, False, False]
    assert run(scores, held_off=off) == [(2, "open", "warning"), (7, "resolve", "warning")]
