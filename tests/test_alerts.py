"""Alert state machine: transitions, cooldown, severity, deterministic ids (lists in, out)."""

from __future__ import annotations

import numpy as np
import pytest

from streamlstm.config import AlertConfig
from streamlstm.detect.alerts import HOST_COLUMNS, AlertInputs, AlertMachine, alert_id, overdue
from streamlstm.detect.columns import Col
from streamlstm.detect.state import StateTable

CFG = AlertConfig(enter=5, exit=2, critical=10, min_duration=2, exit_duration=2, cooldown=3)


def run(
    scores: list[float],
    quality: list[bool] | None = None,
    warming: int = 0,
    version: str = "v1",
    cfg: AlertConfig = CFG,
    own_scores: list[float] | None = None,
    held_off: list[bool] | None = None,
) -> list[tuple[int, str, str]]:
    """Feed one stream's scores (and the readings' own scores, default none: the scores;
    and whether a held sensor is still off, default never); return (index, event,
    severity) per event."""
    table = StateTable({}, HOST_COLUMNS)
    rows, _ = table.rows_for(["s"])
    machine = AlertMachine(cfg, version)
    out = []
    for i, score in enumerate(scores):
        inp = AlertInputs(
            ["s"],
            np.array([1000.0 + i]),
            np.array([i]),
            np.array([score]),
            np.array([bool(quality and quality[i])]),
            np.array([i < warming]),
            lambda _: (("hr", 1.0),),
            lambda _, i=i: ("t", 0, i),
            None if own_scores is None else np.array([own_scores[i]]),
            None if held_off is None else np.array([held_off[i]]),
        )
        out += [(i, e.event, e.severity) for e in machine.step(table.host, rows, inp)]
    return out


def test_opens_after_min_duration_and_resolves_after_exit_duration() -> None:
    events = run([0, 6, 6, 6, 1, 1, 1])
    assert events == [(2, "open", "warning"), (5, "resolve", "warning")]


def test_exit_is_judged_on_the_own_score_and_nothing_else_is() -> None:
    """The window's score (6) stays above ``exit`` after the readings are back; the newest
    reading's (``own_score``, 1) is below it: the alert resolves after ``exit_duration``
    readings of it. A low own score before the alert opens neither stops nor delays the
    opening (``open_on: window``): opening, updates and severity follow the score. With
    ``exit_on: window`` the own score is not read at all."""
    scores = [0, 6, 6, 6, 6, 6, 6]
    assert [e[1] for e in run(scores)] == ["open"]
    events = run(scores, own_scores=[0, 1, 1, 6, 1, 1, 1])
    assert events == [(2, "open", "warning"), (5, "resolve", "warning")]
    by_window = CFG.model_copy(update={"exit_on": "window"})
    assert [e[1] for e in run(scores, own_scores=[0, 1, 1, 6, 1, 1, 1], cfg=by_window)] == ["open"]


def test_with_open_on_newest_only_readings_that_are_off_themselves_count_to_open() -> None:
    """``open_on: newest``: the ``min_duration`` (2) readings at or above ``enter`` and a
    reading at or above ``critical`` are judged on the readings' own scores. A window score
    that stays at 6 after one odd reading (own scores back at 1) opens nothing; two
    readings off themselves open; a window score past ``critical`` whose reading is not
    opens nothing at once."""
    cfg = CFG.model_copy(update={"open_on": "newest"})
    window_high = [0, 6, 6, 6, 6, 0]
    assert [e[1] for e in run(window_high)] == ["open"]  # on the window: it pages
    assert run(window_high, own_scores=[0, 6, 1, 1, 1, 0], cfg=cfg) == []
    assert run(window_high, own_scores=[0, 6, 6, 1, 1, 0], cfg=cfg)[0] == (2, "open", "warning")
    assert run([0, 12, 0, 0], own_scores=[0, 4, 0, 0], cfg=cfg) == []
    assert run([0, 12, 0, 0], own_scores=[0, 12, 0, 0], cfg=cfg)[0] == (1, "open", "critical")


def test_single_reading_above_enter_does_not_open() -> None:
    assert run([0, 9, 0, 9, 0]) == []


def test_a_critical_reading_opens_at_once_unless_open_on_critical_is_off() -> None:
    """``min_duration`` (2) keeps a lone reading above ``enter`` from opening; one at or above
    ``critical`` (10) opens on that reading, as critical. Off, it waits like any other. A
    critical reading while warming up opens nothing, and cooldown still blocks it."""
    assert run([0, 12, 0, 0]) == [(1, "open", "critical"), (3, "resolve", "critical")]
    assert run([0, 10, 10]) == [(1, "open", "critical")]
    assert run([0, 9.9, 0, 0]) == []
    assert run([0, 12, 0, 0], cfg=CFG.model_copy(update={"open_on_critical": False})) == []
    assert run([12, 12, 0], warming=2) == []
    events = run([6, 6, 1, 1, 12, 12, 1, 1, 1, 1, 12])
    assert [(i, e) for i, e, _ in events] == [(1, "open"), (3, "resolve"), (10, "open")]


