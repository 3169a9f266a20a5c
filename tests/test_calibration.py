"""The per-stream normaliser (calibration.normalise) on plain tensors: with a trend horizon
the level follows a ramp without lag, so the ramp neither leaves a lasting offset nor
inflates the variance, and the jump where a drift ends stays full size. Then the
calibrated columns: errors, and input deviations with ``score_inputs``."""

from __future__ import annotations

import math

import pytest
import torch

from streamlstm.config import DetectorConfig
from streamlstm.detect.calibration import (
    INPUT_PRIOR,
    GroupPrior,
    calibration_horizons,
    feature_z,
    score_statistics,
)
from streamlstm.detect.columns import Col
from streamlstm.detect.normalise import NORM_START, learn_quantum
from streamlstm.detect.seasons import season_phase, season_profiles, season_share, season_state
from tests.helpers import calibrate, normalise


def _run(
    values: list[float],
    trend_horizon: float | None,
    observed: list[bool] | None = None,
    start: tuple[float, float] = (0.0, 1.0),
    **det_update,
):
    """z per reading and the final state; ``start`` is the (mean, var) a row starts from;
    ``det_update``: other ``DetectorConfig`` fields."""
    det = DetectorConfig(trend_horizon=trend_horizon, **det_update)
    state = {
        "mean": torch.full((1, 1), start[0]),
        "var": torch.full((1, 1), start[1]),
        "var_ref": torch.zeros(1, 1),
        "n_obs": torch.zeros(1, 1),
    }
    if trend_horizon:
        state["trend"] = torch.zeros(1, 1)
    z_out = []
    for t, v in enumerate(values):
        m = torch.tensor([[1.0 if observed is None or observed[t] else 0.0]])
        x = torch.tensor([[v]]) * m
        z_out.append(float(normalise(x, m, state, det)))
    return z_out, state


def test_a_stream_is_normalised_on_its_own_scale_whatever_it_starts_from() -> None:
    """A 0.05-unit sensor in a group whose raw values are in the thousands (NAB's key-hold
    series beside its taxi counts): it must not be flattened to z = 0 by the group's scale."""
    noise = torch.randn(400, generator=torch.Generator().manual_seed(1))
    values = [0.05 + 0.01 * float(e) for e in noise] + [0.05 + 0.05]  # then a 5-sigma step
    z, state = _run(values, None, start=(15_000.0, 5_000.0**2))
    assert z[:NORM_START] == [0.0] * NORM_START  # no statistics yet: no opinion
    assert abs(float(state["mean"]) - 0.05) < 0.01
    assert 3.0 < z[-1] < 8.0
    typical = sum(abs(v) for v in z[NORM_START:-1]) / len(z[NORM_START:-1])
    assert 0.4 < typical < 1.5  # unit-scale noise, as for any other stream


def _ramp_then_drop(n_flat: int = 300, n_ramp: int = 300, slope: float = 0.05) -> list[float]:
    """Unit noise, flat, then a ramp of 15 sigmas, then back to 0 (a sensor re-zeroed)."""
    clean = [0.0] * n_flat + [slope * (k + 1) for k in range(n_ramp)] + [0.0] * 5
    noise = torch.randn(len(clean), generator=torch.Generator().manual_seed(0))
    return [v + float(e) for v, e in zip(clean, noise, strict=True)]


def test_a_ramp_is_followed_without_lag_and_its_end_stays_a_full_jump() -> None:
    values = _ramp_then_drop()
    end = 600  # index of the first reading after the ramp
    z_lag, s_lag = _run(values, None)
    z_holt, s_holt = _run(values, 10.0)
    late = slice(end - 100, end)
    mean_lag = sum(z_lag[late]) / 100
    mean_holt = sum(z_holt[late]) / 100
    # Without a slope the level lags the ramp: a lasting positive offset in z.
    assert mean_lag > 0.5
    assert abs(mean_holt) < 0.3
    # The lag inflates the variance it is measured with; the slope keeps it near the noise.
    assert float(s_lag["var"]) > 2.0 * float(s_holt["var"])
    # The drop back to 0 at the end: far more sigmas with the slope than without.
    assert z_holt[end] < -8.0
    assert z_holt[end] < 1.5 * z_lag[end]


def _step_in_the_start(trend_after_start: bool):
    """Unit noise, then a 6-sigma step at reading 200: inside the level's count-based start
    (``norm_horizon`` 1000: it lasts 999 readings)."""
    noise = torch.randn(400, generator=torch.Generator().manual_seed(3))
    values = [float(e) + (6.0 if k >= 200 else 0.0) for k, e in enumerate(noise)]
    return _run(values, 10.0, norm_horizon=1000, trend_after_start=trend_after_start)


