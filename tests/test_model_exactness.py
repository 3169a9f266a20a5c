"""The central invariant: streaming == whole-sequence offline == any batching (<= 1e-5)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlstm.datafiles import Series
from streamlstm.detect.calibration import calibration_horizons
from streamlstm.detect.detector import Detector
from streamlstm.evaluation.baselines import calibrated_alerts
from streamlstm.records import Reading
from streamlstm.train.fit import (
    normalise_lanes,
    offline_feature_errors,
    offline_newest_statistics,
)
from tests.helpers import interleave, series, tiny_config, tiny_detector, tiny_model

TOL = 1e-5


def _stream_errors(
    readings: list[Reading], batch_sizes: list[int], det: Detector | None = None
) -> dict[tuple, float]:
    det = det or tiny_detector()
    table = det.new_table()
    out, i, k = {}, 0, 0
    while i < len(readings):
        size = batch_sizes[k % len(batch_sizes)]
        batch = readings[i : i + size]
        scored = det.score(table, batch)
        for j, idx in enumerate(scored.index):
            r = batch[idx]
            out[(r.stream, r.offset)] = scored.raw_error[j]
        i, k = i + size, k + 1
    return out


def _lanes(readings: list[Reading], det_cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Stream "a"'s readings normalised offline: (z, m) (T, 1, F)."""
    s = Series("a", np.array([r.ts for r in readings]), np.array([r.values for r in readings]))
    z, m, _ = normalise_lanes([s], tiny_model().prior, det_cfg, torch.device("cpu"))
    return z, m


def _streamed_minus_offline(
    readings: list[Reading], det_cfg, batch_sizes: list[int]
) -> tuple[float, torch.Tensor]:
    """Stream "a" scored online in ``batch_sizes`` against the offline pass under
    ``det_cfg``: (largest error difference, the offline inputs z)."""
    model = tiny_model()
    z, m = _lanes(readings, det_cfg)
    _, stats, _ = offline_feature_errors(model.net, z, m)
    det = Detector(model, det_cfg, tiny_config().alerts)
    streamed = _stream_errors(readings, batch_sizes, det)
    got = np.array([streamed[("a", r.offset)] for r in readings])
    return float(np.abs(got - stats[:, 0, -1].numpy()).max()), z


def test_streaming_equals_offline_whole_sequence() -> None:
    readings = series("a", 120, seed=1)
    model, cfg = tiny_model(), tiny_config()
    s = Series("a", np.array([r.ts for r in readings]), np.array([r.values for r in readings]))
    z, m, _ = normalise_lanes([s], model.prior, cfg.detector, torch.device("cpu"))
    _, stats, _ = offline_feature_errors(model.net, z, m)
    streamed = _stream_errors(readings, [1])
    got = np.array([streamed[("a", r.offset)] for r in readings])
    assert np.abs(got - stats[:, 0, -1].numpy()).max() <= TOL


def test_streaming_equals_offline_with_a_trend_following_level() -> None:
    """The trend and slow-scale options of the normaliser hold the invariant too."""
    readings = series("a", 120, seed=1)
    det_cfg = tiny_config().detector.model_copy(
        update={"trend_horizon": 10.0, "norm_scale_horizon": 50}
    )
    diff, z = _streamed_minus_offline(readings, det_cfg, [1])
    assert diff <= TOL
    plain, _ = _lanes(readings, tiny_config().detector)
    assert not torch.allclose(z, plain)  # the options did change the inputs


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5), n_streams=st.integers(1, 4))
def test_any_batching_across_streams_gives_the_same_errors(sizes, n_streams) -> None:
    streams = [series(f"s{i}", 30, seed=i, start_offset=1000 * i) for i in range(n_streams)]
    readings = interleave(*streams)
    one_by_one = _stream_errors(readings, [1])
    batched = _stream_errors(readings, sizes)
    assert one_by_one.keys() == batched.keys()
    diff = max(abs(one_by_one[k] - batched[k]) for k in one_by_one)
    assert diff <= TOL


def test_several_readings_of_one_stream_in_one_batch_run_in_order() -> None:
    readings = series("a", 50, seed=3)
    whole_batch = _stream_errors(readings, [50])
    singles = _stream_errors(readings, [1])
    assert max(abs(whole_batch[k] - singles[k]) for k in singles) <= TOL


