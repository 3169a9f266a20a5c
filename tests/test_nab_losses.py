"""Where the NAB points go (``NabTally.losses``): false alarms, missed windows and late
detections, from the same parts as the score itself (``nab_parts``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlstm.evaluation.nab import (
    LOSSES,
    NAB_PROFILES,
    NabSeries,
    NabTally,
    nab_parts,
    nab_score,
    nab_tally,
)

N = 100  # probation: the first 15 readings


def series(opens: list[int], windows: list[tuple[int, int]], n: int = N) -> NabSeries:
    t = 1_700_000_000.0 + 60.0 * np.arange(n)
    det = np.zeros(n, bool)
    det[opens] = True
    return NabSeries(t, det, [(t[a], t[b]) for a, b in windows])


def test_one_found_at_its_start_one_missed_one_false_alarm_far_away() -> None:
    s = series([20, 90], [(20, 29), (60, 69)])
    tally = nab_tally(s)
    # perfect 2, null -2: each point of the 100 is 0.04 raw
    fa_cost = 0.11 * (1.0 - 2.0 / (1.0 + math.exp(5.0 * (90 - 69) / 9)))
    assert tally.losses() == pytest.approx(
        {"false alarms": 100 * fa_cost / 4, "missed windows": 100 * 2 / 4, "late detections": 0.0}
    )
    assert tally.score() == pytest.approx(100 * (1.0 - 1.0 - fa_cost + 2.0) / 4)


def test_a_detection_late_in_its_window_loses_what_its_credit_lacks() -> None:
    s = series([27], [(20, 29)])
    parts = nab_parts(s.ts, s.alert_open, s.windows)
    assert len(parts.credits) == 1 and 0.0 < parts.credits[0] < 1.0
    losses = nab_tally(s).losses()
    assert losses["late detections"] == pytest.approx(100 * (1.0 - parts.credits[0]) / 2)
    assert losses["missed windows"] == 0.0 and losses["false alarms"] == 0.0


def test_a_window_inside_the_probation_is_neither_missed_nor_scored() -> None:
    s = series([], [(2, 8), (40, 49)])
    parts = nab_parts(s.ts, s.alert_open, s.windows)
    assert (parts.missed, parts.unscored) == (1, 1)
    tally = nab_tally(s)
    assert tally.null == -1.0 and tally.perfect == 2.0  # NAB's own normalisation, kept


def test_no_window_has_no_losses() -> None:
    assert nab_tally(series([50], [])).losses() is None


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_score_and_losses_add_up_to_100_over_any_set_of_series(data: st.DataObject) -> None:
    tallies = {name: NabTally() for name in NAB_PROFILES}
    for _ in range(data.draw(st.integers(1, 4))):
        n = data.draw(st.integers(40, 200))
        opens = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=12)))
        # windows past the probation (every one scored), disjoint, >= 2 readings
        cuts = sorted(data.draw(st.sets(st.integers(n // 5, n - 1), min_size=2, max_size=6)))
        wins = [(cuts[k], cuts[k + 1]) for k in range(0, len(cuts) - 1, 2)]
        s = series(opens, wins, n)
        for name, prof in NAB_PROFILES.items():
            tally = nab_tally(s, prof)
            assert tally.raw == pytest.approx(nab_score(s.ts, s.alert_open, s.windows, prof))
            tallies[name] = tallies[name] + tally
    for tally in tallies.values():
        losses = tally.losses()
        assert list(losses) == list(LOSSES)
        assert all(v >= -1e-12 for v in losses.values())
        assert tally.score() + sum(losses.values()) == pytest.approx(100.0)