def test_a_step_in_the_start_is_no_slope_with_trend_after_start() -> None:
    """``trend_after_start``: while the level is a running mean of its first readings, a
    step teaches it no slope, so the step stays above the level; with the slope learnt from
    the start, the level ramps after the step and overshoots it (z turns negative)."""
    z_ramped, s_ramped = _step_in_the_start(False)
    z_kept, s_kept = _step_in_the_start(True)
    assert float(s_kept["trend"]) == 0.0
    assert float(s_ramped["trend"]) != 0.0
    late = slice(350, 400)
    assert sum(z_ramped[late]) / 50 < -0.5  # the ramp overshot the step
    assert sum(z_kept[late]) / 50 > 0.5  # the step is still above the level
    assert float(s_ramped["mean"]) > 6.0 > float(s_kept["mean"])


def test_after_the_start_the_slope_is_learnt_as_before() -> None:
    """Past the start (``norm_horizon`` 60, a ramp from reading 300) the slope follows the
    ramp with ``trend_after_start`` too, and the drift's end stays a full jump."""
    values = _ramp_then_drop()
    z, state = _run(values, 10.0, trend_after_start=True)
    _, early = _run(values[:50], 10.0, trend_after_start=True)
    assert float(early["trend"]) == 0.0  # 50 readings: still in the start
    assert abs(sum(z[500:600]) / 100) < 0.3
    assert z[600] < -8.0
    assert float(state["trend"]) > 0.0


def test_a_missing_reading_moves_neither_level_nor_slope() -> None:
    values = [float(k) for k in range(200)]
    _, before = _run(values, 10.0)
    _, after = _run([*values, 0.0], 10.0, observed=[True] * 200 + [False])
    assert torch.equal(before["mean"], after["mean"])
    assert torch.equal(before["trend"], after["trend"])
    assert float(before["trend"]) > 0.5  # it did learn the slope of 1 per reading


def test_without_a_trend_horizon_no_slope_is_kept() -> None:
    _, state = _run([float(k) for k in range(50)], None)
    assert "trend" not in state


def test_input_deviations_are_extra_columns_with_their_own_horizon() -> None:
    feat_err = torch.tensor([[0.04, 0.09]])  # (B=1, F=2)
    win_m = torch.ones(1, 4, 2)
    z, m = torch.tensor([[3.0, -0.5]]), torch.tensor([[1.0, 0.0]])
    plain, _ = score_statistics(feat_err, win_m, z, m, with_inputs=False)
    stats, seen = score_statistics(feat_err, win_m, z, m, with_inputs=True)
    assert plain.shape == (1, 3) and stats.shape == (1, 5)
    assert torch.equal(stats[:, :3], plain)
    assert stats[0, 3] == pytest.approx(3.0, abs=1e-3)  # |z| in the errors' RMS form
    assert seen[0, 3:].tolist() == [1.0, 0.0]  # a missing input cannot be judged
    det = DetectorConfig(score_inputs=True, calibration_horizon=300, norm_scale_horizon=1000)
    assert calibration_horizons(det, 2).tolist() == [300.0] * 3 + [1000.0] * 2
    # A scale in stream time has no horizon in readings: the errors' one, not norm_horizon.
    timed = DetectorConfig(score_inputs=True, norm_horizon_s=3600, calibration_horizon=400)
    assert calibration_horizons(timed, 2).tolist() == [400.0] * 5
    counted = DetectorConfig(score_inputs=True, norm_horizon=90)
    assert calibration_horizons(counted, 2).tolist() == [300.0] * 3 + [90.0] * 2
    # Per-column horizons act as separate calls with each horizon would.
    state = {"cal_mu": torch.zeros(1, 5), "cal_dev": torch.ones(1, 5), "cal_n": torch.tensor([5e3])}
    learn = torch.tensor([True])
    _, _, both = calibrate(stats, seen, state, learn, calibration_horizons(det, 2))
    _, _, fast = calibrate(stats, seen, state, learn, 300.0)
    _, _, slow = calibrate(stats, seen, state, learn, 1000.0)
    assert torch.allclose(both["cal_mu"][:, :3], fast["cal_mu"][:, :3])
    assert torch.allclose(both["cal_mu"][:, 3:], slow["cal_mu"][:, 3:])
    assert not torch.allclose(fast["cal_mu"][:, 3], slow["cal_mu"][:, 3])