@pytest.mark.parametrize("hold", ["pending", "features"])
def test_scores_and_alerts_do_not_depend_on_batching(hold: str) -> None:
    spiky = series("x", 80, seed=5)
    spiky[50] = Reading("x", spiky[50].ts, (200.0, 60.0, 50.0), "g", "t", 0, spiky[50].offset)
    readings = interleave(spiky, series("y", 80, seed=6, start_offset=500))

    def run(size: int):
        det = tiny_detector(calibration_fade=10, hold_normal=hold)  # holds from reading ~22
        table = det.new_table()
        scores, events = {}, []
        for i in range(0, len(readings), size):
            batch = readings[i : i + size]
            res = det.score(table, batch)
            scores.update(
                {
                    (batch[j].stream, batch[j].offset): s
                    for j, s in zip(res.index, res.score, strict=True)
                }
            )
            events += [(e.alert_id, e.event) for e in res.events]
        return scores, events

    s1, e1 = run(1)
    s7, e7 = run(7)
    # Relative as well as absolute: float32 rounding of a score of ~140 (inside the spike's
    # alert) differs by ~2e-4 between batch shapes on some CPUs' matmul kernels.
    assert all(abs(s1[k] - s7[k]) <= 1e-4 + 1e-5 * abs(s1[k]) for k in s1)
    assert sorted(e1) == sorted(e7)


@pytest.mark.parametrize(
    ("split_scale", "tail", "shape"),
    [(False, None, "gaussian"), (True, None, "gaussian"), (False, 200, "gaussian"),
     (False, 200, "power")],
)  # fmt: skip
def test_streamed_scores_equal_the_offline_calibration_with_input_deviations(
    split_scale: bool, tail: int | None, shape: str
) -> None:
    """With ``score_inputs`` the served score is the offline statistics (errors and input
    deviations, ``offline_feature_errors``) through the one ``calibrate``, reading by reading:
    the serving path and the offline path (training's prior, the baselines) cannot drift.
    The same with a two-piece scale (``split_scale``), and with the score in tail units
    (``score_tail_horizon``, thresholds in those units, either tail shape), which the
    baselines score in too."""
    readings = series("a", 150, seed=2)
    spike = readings[100]
    readings[100] = Reading("a", spike.ts, (130.0, *spike.values[1:]), "g", "t", 0, spike.offset)
    model, cfg = tiny_model(), tiny_config(calibration_fade=60)  # holds apply at the spike
    det_cfg = cfg.detector.model_copy(
        update={
            "score_inputs": True,
            "norm_scale_horizon": 80,
            "split_scale": split_scale,
            "score_tail_horizon": tail,
            "score_tail_shape": shape,
        }
    )
    if tail:  # the power shape's units are honest: 1 in 100 is already rare for 150 readings
        levels = {"enter": 4.0, "exit": 2.0} if shape == "gaussian" else {"enter": 2.0, "exit": 1.0}
        cfg = cfg.model_copy(update={"alerts": cfg.alerts.model_copy(update=levels)})
    det = Detector(model, det_cfg, cfg.alerts)
    scored = det.score(det.new_table(), readings)
    # The offline normaliser holds back the readings serving held back (inside the spike's
    # alert); the offline calibration then decides its own holds, which must agree.
    served_held = torch.tensor(scored.held).view(-1, 1)
    assert served_held[100] and served_held.sum() >= 3 and not served_held[:99].any()
    s = Series("a", np.array([r.ts for r in readings]), np.array([r.values for r in readings]))
    z, m, _ = normalise_lanes([s], model.prior, det_cfg, torch.device("cpu"), served_held)
    _, stats, seen = offline_feature_errors(model.net, z, m, with_inputs=True)
    assert stats.shape[-1] == 2 * len(model.features) + 1
    prior = model.prior.tensors(torch.device("cpu"), stats.shape[-1])
    horizon = calibration_horizons(det_cfg, len(model.features))
    newest = offline_newest_statistics(model.net, z, m, with_inputs=True)
    offline = calibrated_alerts(
        stats,
        seen,
        (prior["cal_mu"], prior["cal_dev"]),
        det_cfg,
        cfg.alerts,
        horizon=horizon,
        newest=newest,
    )
    assert np.abs(np.array(scored.score) - offline.score[:, 0]).max() <= 1e-4
    assert (offline.held[:, 0] == served_held[:, 0].numpy()).all()
    deviation = stats[:, 0, len(model.features) + 1]  # feature 0's input-deviation column
    assert deviation[100] > 10 * deviation.median()  # the spike shows in its own column


def test_streaming_equals_offline_with_a_season_profile() -> None:
    """The time-of-day profile (bins chosen by timestamp) holds the invariant too."""
    readings = series("a", 150, seed=4)
    det_cfg = tiny_config().detector.model_copy(
        update={"season_periods_s": [600.0, 1800.0], "season_bin_s": 300.0, "season_horizon": 3.0}
    )  # 60 s readings: 5 per bin, 5 passes over the longer season, 15 over the shorter
    diff, z = _streamed_minus_offline(readings, det_cfg, [1, 3])
    assert diff <= TOL
    plain, _ = _lanes(readings, tiny_config().detector)
    assert not torch.allclose(z, plain)  # the profile did change the inputs