def test_hysteresis_scores_between_exit_and_enter_keep_it_open() -> None:
    events = run([6, 6, 3, 3, 3, 1, 1])
    assert [e[1] for e in events] == ["open", "resolve"] and events[1][0] == 6


def test_exit_share_ends_an_alert_whose_score_fell_most_of_the_way_back() -> None:
    """A fault put right scores 5 where it scored 40: above ``exit`` (2), so without
    ``exit_share`` the alert stays open; with 0.25 (limit 0.25 x ~40 = 10) it resolves after
    ``exit_duration`` (2) readings. A fault that keeps scoring 40 stays open either way."""
    fell = [0, 40, 40] + [40] * 10 + [5] * 6
    shared = CFG.model_copy(update={"exit_share": 0.25})
    assert [e for _, e, _ in run(fell)] == ["open"]
    # 40 is past ``critical`` (10): it opens on its first reading (``open_on_critical``)
    assert [(i, e) for i, e, _ in run(fell, cfg=shared)] == [(1, "open"), (14, "resolve")]
    assert [e for _, e, _ in run([0, 40, 40] + [40] * 30, cfg=shared)] == ["open"]


def test_exit_share_follows_a_slow_recovery_down() -> None:
    """The typical score is an EMA of the open alert's scores, so a score that declines
    slowly (a recovery) lowers the limit with it: the alert resolves only once the score
    drops fast or below ``exit``, not on every step of a slow decline."""
    shared = CFG.model_copy(update={"exit_share": 0.5})
    slow = [0, 40, 40] + [40 * 0.98**k for k in range(60)]
    events = run(slow, cfg=shared)
    assert [e for _, e, _ in events] == ["open"]


def test_cooldown_blocks_reopening() -> None:
    events = run([6, 6, 1, 1, 6, 6, 6, 6, 6])
    # resolve at 3; readings 4,5,6 are cooldown; pending restarts at 7 -> open at 8
    assert [(i, e) for i, e, _ in events] == [(1, "open"), (3, "resolve"), (8, "open")]


def test_update_on_escalation_to_critical() -> None:
    events = run([6, 6, 11, 11, 1, 1])
    assert [(e, s) for _, e, s in events] == [
        ("open", "warning"),
        ("update", "critical"),
        ("resolve", "critical"),
    ]


def test_warmup_suppresses_and_quality_opens() -> None:
    assert run([9, 9, 9], warming=3) == []
    events = run([0, 0, 0, 0], quality=[False, True, True, True])
    assert events and events[0][1] == "open"


def test_alert_ids_are_deterministic_and_distinct() -> None:
    assert alert_id("s", 7, "v1") == alert_id("s", 7, "v1")
    assert (
        len(
            {
                alert_id("s", 7, "v1"),
                alert_id("s", 8, "v1"),
                alert_id("t", 7, "v1"),
                alert_id("s", 7, "v2"),
            }
        )
        == 4
    )
    table_ids = []
    for _ in range(2):
        table = StateTable({}, HOST_COLUMNS)
        rows, _ = table.rows_for(["s"])
        m = AlertMachine(CFG, "v1")
        for i, sc in enumerate([6, 6, 1, 1]):
            inp = AlertInputs(
                ["s"],
                np.array([float(i)]),
                np.array([100 + i]),
                np.array([sc]),
                np.array([False]),
                np.array([False]),
                lambda _: (),
                lambda _: ("t", 0, 0),
            )
            table_ids += [e.alert_id for e in m.step(table.host, rows, inp)]
    assert table_ids[0] == table_ids[2] == alert_id("s", 101, "v1")


def test_the_id_minted_at_open_survives_a_model_version_change() -> None:
    table = StateTable({}, HOST_COLUMNS)
    rows, _ = table.rows_for(["s"])

    def feed(machine: AlertMachine, i: int, score: float) -> list:
        inp = AlertInputs(
            ["s"],
            np.array([1000.0 + i]),
            np.array([i]),
            np.array([score]),
            np.array([False]),
            np.array([False]),
            lambda _: (("hr", 1.0),),
            lambda _, i=i: ("t", 0, i),
        )
        return machine.step(table.host, rows, inp)

    old, new = AlertMachine(CFG, "v1"), AlertMachine(CFG, "v2")
    opened = feed(old, 0, 6) + feed(old, 1, 6)
    assert [e.event for e in opened] == ["open"]
    assert opened[0].alert_id == alert_id("s", 1, "v1")
    resolved = feed(new, 2, 1) + feed(new, 3, 1)  # the model changed while open
    assert [e.event for e in resolved] == ["resolve"]
    assert resolved[0].alert_id == opened[0].alert_id
    assert resolved[0].model_version == "v2"