def test_a_prior_without_input_columns_is_padded_and_one_with_more_is_cut() -> None:
    prior = GroupPrior((0.0, 0.0), (1.0, 1.0), (1.0, 1.0), (0.5, 0.6, 0.7), (0.1, 0.1, 0.1))
    wide = prior.tensors(torch.device("cpu"), 5)
    assert wide["cal_mu"].tolist() == pytest.approx([0.5, 0.6, 0.7, *[INPUT_PRIOR[0]] * 2])
    assert wide["cal_dev"].tolist() == pytest.approx([0.1, 0.1, 0.1, *[INPUT_PRIOR[1]] * 2])
    assert prior.tensors(torch.device("cpu"))["cal_mu"].shape == (3,)
    learnt = GroupPrior((0.0,), (1.0,), (1.0,), (0.5, 0.6, 0.9), (0.1, 0.1, 0.2))
    assert learnt.tensors(torch.device("cpu"), 2)["cal_mu"].tolist() == pytest.approx([0.5, 0.6])


def test_feature_z_takes_the_larger_of_error_and_input_deviation() -> None:
    z = torch.tensor([[1.0, 5.0, 2.0, 4.0, 0.5]])  # F=2: errors 1, 5; total 2; inputs 4, 0.5
    assert feature_z(z, 2).tolist() == [[4.0, 5.0]]
    assert feature_z(z[:, :3], 2).tolist() == [[1.0, 5.0]]


def _daily(days: int, per_day: int = 48, low_days=()) -> list[float]:
    """A square wave, high from 08:00 to 20:00, except on ``low_days`` (day 0 = epoch day 0)."""
    out = []
    for d in range(days):
        for k in range(per_day):
            high = per_day // 3 <= k < 5 * per_day // 6 and d not in low_days
            out.append(10.0 + (5.0 if high else 0.0) + 0.1 * ((k * 7 + d * 3) % 5 - 2))
    return out


def _run_daily(values: list[float], periods: list[float], per_day: int = 48) -> list[float]:
    det = DetectorConfig(season_periods_s=periods)
    state = {k: torch.zeros(1, 1) for k in ("mean", "var", "var_ref", "n_obs")}
    state["var"] = torch.ones(1, 1)
    if periods:
        state.update(season_state(1, 1, det))
    ts = torch.arange(len(values), dtype=torch.float64) * (86400.0 / per_day)
    phase = season_phase(ts, det)
    out = []
    for t, v in enumerate(values):
        p = None if phase is None else phase[t : t + 1]
        out.append(abs(float(normalise(torch.tensor([[v]]), torch.ones(1, 1), state, det, p))))
    return out


DAY, WEEK = 86400.0, 604800.0


