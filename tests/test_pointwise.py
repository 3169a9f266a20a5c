"""Point-wise metrics and episode coverage on hand-computed lists."""

from __future__ import annotations

import json

import pytest

from streamlstm.evaluation.metrics import Event, StreamEval
from streamlstm.evaluation.pointwise import (
    format_pointwise,
    pointwise_metrics,
    pointwise_to_dict,
    scored_part,
)


def _stream(name: str, n: int, alert_at: list[int], events: list[Event]) -> StreamEval:
    in_alert = [i in alert_at for i in range(n)]
    opens = [a and (i == 0 or not in_alert[i - 1]) for i, a in enumerate(in_alert)]
    return StreamEval(name, list(range(n)), opens, in_alert, events)


def _two_streams() -> list[StreamEval]:
    # a: anomalous 3..6, alert on 2, 3, 4, 9 -> tp 2 (3, 4), fp 2 (2, 9), fn 2 (5, 6)
    a = _stream("a", 10, [2, 3, 4, 9], [Event(3, 6, "spike")])
    # b: anomalous 0, 1 (covered) and 4, 5 (missed) -> tp 2, fp 0, fn 2
    b = _stream("b", 6, [0, 1], [Event(0, 1, "drift"), Event(4, 5, "spike")])
    return [a, b]


def test_pointwise_counts_and_rates_match_hand_computed_values() -> None:
    r = pointwise_metrics(_two_streams())
    assert (r.readings, r.anomalous, r.tp, r.fp, r.fn) == (16, 8, 4, 2, 4)
    assert r.precision == pytest.approx(4 / 6)
    assert r.recall == pytest.approx(0.5)
    assert r.f1 == pytest.approx(4 / 7)
    assert r.far == pytest.approx(2 / 8)
    assert r.mar == pytest.approx(4 / 8)


def test_coverage_is_the_share_of_each_episode_inside_an_alert() -> None:
    r = pointwise_metrics(_two_streams())
    # shares: a's spike 2/4, b's drift 2/2, b's spike 0/2
    assert (r.coverage.episodes, r.coverage.alerted) == (3, 2)
    assert r.coverage.median == pytest.approx(0.5)
    assert r.coverage.p10 == pytest.approx(0.1)  # linear between 0.0 and 0.5 at 20 %
    spike, drift = r.per_kind["spike"], r.per_kind["drift"]
    assert (spike.episodes, spike.alerted, spike.median) == (2, 1, pytest.approx(0.25))
    assert spike.p10 == pytest.approx(0.05)
    assert (drift.episodes, drift.alerted, drift.median, drift.p10) == (1, 1, 1.0, 1.0)


def test_no_episodes_gives_no_coverage_and_every_alert_reading_is_a_false_alarm() -> None:
    r = pointwise_metrics([_stream("a", 8, [1, 2], [])])
    assert (r.anomalous, r.tp, r.fp, r.fn) == (0, 0, 2, 0)
    assert (r.precision, r.recall, r.f1, r.mar) == (0.0, 0.0, 0.0, 0.0)
    assert r.far == pytest.approx(2 / 8)
    assert (r.coverage.episodes, r.coverage.median, r.coverage.p10) == (0, None, None)
    assert r.per_kind == {}


def test_no_alerts_misses_everything_and_covers_nothing() -> None:
    r = pointwise_metrics([_stream("a", 8, [], [Event(2, 5)])])
    assert (r.tp, r.fp, r.fn) == (0, 0, 4)
    assert (r.precision, r.recall, r.f1, r.far, r.mar) == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert (r.coverage.alerted, r.coverage.median, r.coverage.p10) == (0, 0.0, 0.0)
    assert list(r.per_kind) == ["unknown"]


def test_no_streams_is_all_zero() -> None:
    r = pointwise_metrics([])
    assert (r.readings, r.precision, r.far, r.coverage.median) == (0, 0.0, 0.0, None)


def test_an_alert_that_stays_open_scores_higher_than_one_that_only_opens() -> None:
    short = pointwise_metrics([_stream("a", 20, [5, 6], [Event(5, 14)])])
    held = pointwise_metrics([_stream("a", 20, list(range(5, 15)), [Event(5, 14)])])
    assert short.coverage.median == pytest.approx(0.2)
    assert held.coverage.median == 1.0
    assert (held.recall, held.f1) == (1.0, 1.0)
    assert short.recall == pytest.approx(0.2)


def test_scored_part_drops_the_first_readings_and_shifts_events() -> None:
    s = _stream("a", 10, [1, 6, 7], [Event(0, 1), Event(5, 8, "leak")])
    part = scored_part(s, 4)
    assert list(part.ts) == [4, 5, 6, 7, 8, 9]
    assert list(part.in_alert) == [False, False, True, True, False, False]
    assert part.events == [Event(1, 4, "leak")]  # the event inside the dropped part is gone
    r = pointwise_metrics([part])
    assert (r.readings, r.tp, r.fp) == (6, 2, 0)  # the alert at 1 is no longer scored
    clipped = scored_part(s, 6)
    assert clipped.events == [Event(0, 2, "leak")]
    with pytest.raises(ValueError):
        scored_part(s, -1)


def test_json_and_text_forms_carry_the_numbers() -> None:
    r = pointwise_metrics(_two_streams())
    d = json.loads(json.dumps(pointwise_to_dict(r)))
    assert d["tp"] == 4 and d["far"] == pytest.approx(0.25)
    assert d["coverage"] == {"episodes": 3, "alerted": 2, "median": 0.5, "p10": pytest.approx(0.1)}
    assert d["per_kind"]["drift"]["median"] == 1.0
    text = format_pointwise(r)
    assert "F1 0.571" in text
    assert "false-alarm rate 25.0 %" in text
    assert "2/3 episodes with any alert" in text
    assert "drift" in text and "spike" in text
