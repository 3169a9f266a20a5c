"""Detector contract (River-style: determinism, inputs untouched, snapshot round-trip) and
the behaviours of DESIGN §4: warm-up, gap reset, masking, frozen calibration inside alerts."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from streamlstm.detect.scored import explained
from streamlstm.records import Reading, TopFeature
from tests.helpers import interleave, series, tiny_config, tiny_detector


def _scores(det, readings):
    table = det.new_table()
    res = det.score(table, readings)
    return table, res


def test_seeded_determinism_and_inputs_not_mutated() -> None:
    readings = interleave(series("a", 40, seed=1), series("b", 40, seed=2, start_offset=99))
    before = copy.deepcopy(readings)
    _, r1 = _scores(tiny_detector(seed=3), readings)
    _, r2 = _scores(tiny_detector(seed=3), readings)
    assert r1.score == r2.score and readings == before
    _, r3 = _scores(tiny_detector(seed=4), readings)
    assert r3.score != r1.score  # the weights matter


def test_warmup_marks_the_first_readings_and_blocks_alerts() -> None:
    det = tiny_detector()
    readings = series("a", 10)
    readings[1] = Reading("a", readings[1].ts, (300.0, 10.0, 90.0), "g", "t", 0, 1)
    readings[2] = Reading("a", readings[2].ts, (300.0, 10.0, 90.0), "g", "t", 0, 2)
    _, res = _scores(det, readings)
    assert res.warming[:5] == [True] * 5 and res.warming[5:] == [False] * 5
    assert res.events == []


def test_a_gap_resets_state_and_rewarms() -> None:
    det = tiny_detector()
    first = series("a", 20)
    late = series("a", 10, start_offset=20, t0=first[-1].ts + 3600.0)  # gap > max_gap 600 s
    table, res = _scores(det, first + late)
    assert res.warming[20:25] == [True] * 5 and res.warming[25:] == [False] * 5
    # h right after the gap equals h of a fresh stream fed the same reading with the same stats
    row = table.row("a")
    assert table.dev["since_reset"][row].item() == 10


def test_missing_features_are_masked_out_of_the_error() -> None:
    det = tiny_detector()
    readings = series("a", 30)
    gappy = [
        Reading(r.stream, r.ts, (r.values[0], math.nan, r.values[2]), "g", "t", 0, r.offset)
        for r in readings
    ]
    table, res = _scores(det, gappy)
    assert all(np.isfinite(res.score))
    row = table.row("a")
    assert table.dev["win_m"][row][:, 1].sum().item() == 0  # never observed, never judged


def test_order_and_replay_handling() -> None:
    det = tiny_detector()
    table = det.new_table()
    readings = series("a", 5)
    det.score(table, readings)
    again = det.score(table, readings[3:])  # already applied offsets: skipped, not rescored
    assert again.replayed == 2 and again.index == []
    late = Reading("a", readings[0].ts, readings[0].values, "g", "t", 0, 10)
    dup = Reading("a", readings[-1].ts, readings[-1].values, "g", "t", 0, 11)
    res = det.score(table, [late, dup])
    assert [r.reason for _, r in res.rejected] == ["out_of_order", "duplicate"]


def test_calibration_is_frozen_inside_an_open_alert() -> None:
    det = tiny_detector(calibration_fade=10, enter=0.5, exit=0.1, min_duration=1)
    table = det.new_table()
    readings = series("a", 40)
    det.score(table, readings[:30])
    row = table.row("a")
    table.host["a_state"][row], table.host["a_severity"][row] = 1, 1  # an open alert
    before = table.dev["cal_mu"][row].clone()
    det.score(table, readings[30:32])  # exit_duration=2: open for both readings
    assert torch.equal(table.dev["cal_mu"][row], before)


def test_a_large_spike_opens_an_alert_naming_the_feature() -> None:
    det = tiny_detector()
    readings = series("a", 200, seed=9)
    for k in (150, 151, 152):
        r = readings[k]
        readings[k] = Reading(
            "a", r.ts, (r.values[0], r.values[1], r.values[2] + 60.0), "g", "t", 0, r.offset
        )
    _, res = _scores(det, readings)
    opens = [e for e in res.events if e.event == "open"]
    assert opens and 150 <= opens[0].source[2] <= 155
    assert opens[0].top_features[0].name == "rr"
    assert (
        sum(f.share for f in opens[0].top_features) == pytest.approx(1.0, abs=0.05)
        or opens[0].top_features[0].share > 0.3
    )


def test_an_alert_says_how_far_each_named_reading_is_off() -> None:
    """The opening event gives, per named feature, the reading, the stream's forecast for
    it and their distance in the stream's own std: rr 60 under a normal of ~16 with a std
    of ~1 is ~60 below: negative, as the reading is below its normal."""
    det = tiny_detector()
    readings = series("a", 200, seed=9)
    normal_rr = float(np.mean([r.values[2] for r in readings[:150]]))
    for k in (150, 151, 152):
        r = readings[k]
        readings[k] = Reading(
            "a", r.ts, (r.values[0], r.values[1], r.values[2] - 60.0), "g", "t", 0, k
        )
    _, res = _scores(det, readings)
    opening = next(e for e in res.events if e.event == "open")
    rr = next(f for f in opening.top_features if f.name == "rr")
    assert rr.value == pytest.approx(readings[opening.source[2]].values[2], abs=1e-3)
    assert rr.expected == pytest.approx(normal_rr, abs=1.5)
    assert -90 < rr.std_off < -30
    assert rr.std_off == pytest.approx((rr.value - rr.expected) / 1.0, rel=0.5)
    data = opening.to_dict()["top_features"]
    assert {"name", "share", "value", "expected", "std_off"} <= set(data[0])


def test_rows_in_table_order_and_out_of_it_step_the_same() -> None:
    """A chunk of consecutive rows is stepped on views of the table, any other through a
    gather and a scatter: both must leave the same state and give the same scores."""
    from streamlstm.detect.scored import ReadingColumns
    from streamlstm.detect.state import table_rows
    from tests.helpers import assert_same_state

    names = [f"s{i}" for i in range(6)]
    streams = [series(n, 12, seed=i, start_offset=100 * i) for i, n in enumerate(names)]
    results = []
    for order in (list(range(6)), [5, 3, 1, 0, 2, 4]):  # in row order; shuffled
        det = tiny_detector()
        det.rows_per_chunk = 4  # two chunks: a run of rows, then a shorter one
        table = det.new_table()
        det.score(table, [s[0] for s in streams])  # rows 0..5 in name order
        scores = {}
        for k in range(1, 12):
            batch = [streams[i][k] for i in order]
            got = det.score_columns(table, ReadingColumns.of(batch))
            scores.update({(batch[j].stream, k): got.score[n] for n, j in enumerate(got.index)})
        results.append((scores, table_rows(table)))
    (scores_a, rows_a), (scores_b, rows_b) = results
    assert scores_a.keys() == scores_b.keys()
    assert max(abs(scores_a[k] - scores_b[k]) for k in scores_a) <= 1e-5
    assert_same_state(rows_b, rows_a, atol=1e-5)


def _hr_fault(first: int, last: int, hr: float = 130.0, **alerts) -> tuple[list, list]:
    """A heart rate of ``hr`` over readings first..last of a steady stream, scored with the
    alert settings given: (each reading's score, (reading index, event, severity) of every
    alert event but updates)."""
    det = tiny_detector(calibration_fade=60, **alerts)
    readings = series("a", 200, seed=2)
    for i in range(first, last + 1):
        r = readings[i]
        readings[i] = Reading("a", r.ts, (hr, *r.values[1:]), "g", "t", 0, r.offset)
    scored = det.score(det.new_table(), readings)
    t0 = readings[0].ts
    events = [
        (round((e.ts - t0) / 60.0), e.event, e.severity)
        for e in scored.events
        if e.event != "update"
    ]
    return scored.score, events


def test_an_alert_ends_on_the_newest_reading_not_when_the_window_has_drained() -> None:
    """The window's score stays high while the window (4 readings) still holds the fault's
    last reading; judged on the newest reading (``exit_on: newest``) the alert resolves
    ``exit_duration`` (2) readings after the fault, 3 readings sooner than on the window's
    score. Where it opens does not change."""
    _, window = _hr_fault(120, 131, exit_on="window")
    _, newest = _hr_fault(120, 131, exit_on="newest")
    assert [e[1] for e in window] == [e[1] for e in newest] == ["open", "resolve"]
    assert window[0] == newest[0]
    assert newest[1][0] == 131 + 2
    assert window[1][0] == newest[1][0] + 3


def test_one_odd_reading_opens_nothing_when_the_reading_s_own_score_counts() -> None:
    """The window (4 readings) keeps one odd reading's score above ``enter`` for 4 readings,
    so on the window's score it meets ``min_duration`` (2) alone and pages after it is
    over; with ``open_on: newest`` only readings that are themselves off count, and it
    opens nothing. A reading past ``critical`` still opens at once either way, and a fault
    that lasts opens on the same reading."""
    scores, by_window = _hr_fault(120, 120, 90.0, open_on="window")
    assert min(scores[120:124]) >= tiny_config().alerts.enter  # the window holds it: 4 high
    assert [e[1] for e in by_window] == ["open", "resolve"]
    assert _hr_fault(120, 120, 90.0, open_on="newest")[1] == []
    _, critical = _hr_fault(120, 120, 110.0, open_on="newest")
    assert critical[0] == (120, "open", "critical")
    assert critical == _hr_fault(120, 120, 110.0, open_on="window")[1]
    _, lasting = _hr_fault(120, 131, open_on="newest")
    assert lasting == _hr_fault(120, 131, open_on="window")[1]


def test_explained_leaves_out_what_it_cannot_know() -> None:
    """A missing reading has no value and no distance; a feature with no forecast yet (NaN)
    has neither an expected value nor a distance; a stuck sensor's share is still named."""
    value = np.array([84.0, np.nan, 20.0])
    expected = np.array([97.0, 70.0, np.nan])
    scale = np.array([2.0, 5.0, 1.0])
    got = explained(["spo2", "hr", "rr"], [(0, 0.5), (1, 0.3), (2, 0.2)], value, expected, scale)
    assert got[0] == TopFeature("spo2", 0.5, 84.0, 97.0, -6.5)
    assert got[1] == TopFeature("hr", 0.3, None, 70.0, None)
    assert got[2] == TopFeature("rr", 0.2, 20.0, None, None)
