"""Evaluation: event-wise metrics, NAB score, report, plot (hand-built cases, lists in/out)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlstm.evaluation.metrics import (
    Event,
    StreamEval,
    event_metrics,
    events_from_labels,
    events_from_windows,
    format_report,
    report_to_dict,
)
from streamlstm.evaluation.nab import (
    NAB_PROFILES,
    NabSeries,
    nab_probation,
    nab_report,
    nab_score,
    nab_train_rows,
)
from streamlstm.evaluation.plots import PlotStream, plot_streams

T0, STEP = 1_700_000_000.0, 60.0


def ts(n: int) -> np.ndarray:
    return T0 + STEP * np.arange(n)


def stream(
    n: int,
    opens: list[int],
    events: list[tuple[int, int] | tuple[int, int, str]],
    alert: list[tuple[int, int]] | None = None,
    sid: str = "s",
) -> StreamEval:
    """``opens``: indices where alerts open; ``alert``: inclusive in_alert spans."""
    alert_open = np.zeros(n, bool)
    alert_open[opens] = True
    in_alert = np.zeros(n, bool)
    for a, b in alert or [(i, i) for i in opens]:
        in_alert[a : b + 1] = True
    return StreamEval(sid, ts(n), alert_open, in_alert, [Event(*e) for e in events])


# --- events ----------------------------------------------------------------------------------


def test_events_from_labels_are_maximal_runs_with_majority_kind() -> None:
    label = [0, 1, 1, 0, 1, 0, 0, 1]
    kind = ["", "spike", "drift", "", "drift", "", "", "drift"]
    assert events_from_labels(label) == [Event(1, 2), Event(4, 4), Event(7, 7)]
    assert [e.kind for e in events_from_labels(label, kind)] == ["spike", "drift", "drift"]
    assert events_from_labels([0, 0]) == []


def test_events_from_windows_select_readings_inside_inclusive_bounds() -> None:
    t = ts(10)
    got = events_from_windows(t, [(t[6] - 1, t[8]), (t[1], t[2] + 1), (T0 - 100, T0 - 50)])
    assert got == [Event(1, 2), Event(6, 8)]
    with pytest.raises(ValueError):
        events_from_windows(t, [(t[1], t[4]), (t[3], t[6])])


# --- event metrics ---------------------------------------------------------------------------


def test_perfect_detector_scores_one() -> None:
    r = event_metrics([stream(100, [10, 50], [(10, 14), (50, 60)])], tolerance=0)
    assert (r.tp, r.fn, r.fp) == (2, 0, 0)
    assert (r.precision, r.recall, r.f1) == (1.0, 1.0, 1.0)
    assert r.ttd_readings == [0, 0] and r.ttd_seconds_median == 0.0


def test_null_detector_has_zero_recall() -> None:
    r = event_metrics([stream(100, [], [(10, 14), (50, 60)])], tolerance=5)
    assert (r.tp, r.fn, r.fp, r.recall, r.f1) == (0, 2, 0, 0.0, 0.0)
    assert r.ttd_readings_median is None and r.fa_per_stream_day == 0.0


def test_opening_just_after_event_counts_only_within_tolerance_of_a_short_events_start() -> None:
    """Event 10..14 (5 readings), an opening at 15. Tolerance 5 reaches past the end from the
    start (10 + 5): detected. Tolerance 1: the event is longer than the tolerance, so the
    opening comes after it was over: not detected, and not a false positive either (it is
    within the tolerance of the end). Tolerance 0: a false positive."""
    s = stream(40, [15], [(10, 14)])
    inside = event_metrics([s], tolerance=5)
    assert (inside.tp, inside.fp, inside.ttd_readings) == (1, 0, [5])
    after = event_metrics([s], tolerance=1)
    assert (after.tp, after.fn, after.fp) == (0, 1, 0)
    outside = event_metrics([s], tolerance=0)
    assert (outside.tp, outside.fn, outside.fp) == (0, 1, 1)


def test_an_opening_when_a_long_event_ends_does_not_detect_it() -> None:
    """A drift over 10..109 followed all the way and noticed only when it snaps back (an
    opening at 111): missed, not a false positive. One during the drift (at 60) detects it."""
    late = event_metrics([stream(200, [111], [(10, 109)])], tolerance=10)
    assert (late.tp, late.fn, late.fp, late.recall) == (0, 1, 0, 0.0)
    during = event_metrics([stream(200, [60, 111], [(10, 109)])], tolerance=10)
    assert (during.tp, during.fp, during.ttd_readings) == (1, 0, [50])


def test_two_openings_in_one_event_count_once_and_are_not_false_positives() -> None:
    r = event_metrics([stream(40, [11, 13], [(10, 14)])], tolerance=0)
    assert (r.tp, r.fp, r.precision, r.recall) == (1, 0, 1.0, 1.0)
    assert r.ttd_readings == [1] and r.ttd_seconds == [STEP]


def test_opening_before_event_is_a_false_positive() -> None:
    r = event_metrics([stream(40, [9, 12], [(10, 14)])], tolerance=3)
    assert (r.tp, r.fp) == (1, 1)
    assert r.precision == 0.5 and r.recall == 1.0 and r.f1 == pytest.approx(2 / 3)


def test_per_kind_recall_and_pooling_over_streams() -> None:
    a = stream(50, [5], [(5, 6, "spike"), (20, 25, "drift")], sid="a")
    b = stream(50, [31, 40], [(30, 33, "drift"), (10, 11)], sid="b")
    r = event_metrics([a, b], tolerance=0)
    got = {k: (v.detected, v.total) for k, v in r.per_kind.items()}
    assert got == {"drift": (1, 2), "spike": (1, 1), "unknown": (0, 1)}
    assert (r.n_events, r.tp, r.fp, r.n_streams) == (4, 2, 1, 2)
    assert r.ttd_readings == [0, 1]


def test_ttd_quantiles_and_false_alarms_per_stream_day() -> None:
    n = int(2 * 86_400 / STEP) + 1  # exactly two days covered
    events = [(100 * k, 100 * k + 20) for k in range(1, 11)]
    opens = [100 * k + k - 1 for k in range(1, 11)] + [5]  # TTD 0..9, one FP
    r = event_metrics([stream(n, opens, events)], tolerance=0)
    assert r.ttd_readings_median == pytest.approx(4.5)
    assert r.ttd_readings_p90 == pytest.approx(8.1)
    assert r.ttd_seconds_p90 == pytest.approx(8.1 * STEP)
    assert r.stream_days == pytest.approx(2.0) and r.fa_per_stream_day == pytest.approx(0.5)


def test_point_adjusted_f1_flatters_a_long_alert_over_an_event() -> None:
    # the alert opens before the event and stays open across it: event-wise a miss + an FP
    s = stream(100, [20], [(30, 39)], alert=[(20, 32)])
    r = event_metrics([s], tolerance=0)
    assert (r.tp, r.fp, r.f1) == (0, 1, 0.0)
    assert r.pa_recall == 1.0 and r.pa_precision == pytest.approx(10 / 20)
    assert r.pa_f1 >= r.f1 and r.pa_f1 == pytest.approx(2 / 3)


def test_report_dict_is_json_and_text_has_the_headline_numbers() -> None:
    r = event_metrics([stream(100, [10, 70], [(10, 14, "spike"), (50, 60, "drift")])], 0)
    d = json.loads(json.dumps(report_to_dict(r)))
    assert d["per_kind"]["spike"] == {"detected": 1, "total": 1, "recall": 1.0}
    assert d["fp"] == 1 and d["recall"] == 0.5
    text = format_report(r, nab={"standard": 42.0})
    for needle in (
        "precision 0.500",
        "recall 0.500",
        "point-adjusted F1",
        "spike",
        "drift",
        "per stream-day",
        "standard 42.0",
    ):
        assert needle in text


# --- NAB -------------------------------------------------------------------------------------

N = 1000  # probation = 150 readings


def nab(opens: list[int], windows: list[tuple[int, int]], profile: str = "standard") -> float:
    t = ts(N)
    det = np.zeros(N, bool)
    det[opens] = True
    return nab_score(t, det, [(t[a], t[b]) for a, b in windows], profile)


def series(opens: list[int], windows: list[tuple[int, int]]) -> NabSeries:
    t = ts(N)
    det = np.zeros(N, bool)
    det[opens] = True
    return NabSeries(t, det, [(t[a], t[b]) for a, b in windows])


WINDOWS = [(300, 349), (700, 749)]


def test_nab_perfect_is_100_and_null_is_0_on_every_profile() -> None:
    perfect = nab_report([series([300, 700], WINDOWS), series([400], [(400, 409)])])
    null = nab_report([series([], WINDOWS)])
    assert set(perfect) == set(NAB_PROFILES)
    for name in NAB_PROFILES:
        assert perfect[name] == pytest.approx(100.0) and null[name] == pytest.approx(0.0)


def test_nab_known_values() -> None:
    assert nab([300], [(300, 349)]) == pytest.approx(1.0)  # detection at window start
    assert nab([], [(300, 349)]) == pytest.approx(-1.0)
    assert nab([200], [(300, 349)]) == pytest.approx(-1.0 - 0.11)  # FP before any window
    # an FP one window-width after the window: scaled sigmoid(50/49) * 0.11
    past = 2 / (1 + math.exp(5 * 50 / 49)) - 1
    assert nab([300, 399], [(300, 349)]) == pytest.approx(1.0 + 0.11 * past)
    assert nab([300, 500], [(300, 349)]) == pytest.approx(1.0 - 0.11)  # > 3 widths past


def test_nab_earlier_detection_scores_more_and_only_the_best_counts() -> None:
    early, late = nab([305], WINDOWS[:1]), nab([340], WINDOWS[:1])
    assert 0 < late < early < 1.0
    assert nab([305, 340], WINDOWS[:1]) == pytest.approx(early)  # later ones add nothing


def test_nab_probationary_detections_are_ignored() -> None:
    assert nab([10, 100, 149, 300], WINDOWS[:1]) == pytest.approx(1.0)
    assert nab([150, 300], WINDOWS[:1]) == pytest.approx(1.0 - 0.11)


def test_nab_training_stays_inside_the_probationary_period() -> None:
    # 15 % of the series, at most 750 rows: rows i < nab_probation(n) are never scored.
    for n, rows in [(1000, 150), (4999, 749), (5000, 750), (22695, 750), (5, 1)]:
        assert nab_train_rows(n) == rows
        assert n < 7 or rows <= nab_probation(n)


def test_nab_profiles_weight_fps_and_misses_as_published() -> None:
    fps = [200, 250, 300]
    assert nab(fps, WINDOWS[:1], "reward_low_FP") < nab(fps, WINDOWS[:1], "standard")
    assert nab(fps, WINDOWS[:1], "reward_low_FP") == pytest.approx(1.0 - 2 * 0.22)
    assert nab([], WINDOWS[:1], "reward_low_FN") == pytest.approx(-2.0)
    scores = nab_report([series([*fps, 700], WINDOWS)])
    assert scores["reward_low_FP"] < scores["standard"] < 100.0


def _nab_sweeper_port(
    t: list[float],
    det: list[bool],
    windows: list[tuple[float, float]],
    tp_w: float,
    fp_w: float,
    fn_w: float,
) -> float:
    """Line-by-line port of numenta/NAB Sweeper.calcSweepScore + calcScoreByThreshold
    (binary detections at one threshold), as the reference for ``nab_score``."""

    def s(x: float) -> float:
        return -1.0 if x > 3.0 else 2 * (1 / (1 + math.exp(5 * x))) - 1.0

    limits, rows = list(windows), []
    prob = min(math.floor(0.15 * len(t)), 0.15 * 5000)
    cur = name = width = right = prev_w = prev_r = None
    for i, (c, d) in enumerate(zip(t, det, strict=True)):
        if limits and c == limits[0][0]:
            cur = limits.pop(0)
            name, right = cur[0], t.index(cur[1])
            width = float(right - t.index(cur[0]) + 1)
        if cur is not None:
            w = s(-(right - i + 1) / width) * tp_w / s(-1.0)
        else:
            w = (-1.0 if prev_r is None else s(abs(prev_r - i) / float(prev_w - 1))) * fp_w
        rows.append((d, w, name if i >= prob else "probationary"))
        if cur is not None and c == cur[1]:
            prev_r, prev_w, cur, name = i, width, None, None
    parts = {"fp": 0.0} | {n: -fn_w for _, _, n in rows if n not in ("probationary", None)}
    for d, w, n in rows:
        if d and n is None:
            parts["fp"] += w
        elif d and n != "probationary":
            parts[n] = max(parts[n], w)
    return sum(parts.values())


@settings(max_examples=150, deadline=None)
@given(n=st.integers(20, 300), data=st.data())
def test_nab_score_matches_a_port_of_nab_sweeper(n: int, data: st.DataObject) -> None:
    det = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    cuts = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=8)))
    # disjoint windows of >= 2 readings from consecutive cut pairs (NAB windows are wide)
    wins = [(cuts[k], cuts[k + 1]) for k in range(0, len(cuts) - 1, 2)]
    wins = [(a, b) for a, b in wins if b > a]
    t = [float(x) for x in ts(n)]
    win_ts = [(t[a], t[b]) for a, b in wins]
    for prof in NAB_PROFILES.values():
        want = _nab_sweeper_port(t, det, win_ts, prof.tp_weight, prof.fp_weight, prof.fn_weight)
        assert nab_score(np.array(t), np.array(det), win_ts, prof) == pytest.approx(want)


# --- plot ------------------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    streams = []
    for k in range(3):
        n = 500
        score = np.abs(rng.normal(1, 0.5, n)) + 0.01
        score[200:220] = 500.0
        streams.append(
            PlotStream(
                f"stream-{k}",
                ts(n),
                score,
                5.0,
                score > 5.0,
                features=rng.normal(size=(n, 3)),
                feature_names=["hr", "spo2", "rr"],
                events=[Event(198, 225, "spike"), Event(400, 400)],
            )
        )
    out = plot_streams(tmp_path / "sub" / "plot.png", streams, "test run")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_importing_plots_does_not_import_matplotlib() -> None:
    code = (
        "import sys, streamlstm.evaluation.plots, streamlstm.evaluation.metrics; "
        "print('matplotlib' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