def _one_by_one(machine: AlertMachine, host, rows, inp: AlertInputs) -> list:
    """The state machine as a plain loop over the rows (every row through ``_advance``)."""
    cfg = machine.cfg
    above = ((inp.score >= cfg.enter) | inp.quality) & ~inp.warming
    events = []
    for i in range(len(rows)):
        if cfg.rebaseline_after_history is not None and np.isnan(host[Col.A_NORMAL_TS][rows[i]]):
            host[Col.A_NORMAL_TS][rows[i]] = inp.ts[i]  # the stream's normal starts here
        event = machine._advance(host, int(rows[i]), i, bool(above[i]), inp)
        if event is not None:
            events.append(event)
    return events


@pytest.mark.parametrize(
    "rebaseline",
    [{"rebaseline_after_s": 15.0}, {"rebaseline_after_s": 60.0, "rebaseline_after_history": 0.5}],
)
def test_many_rows_at_once_step_exactly_as_one_row_at_a_time(rebaseline: dict) -> None:
    """The quiet transitions run in numpy for all rows, the eventful ones row by row: the
    same events and the same state as the plain loop, over random scores of 40 streams."""
    cfg = CFG.model_copy(update={**rebaseline, "exit_share": 0.3})
    rng = np.random.default_rng(7)
    streams = [f"s{k}" for k in range(40)]
    tables = [StateTable({}, HOST_COLUMNS), StateTable({}, HOST_COLUMNS)]
    machine = AlertMachine(cfg, "v1")
    got: list[list] = [[], []]
    for t in range(200):
        scores = rng.choice([0.0, 1.0, 3.0, 6.0, 11.0, 30.0], size=len(streams))
        inp = AlertInputs(
            streams,
            np.full(len(streams), 1000.0 + t),
            np.full(len(streams), t),
            scores,
            rng.random(len(streams)) < 0.05,
            np.full(len(streams), t < 3),
            lambda _: (("hr", 1.0),),
            lambda i, t=t: ("t", 0, t),
        )
        for k, step in enumerate((machine.step, lambda h, r, x: _one_by_one(machine, h, r, x))):
            rows, _ = tables[k].rows_for(streams)
            got[k] += [(t, e.stream, e.event, e.severity, e.alert_id) for e in step(
                tables[k].host, rows, inp
            )]  # fmt: skip
    assert got[0] == got[1] and len({e[2] for e in got[0]}) == 4  # open/update/resolve/rebaseline
    for name in HOST_COLUMNS:
        np.testing.assert_array_equal(tables[0].host[name], tables[1].host[name], err_msg=name)


def test_an_alert_ends_in_a_rebaseline_once_open_as_long_as_its_normals_history() -> None:
    """Readings 1 s apart from ts 1000: 10 quiet readings, then a sustained 6. The alert
    opens at reading 11 (history 11 s) and, with ``rebaseline_after_history`` 1, ends in a
    rebaseline 11 s later; with 2, 22 s later; a stream with a longer quiet history keeps
    the same 25 s alert open."""
    share_1 = CFG.model_copy(update={"rebaseline_after_history": 1.0})
    share_2 = CFG.model_copy(update={"rebaseline_after_history": 2.0})
    assert run([0] * 10 + [6] * 25, cfg=share_1)[:2] == [
        (11, "open", "warning"),
        (22, "rebaseline", "warning"),
    ]
    assert [e[:2] for e in run([0] * 10 + [6] * 25, cfg=share_2)[:2]] == [
        (11, "open"),
        (33, "rebaseline"),
    ]
    assert run([0] * 40 + [6] * 25, cfg=share_1) == [(41, "open", "warning")]
    assert run([0] * 10 + [6] * 25) == [(11, "open", "warning")]  # off by default


def test_after_a_rebaseline_the_normals_history_starts_again() -> None:
    """The reading after a rebaseline starts the new normal's history: an alert that
    opens 5 s later ends 5 s after that, not after the stream's whole age."""
    cfg = CFG.model_copy(update={"rebaseline_after_history": 1.0})
    scores = [0] * 10 + [6] * 13 + [0] * 4 + [6] * 10
    events = [e[:2] for e in run(scores, cfg=cfg)]
    # history 1000..1011 -> rebaseline at 22; new history from 23; open at 28, ends at 33
    # (the machine alone has no warm-up after a rebaseline: the detector adds one)
    assert events[:4] == [(11, "open"), (22, "rebaseline"), (28, "open"), (33, "rebaseline")]


def test_a_row_without_a_known_history_never_rebaselines_by_history() -> None:
    """A row restored from a snapshot taken before the history was kept (NaN) is judged by
    ``rebaseline_after_s`` alone."""
    cfg = CFG.model_copy(update={"rebaseline_after_history": 1.0})
    assert not overdue(cfg, np.array([2000.0]), np.array([1010.0]), np.array([np.nan]))[0]
    assert overdue(cfg, np.array([1020.0]), np.array([1010.0]), np.array([1000.0]))[0]
    capped = cfg.model_copy(update={"rebaseline_after_s": 30.0})
    assert overdue(capped, np.array([1040.0]), np.array([1010.0]), np.array([np.nan]))[0]
