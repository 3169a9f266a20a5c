"""Issue 16: a normal state that anomalies cannot teach (``AlertConfig.hold_normal``) and
the explicit answer to "is this the new normal?" (``rebaseline_after_s``). Plain tensors
and readings; no Kafka."""

from __future__ import annotations

import pytest
import torch

from streamlstm.config import AlertConfig, DetectorConfig
from streamlstm.detect import alerts, holding
from streamlstm.detect.columns import Col
from streamlstm.detect.detector import Detector
from streamlstm.records import Reading
from tests.helpers import series, tiny_config, tiny_detector, tiny_model

# Every column that holds the stream's normal: the normaliser's and the calibrations'.
NORMAL = (Col.MEAN, Col.TREND, Col.VAR, Col.VAR_DN, Col.VAR_REF, Col.N_OBS, Col.SEASON,
          Col.SEASON_N, Col.CAL_MU, Col.CAL_DEV, Col.CAL_N, Col.IN_MU, Col.IN_DEV)  # fmt: skip


def _full_detector(hold: str) -> Detector:
    """Every optional normaliser column present: slope, split scale, seasons, inputs scored."""
    det_cfg = DetectorConfig(
        warmup_readings=5,
        burn_in_readings=2,
        max_gap_s=600,
        trend_horizon=10,
        split_scale=True,
        season_periods_s=[86400],
        score_inputs=True,
        norm_scale_horizon=100,
        calibration_fade=20,  # the 40 warm readings end it: holds apply from then on
    )
    alert_cfg = tiny_config(hold_normal=hold).alerts
    return Detector(tiny_model(), det_cfg, alert_cfg)


def _warm_state(det: Detector) -> dict[str, torch.Tensor]:
    table = det.new_table()
    det.score(table, series("a", 40))
    return table.gather(torch.as_tensor([table.row("a")]))


def _step(det: Detector, state: dict, phase: int, x: tuple[float, ...]) -> dict:
    values = torch.tensor([x], dtype=torch.float32)
    ts = torch.tensor([1.767e9 + 60.0 * 40], dtype=torch.float64)
    from streamlstm.detect.seasons import season_phase, season_share

    return det.step_rows(
        state,
        values,
        torch.tensor([False]),
        torch.tensor([phase], dtype=torch.int8),
        season_phase(ts, det.cfg),
        season_share(torch.tensor([60.0], dtype=torch.float64), det.cfg),
    )


@pytest.mark.parametrize("phase", [alerts.PHASE_PENDING, alerts.PHASE_OPEN])
def test_inside_an_open_or_pending_alert_no_normal_column_learns(phase: int) -> None:
    det = _full_detector("pending")
    state = _warm_state(det)
    assert set(NORMAL) <= set(state)
    before = {k: v.clone() for k, v in state.items()}
    out = _step(det, state, phase, (71.0, 97.2, 16.5))  # an ordinary reading
    assert bool(out["held"][0])
    for name in NORMAL:
        assert torch.equal(state[name], before[name]), name
    # The LSTM state and the window still advance.
    assert not torch.equal(state[Col.H], before[Col.H])
    assert not torch.equal(state[Col.WIN_X], before[Col.WIN_X])


def test_an_idle_stream_learns_and_a_reading_above_enter_is_held() -> None:
    det = _full_detector("pending")
    state = _warm_state(det)
    before = {k: v.clone() for k, v in state.items()}
    out = _step(det, state, alerts.PHASE_IDLE, (71.0, 97.2, 16.5))
    assert not bool(out["held"][0])
    assert not torch.equal(state[Col.MEAN], before[Col.MEAN])
    assert not torch.equal(state[Col.CAL_N], before[Col.CAL_N])
    state = _warm_state(det)
    before = {k: v.clone() for k, v in state.items()}
    out = _step(det, state, alerts.PHASE_IDLE, (71.0, 97.2, 90.0))  # far above enter
    assert float(out["score"][0]) >= det.alerts.cfg.enter and bool(out["held"][0])
    assert torch.equal(state[Col.MEAN], before[Col.MEAN])


