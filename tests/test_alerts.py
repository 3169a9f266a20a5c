"""Alert state machine: transitions, cooldown, severity, deterministic ids (lists in, out)."""

from __future__ import annotations

import numpy as np

from streamlstm.config import AlertConfig
from streamlstm.detect.alerts import HOST_COLUMNS, AlertInputs, AlertMachine, alert_id
from streamlstm.detect.state import StateTable

CFG = AlertConfig(enter=5, exit=2, critical=10, min_duration=2, exit_duration=2, cooldown=3)


def run(
    scores: list[float],
    quality: list[bool] | None = None,
    warming: int = 0,
    version: str = "v1",
    cfg: AlertConfig = CFG,
) -> list[tuple[int, str, str]]:
    """Feed one stream's scores; return (index, event, severity) per event."""
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
        )
        out += [(i, e.event, e.severity) for e in machine.step(table.host, rows, inp)]
    return out


def test_opens_after_min_duration_and_resolves_after_exit_duration() -> None:
    events = run([0, 6, 6, 6, 1, 1, 1])
    assert events == [(2, "open", "warning"), (5, "resolve", "warning")]


def test_single_reading_above_enter_does_not_open() -> None:
    assert run([0, 9, 0, 9, 0]) == []


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
    assert [(i, e) for i, e, _ in run(fell, cfg=shared)] == [(2, "open"), (14, "resolve")]
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
        event = machine._advance(host, int(rows[i]), i, bool(above[i]), inp)
        if event is not None:
            events.append(event)
    return events


def test_many_rows_at_once_step_exactly_as_one_row_at_a_time() -> None:
    """The quiet transitions run in numpy for all rows, the eventful ones row by row: the
    same events and the same state as the plain loop, over random scores of 40 streams."""
    cfg = CFG.model_copy(update={"rebaseline_after_s": 15.0, "exit_share": 0.3})
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