def _time_horizon_inputs(readings: list[Reading], **update) -> torch.Tensor:
    return _lanes(readings, tiny_config().detector.model_copy(update=update))[0]


def test_a_horizon_in_seconds_is_the_horizon_in_readings_at_the_sampling_rate() -> None:
    """``norm_horizon_s``: 3600 s at one reading a minute (``series``) is 60 readings; at
    one reading a second, a 60 s horizon is the same 60 readings: the inputs match."""
    readings = series("a", 200, seed=2)
    by_count = _time_horizon_inputs(readings, norm_horizon=60, trend_horizon=10.0)
    by_time = _time_horizon_inputs(readings, norm_horizon_s=3600.0, trend_horizon=10.0)
    assert torch.allclose(by_count, by_time, atol=1e-5)
    fast = [dataclasses.replace(r, ts=r.ts / 60.0) for r in readings]  # 1 s apart
    assert torch.allclose(
        _time_horizon_inputs(fast, norm_horizon_s=60.0, trend_horizon=10.0), by_count, atol=1e-5
    )
    slower = _time_horizon_inputs(readings, norm_horizon_s=36000.0, trend_horizon=10.0)
    assert not torch.allclose(slower, by_count, atol=1e-3)  # 600 readings: it did change


def test_streaming_equals_offline_with_the_slope_after_the_start() -> None:
    """``trend_after_start`` (a 6000 s horizon at 60 s: the start lasts 99 readings) holds
    the invariant, and changes the inputs: the slope waits for the start to end."""
    readings = series("a", 150, seed=6)
    det_cfg = tiny_config().detector.model_copy(
        update={"norm_horizon_s": 6000.0, "trend_horizon": 10.0, "trend_after_start": True}
    )
    diff, z = _streamed_minus_offline(readings, det_cfg, [1, 4])
    assert diff <= TOL
    sloped, _ = _lanes(readings, det_cfg.model_copy(update={"trend_after_start": False}))
    assert not torch.allclose(z, sloped, atol=1e-4)


def test_streaming_equals_offline_with_a_horizon_in_seconds() -> None:
    """Irregular gaps weigh each reading by its own gap, online as offline."""
    rng = np.random.default_rng(5)
    gaps = np.cumsum(rng.choice([1.0, 5.0, 30.0, 300.0], size=150))
    readings = [
        dataclasses.replace(r, ts=1.767e9 + float(g))
        for r, g in zip(series("a", 150, seed=5), gaps, strict=True)
    ]
    det_cfg = tiny_config().detector.model_copy(
        update={"norm_horizon_s": 600.0, "trend_horizon": 10.0}
    )
    assert _streamed_minus_offline(readings, det_cfg, [1, 4])[0] <= TOL


@pytest.mark.parametrize("open_on", ["window", "newest"])
def test_alerts_open_on_the_same_readings_served_and_offline(open_on: str) -> None:
    """``alerts.open_on`` reads the same own score in serving (``TensorStep``) and offline
    (``calibrated_alerts``, the baselines' path): one odd reading, then a fault that lasts,
    open on the same readings both ways (the odd reading on the window's score only)."""
    readings = series("a", 200, seed=2)
    for i, hr in [(80, 90.0)] + [(i, 130.0) for i in range(140, 152)]:
        r = readings[i]
        readings[i] = Reading("a", r.ts, (hr, *r.values[1:]), "g", "t", 0, r.offset)
    model, cfg = tiny_model(), tiny_config(calibration_fade=60, open_on=open_on)
    det = Detector(model, cfg.detector, cfg.alerts)
    scored = det.score(det.new_table(), readings)
    t0 = readings[0].ts
    served = [round((e.ts - t0) / 60.0) for e in scored.events if e.event == "open"]
    s = Series("a", np.array([r.ts for r in readings]), np.array([r.values for r in readings]))
    held = torch.tensor(scored.held).view(-1, 1)
    z, m, _ = normalise_lanes([s], model.prior, cfg.detector, torch.device("cpu"), held)
    _, stats, seen = offline_feature_errors(model.net, z, m)
    prior = model.prior.tensors(torch.device("cpu"), stats.shape[-1])
    offline = calibrated_alerts(
        stats,
        seen,
        (prior["cal_mu"], prior["cal_dev"]),
        cfg.detector,
        cfg.alerts,
        newest=offline_newest_statistics(model.net, z, m),
    )
    assert served == np.flatnonzero(offline.alert_open[:, 0]).tolist()
    assert served == ([81, 140] if open_on == "window" else [140])  # 81: min_duration 2