def test_policy_open_lets_a_pending_reading_teach_and_off_keeps_only_calibration() -> None:
    state = _warm_state(_full_detector("open"))
    before = state[Col.MEAN].clone()
    _step(_full_detector("open"), state, alerts.PHASE_PENDING, (71.0, 97.2, 16.5))
    assert not torch.equal(state[Col.MEAN], before)
    det = _full_detector("off")
    state = _warm_state(det)
    before = {k: v.clone() for k, v in state.items()}
    out = _step(det, state, alerts.PHASE_OPEN, (71.0, 97.2, 16.5))
    assert not bool(out["held"][0])
    assert not torch.equal(state[Col.MEAN], before[Col.MEAN])
    assert torch.equal(state[Col.CAL_MU], before[Col.CAL_MU])


def _shifted(n_before: int, n_after: int) -> list[Reading]:
    """A stream whose third feature jumps by 40 and stays there (a sustained fault). The
    callers jump after the stream's calibration fade (122 readings): before it, nothing is
    held back (calibration.learning_own)."""
    readings = series("a", n_before + n_after, seed=5)
    return [
        r
        if i < n_before
        else Reading("a", r.ts, (*r.values[:2], r.values[2] + 40.0), "g", "t", 0, r.offset)
        for i, r in enumerate(readings)
    ]


def test_a_sustained_shift_stays_in_one_alert_while_the_normal_is_held() -> None:
    det = tiny_detector()
    res = det.score(det.new_table(), _shifted(150, 300))
    kinds = [e.event for e in res.events]
    assert kinds.count("open") == 1 and "resolve" not in kinds
    assert all(res.in_alert[-250:])


def test_rebaseline_ends_a_long_alert_visibly_and_the_stream_relearns() -> None:
    det = tiny_detector(rebaseline_after_s=3600.0)  # readings are 60 s apart
    table = det.new_table()
    res = det.score(table, _shifted(150, 300))
    events = [e for e in res.events if e.event in ("open", "rebaseline")]
    assert [e.event for e in events[:2]] == ["open", "rebaseline"]
    opened, rebased = events[0], events[1]
    assert rebased.alert_id == opened.alert_id
    assert rebased.to_dict()["open_s"] >= 3600.0
    at = res.index.index(rebased.source[2])
    assert res.warming[at + 1 : at + 6] == [True] * 5  # re-learning: a fresh warm-up
    # After re-learning, the new level is normal: no alert at the end of the stream.
    assert not any(res.in_alert[-100:])


def test_rebaseline_after_history_ends_an_alert_as_old_as_the_normal_and_not_a_younger_one() -> (
    None
):
    """Readings 60 s apart. A shift after 150 readings opens an alert on a normal of about
    9,000 s; with ``rebaseline_after_history`` 1 it ends in a rebaseline about 9,000 s
    later, the stream warms up again, and the new level becomes its normal. The same
    300-reading shift after 400 readings (history 24,000 s) stays one open alert."""
    det = tiny_detector(rebaseline_after_history=1.0)
    res = det.score(det.new_table(), _shifted(150, 300))
    events = [e for e in res.events if e.event in ("open", "rebaseline")]
    assert [e.event for e in events[:2]] == ["open", "rebaseline"]
    opened, rebased = events[0], events[1]
    history_s = opened.ts - series("a", 1, seed=5)[0].ts  # from the stream's first reading
    assert history_s <= rebased.ts - opened.ts < history_s + 60.0
    at = res.index.index(rebased.source[2])
    assert res.warming[at + 1 : at + 6] == [True] * 5
    assert not any(res.in_alert[-100:])
    det = tiny_detector(rebaseline_after_history=1.0)
    res = det.score(det.new_table(), _shifted(400, 300))
    kinds = [e.event for e in res.events]
    assert kinds.count("open") == 1 and "rebaseline" not in kinds and all(res.in_alert[-250:])