def test_a_daily_profile_expects_the_rhythm_and_shows_the_day_that_breaks_it() -> None:
    per_day = 48
    late = slice(7 * per_day, 10 * per_day)  # days 8-10, after the profile has been learnt
    assert max(_run_daily(_daily(10), [DAY])[late]) < 2.5  # the daily switches are expected
    missing_peak = slice(8 * per_day + per_day // 3, 8 * per_day + per_day // 2)
    broken = _daily(10, low_days={8})
    assert max(_run_daily(broken, [DAY])[missing_peak]) > 10.0  # that day stands out
    # Without the profile the short level follows the day down: the missing peak hides.
    assert max(_run_daily(broken, [])[missing_peak]) < 3.0


def test_a_weekly_profile_expects_quiet_weekends_on_top_of_the_day() -> None:
    per_day, weeks = 48, 6
    weekends = {d for d in range(7 * weeks) if d % 7 in (2, 3)}  # epoch day 0 is a Thursday
    last_weekend = slice((7 * (weeks - 1) + 2) * per_day, (7 * (weeks - 1) + 4) * per_day)
    normal = _daily(7 * weeks, low_days=weekends)
    assert max(_run_daily(normal, [DAY])[last_weekend]) > 3.0  # a day-only profile: surprise
    assert max(_run_daily(normal, [DAY, WEEK])[last_weekend]) < 2.5  # with the week: expected
    broken = _daily(7 * weeks, low_days=weekends | {7 * (weeks - 1)})  # a Thursday off
    thursday = slice(7 * (weeks - 1) * per_day, (7 * (weeks - 1) + 1) * per_day)
    assert max(_run_daily(broken, [DAY, WEEK])[thursday]) > 10.0


def test_season_bins_are_laid_end_to_end_and_configs_are_checked() -> None:
    det = DetectorConfig(season_periods_s=[DAY, WEEK])
    assert det.season_bins() == [48, 336]
    ts = torch.tensor([0.0, 1799.0, 1800.0, DAY - 1.0, DAY, WEEK + 1800.0], dtype=torch.float64)
    assert season_phase(ts, det).tolist() == [
        [0, 48], [0, 48], [1, 49], [47, 48 + 47], [0, 48 + 48], [1, 49]
    ]  # fmt: skip
    assert season_phase(ts, DetectorConfig()) is None
    for bad in ([WEEK, DAY], [DAY, DAY], [1000.0]):
        with pytest.raises(ValueError, match="season_periods_s"):
            DetectorConfig(season_periods_s=bad)


def test_a_profile_learns_per_bin_visit_whatever_the_sampling_rate() -> None:
    """Six 5-minute readings in a bin count as one visit, like one 30-minute reading: the
    profile's memory is in days, so one odd morning does not rewrite it."""
    det = DetectorConfig(season_periods_s=[DAY], season_horizon=5.0)
    assert season_share(torch.tensor([300.0, 1800.0, 7200.0, torch.inf]), det).tolist() == [
        pytest.approx(1 / 6), 1.0, 1.0, 1.0
    ]  # fmt: skip

    def learnt(per_day: int) -> tuple[float, float]:
        values = _daily(20, per_day=per_day)
        state = {k: torch.zeros(1, 1) for k in ("mean", "var", "var_ref", "n_obs")}
        state.update(season_state(1, 1, det))
        step = 86400.0 / per_day
        ts = torch.arange(len(values), dtype=torch.float64) * step
        phase, share = season_phase(ts, det), season_share(torch.full_like(ts, step), det)
        for t, v in enumerate(values):
            x = torch.tensor([[v]])
            normalise(x, torch.ones(1, 1), state, det, phase[t : t + 1], share[t : t + 1])
        bin_30 = float(season_profiles(state, torch.full((1, 1, 1), 30))[0, 0, 0])
        return float(state[Col.SEASON_N][0, 0, 0]), bin_30

    (visits_30m, high_30m), (visits_5m, high_5m) = learnt(48), learnt(288)
    # Visits are counted per season in passes: 20 days, less the stream's first NORM_START
    # readings (they teach nothing), at either rate.
    assert visits_30m == pytest.approx(20.0 - NORM_START / 48, abs=1e-3)
    assert visits_5m == pytest.approx(20.0 - NORM_START / 288, abs=1e-3)
    assert high_30m > 1.0 and high_5m > 1.0  # 15:00 sits above the level at either rate


def _still_then_step(with_quantum: bool) -> tuple[float, dict]:
    """A thermometer that reports to 0.1: it moves a few times, sits at 37.0 for 600
    readings, then steps to 37.1. Returns that step's z and the final state."""
    det = DetectorConfig()
    state = {
        "mean": torch.zeros(1, 1),
        "var": torch.ones(1, 1),
        "var_ref": torch.zeros(1, 1),
        "n_obs": torch.zeros(1, 1),
    }
    if with_quantum:
        state["quantum"] = torch.full((1, 1), math.inf)
    last_x = torch.full((1, 1), math.nan)
    values = [37.0, 37.1, 37.2, 37.1] * 5 + [37.0] * 600 + [37.1]
    m = torch.ones(1, 1)
    for v in values:
        x = torch.tensor([[v]])
        z = float(normalise(x, m, state, det))
        if with_quantum:
            state["quantum"] = learn_quantum(x, m, last_x, state["quantum"])
        last_x = x
    return z, state


def test_a_quantised_sensor_that_sat_still_is_a_few_std_off_on_its_next_step() -> None:
    """Its variance falls towards 0 while it sits still, so without its resolution the next
    0.1 step is past ``clip_sigma`` (20; unclipped, thousands of std). Its rounding alone is
    noise of 0.1 / sqrt(12), so with the resolution learnt the step is ~3.5 std."""
    z_without, _ = _still_then_step(with_quantum=False)
    z_with, state = _still_then_step(with_quantum=True)
    assert z_without == pytest.approx(DetectorConfig().clip_sigma)
    assert float(state["quantum"]) == pytest.approx(0.1, abs=1e-4)
    assert z_with == pytest.approx(12**0.5, rel=0.05)


def test_the_resolution_is_the_smallest_change_seen_and_ignores_missing_readings() -> None:
    x = torch.tensor([[1.0, 5.0, 2.0]])
    m = torch.tensor([[1.0, 1.0, 0.0]])  # the third is missing: its "change" is no change
    last = torch.tensor([[1.5, 5.0, 9.0]])
    quantum = torch.tensor([[0.7, math.inf, math.inf]])
    got = learn_quantum(x, m, last, quantum)
    assert got.tolist() == [[0.5, math.inf, math.inf]]  # 5.0 -> 5.0 did not move
    never = learn_quantum(x, m, torch.full((1, 3), math.nan), quantum)
    assert never.tolist() == quantum.tolist()  # no previous reading: nothing learnt
