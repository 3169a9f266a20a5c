"""A poll planned once (``detect.poll_plan``) and stepped on rows gathered once
(``detect.working``) scores as the same readings scored one call each: streams with
different numbers of readings, replays, late and duplicate readings inside a stream's run,
and a rebaseline inside a poll."""

from __future__ import annotations

import numpy as np

from streamlstm.detect.scored import ReadingColumns, Scored
from streamlstm.detect.state import table_rows
from streamlstm.records import Reading
from tests.helpers import assert_same_state, series, tiny_detector
from tests.test_hold_normal import _shifted


def _alone(det, readings: list[Reading]):
    table = det.new_table()
    results = [det.score(table, [r]) for r in readings]
    return table, results


def _by_reading(readings: list[Reading], res: Scored) -> dict:
    return {
        (readings[i].stream, readings[i].offset): s
        for i, s in zip(res.index, res.score, strict=True)
    }


def test_a_poll_with_rejections_inside_runs_scores_as_readings_one_at_a_time() -> None:
    a, b, c = series("a", 30, seed=1), series("b", 30, seed=2, start_offset=500), series("c", 30)
    warm = [*a[:10], *b[:10], *c[:10]]
    late = Reading("a", a[11].ts - 30.0, a[12].values, "g", "t", 0, 200)  # older than a[11]
    dup = Reading("b", b[12].ts, b[13].values, "g", "t", 0, 700)  # b[12]'s time again
    # Stream runs of different lengths, each holding a rejected or replayed reading.
    poll = [*a[10:12], late, *a[12:20], *b[10:13], dup, *b[13:15], c[9], c[10], *c[11:13]]
    det = tiny_detector()
    table = det.new_table()
    det.score(table, warm)
    got = det.score(table, poll)

    single_table, _ = _alone(det, warm)
    singles = [det.score(single_table, [r]) for r in poll]
    want = {(poll[j].stream, poll[j].offset): s for j, res in enumerate(singles) for s in res.score}
    scores = _by_reading(poll, got)
    assert scores.keys() == want.keys() and len(scores) == len(poll) - 3
    assert max(abs(scores[k] - want[k]) for k in want) <= 1e-4
    assert got.replayed == 1  # c[9] was applied in the warm-up
    rejected = {poll[i].offset: r.reason for i, r in got.rejected}
    assert rejected == {200: "out_of_order", 700: "duplicate"}
    assert_same_state(table_rows(table), table_rows(single_table), atol=1e-4)


def test_a_rebaseline_inside_a_poll_restarts_only_its_stream() -> None:
    shifted = _shifted(150, 300)
    quiet = series("q", len(shifted), seed=4, start_offset=10_000)
    readings = [r for pair in zip(shifted, quiet, strict=True) for r in pair]

    def run(size: int):
        det = tiny_detector(rebaseline_after_s=3600.0)
        table = det.new_table()
        scores, events, warming = {}, [], {}
        for i in range(0, len(readings), size):
            poll = readings[i : i + size]
            res = det.score(table, poll)
            scores.update(_by_reading(poll, res))
            events += [(e.stream, e.event, e.ts) for e in res.events]
            warming.update(
                {
                    (poll[j].stream, poll[j].ts): w
                    for j, w in zip(res.index, res.warming, strict=True)
                }
            )
        return table, scores, events, warming

    table_1, s1, e1, _ = run(1)
    table_k, sk, ek, warming = run(40)  # 20 readings of each stream per poll
    rebased = [ts for stream, e, ts in ek if e == "rebaseline"]
    assert len(rebased) == 1
    # "a" re-learns from its next reading on (a fresh warm-up); "q" goes on as before
    assert all(warming[("a", rebased[0] + 60.0 * k)] for k in range(1, 6))
    assert not any(warming[("q", rebased[0] + 60.0 * k)] for k in range(0, 6))
    assert sorted(e1) == sorted(ek)
    assert max(abs(s1[k] - sk[k]) for k in s1) <= 1e-4
    assert_same_state(table_rows(table_k), table_rows(table_1), atol=1e-4)


def test_columns_in_any_stream_order_score_the_same() -> None:
    """Working rows out of table order are gathered; in order they are table views."""
    streams = [series(f"s{i}", 12, seed=i, start_offset=100 * i) for i in range(6)]
    det = tiny_detector()
    table_in, table_out = det.new_table(), det.new_table()
    for k in range(0, 12, 3):
        polls = [r for s in streams for r in s[k : k + 3]]
        shuffled = [r for s in reversed(streams) for r in s[k : k + 3]]
        a = det.score_columns(table_in, ReadingColumns.of(polls))
        b = det.score_columns(table_out, ReadingColumns.of(shuffled))
        sa, sb = _by_reading(polls, a), _by_reading(shuffled, b)
        assert sa.keys() == sb.keys()
        assert np.allclose([sa[k] for k in sa], [sb[k] for k in sa], atol=1e-5)
    assert_same_state(table_rows(table_out), table_rows(table_in), atol=1e-5)


def test_distinct_tells_whether_a_stream_repeats_in_a_poll() -> None:
    from streamlstm.detect.poll_plan import _distinct

    assert _distinct(np.array([], np.int64)) and _distinct(np.array([7], np.int64))
    assert _distinct(np.array([5, 0, 9, 2], np.int64))
    assert not _distinct(np.array([5, 0, 9, 0], np.int64))
    assert not _distinct(np.array([3, 3], np.int64))
    big = np.random.default_rng(0).permutation(1_000_000)
    assert _distinct(big)
    big[123_456] = big[987_654]
    assert not _distinct(big)