def test_rebaseline_off_by_default_and_validated() -> None:
    assert AlertConfig().rebaseline_after_s is None
    assert AlertConfig().hold_normal == "pending"
    with pytest.raises(ValueError):
        AlertConfig(rebaseline_after_s=0)
    assert AlertConfig().rebaseline_after_history is None
    with pytest.raises(ValueError):
        AlertConfig(rebaseline_after_history=0)
    with pytest.raises(ValueError):
        AlertConfig(hold_normal="sometimes")


def test_policy_features_holds_only_the_features_that_are_off() -> None:
    det = _full_detector("features")
    state = _warm_state(det)
    before = {k: v.clone() for k, v in state.items()}
    out = _step(det, state, alerts.PHASE_OPEN, (71.0, 97.2, 90.0))  # the third is far off
    assert bool(out["held"][0])
    assert float(out["z"][0, 2]) != 0.0
    moved = ~torch.isclose(state[Col.MEAN], before[Col.MEAN])[0]
    assert moved.tolist() == [True, True, False]  # the sensor that is off keeps its normal
    assert torch.equal(state[Col.VAR][0, 2], before[Col.VAR][0, 2])
    assert torch.equal(state[Col.N_OBS][0, 2], before[Col.N_OBS][0, 2])
    for name in (Col.CAL_MU, Col.CAL_DEV, Col.CAL_N, Col.IN_MU, Col.IN_DEV):
        assert torch.equal(state[name], before[name]), name  # calibration: the whole row


def test_held_features_latches_the_sensors_that_were_off_when_the_episode_began() -> None:
    z = torch.tensor([[0.5, -4.0, 1.0], [9.0, 9.0, 9.0], [0.1, 0.2, 0.3]])
    stuck = torch.zeros(3, 3, dtype=torch.bool)
    no_set = torch.zeros(3, 3, dtype=torch.uint8)
    held = torch.tensor([True, False, True])
    first, held_set = holding.held_features("features", held, z, stuck, no_set)
    # row 0: the second sensor is off; row 1: not held; row 2: held, nothing off: whole row
    assert first.tolist() == [[False, True, False], [False] * 3, [True] * 3]
    assert held_set.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0]]
    # Later in the episode the set stays, whichever sensors are off now; a stuck one joins
    # for as long as it is stuck; once the row is no longer held the set is cleared.
    later = torch.tensor([[5.0, 0.1, 0.2], [0.0, 0.0, 0.0], [0.1, 4.0, 0.2]])
    stuck_now = torch.tensor([[False, False, True], [False] * 3, [False] * 3])
    second, held_set = holding.held_features("features", held, later, stuck_now, held_set)
    assert second.tolist() == [[False, True, True], [False] * 3, [False, True, False]]
    assert held_set.tolist() == [[0, 1, 0], [0, 0, 0], [0, 1, 0]]
    _, held_set = holding.held_features(
        "features", torch.tensor([False] * 3), later, stuck, held_set
    )
    assert not held_set.any()


def test_every_other_policy_holds_whole_rows() -> None:
    held = torch.tensor([True, False])
    z = torch.tensor([[0.5, -4.0, 1.0], [9.0, 9.0, 9.0]])
    stuck = torch.tensor([[False, False, True], [True, True, True]])
    for policy in ("pending", "open", "off"):
        whole, held_set = holding.held_features(policy, held, z, stuck, None)
        assert whole.tolist() == [[True] * 3, [False] * 3] and held_set is None


def test_only_policy_features_adds_the_held_set_column() -> None:
    assert Col.HOLD_SET in _full_detector("features").new_table().dev
    assert Col.HOLD_SET not in _full_detector("pending").new_table().dev
