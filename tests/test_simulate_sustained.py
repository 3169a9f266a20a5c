"""Sustained faults in the simulator: hours long, labelled over their whole span, a real
correlated shift of the features they name, deterministic, and only in long streams."""

from __future__ import annotations

import argparse
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamlstm.commands import simulate as simulate_cmd
from streamlstm.simulate.generate import FEATURES, KINDS, SUSTAINED_KINDS, generate
from streamlstm.simulate.sustained import DRAW_SUSTAINED, LENGTH, MIN_STREAM

# The direction each named feature must move, per kind (what the physiology or physics says).
DIRECTION = {
    "sustained_desaturation": {"spo2": -1, "hr": 1, "rr": 1},
    "sustained_hypotension": {"sbp": -1, "dbp": -1, "hr": 1},
    "valve_fault": {"flow": -1, "pressure": 1, "power": -1, "vibration": 1},
    "pump_imbalance": {"vibration": 1, "power": 1, "temperature": 1},
}
LONG = set(DIRECTION)


@cache
def data(kind: str, rate: float = 1.0, sustained: bool = True):
    """60 streams x 1500 readings (seed 11): about 30 sustained faults."""
    return generate(kind, 60, 1500, seed=11, anomaly_rate=rate, sustained=sustained)


def long_events(d) -> list:
    return [e for e in d.events if e.kind in LONG]


def test_the_kinds_are_the_four_asked_for() -> None:
    assert {k for kinds in SUSTAINED_KINDS.values() for k in kinds} == LONG
    assert not LONG & {k for kinds in KINDS.values() for k in kinds}
    for domain, kinds in SUSTAINED_KINDS.items():
        for kind in kinds:
            assert set(DIRECTION[kind]) <= set(FEATURES[domain]), kind


@pytest.mark.parametrize("domain", ["vitals", "sensors"])
def test_each_kind_is_labelled_over_its_whole_span_and_lasts_hours(domain: str) -> None:
    d = data(domain)
    events = long_events(d)
    assert {e.kind for e in events} == set(SUSTAINED_KINDS[domain])
    for e in events:
        i = d.streams.index(e.stream)
        span = slice(e.start_idx, e.end_idx + 1)
        assert (d.anomaly_kind[i, span] == e.kind).all() and (d.label[i, span] == 1).all()
        assert d.anomaly_kind[i, e.start_idx - 1] != e.kind  # the label starts with the fault
        if e.end_idx + 1 < d.ts.shape[1]:
            assert d.anomaly_kind[i, e.end_idx + 1] != e.kind  # and ends with it
        assert LENGTH[0] <= e.end_idx - e.start_idx + 1 <= LENGTH[1]
        hours = (e.end_ts - e.start_ts + 60.0) / 3600.0
        assert 6.6 <= hours <= 15.0  # 400-900 readings at the default 60 s
        assert set(e.features) == set(DIRECTION[e.kind])


@pytest.mark.parametrize("kind", sorted(LONG))
def test_a_plan_changes_every_named_feature_from_its_first_reading_to_its_last(
    kind: str,
) -> None:
    domain = next(d for d, kinds in SUSTAINED_KINDS.items() if kind in kinds)
    features = FEATURES[domain]
    rng = np.random.default_rng(5)
    for _ in range(20):
        plan = DRAW_SUSTAINED[kind](rng, features, np.ones(len(features)))
        assert plan.kind == kind and LENGTH[0] <= plan.length <= LENGTH[1]
        for name, way in DIRECTION[kind].items():
            column = plan.delta[:, features.index(name)]
            assert (np.sign(column) == way).all(), name  # never zero, never the other way
        # A plateau that breathes, not a step to a constant.
        middle = plan.delta[plan.length // 3 : -plan.length // 4, list(plan.cols)]
        assert (np.std(middle, axis=0) > 0.02 * np.abs(middle).mean(axis=0)).all()
        untouched = [i for i in range(len(features)) if i not in plan.cols]
        assert not plan.delta[:, untouched].any()


@pytest.mark.parametrize("domain", ["vitals", "sensors"])
def test_the_shift_is_in_the_data_across_the_named_features_for_the_whole_span(
    domain: str,
) -> None:
    """Against the clean twin (same seed, no anomalies), in the stream's own noise sigmas:
    the mean over the span moves 2+ sigma the right way for every named feature, and so
    does every 50-reading window of the middle half by 1+ sigma."""
    d, clean = data(domain), data(domain, 0.0)
    for e in long_events(d):
        i = d.streams.index(e.stream)
        n = e.end_idx - e.start_idx + 1
        for name, way in DIRECTION[e.kind].items():
            j = d.features.index(name)
            diff = way * (d.values[i, :, j] - clean.values[i, :, j]) / d.noise_sd[i, j]
            assert np.nanmean(diff[e.start_idx : e.end_idx + 1]) >= 2.0, (e, name)
            middle = diff[e.start_idx + n // 4 : e.end_idx + 1 - n // 4]
            windows = [np.nanmean(middle[a : a + 50]) for a in range(0, len(middle) - 49, 10)]
            assert min(windows) >= 1.0, (e, name)


def test_vitals_move_against_the_patients_own_recent_past() -> None:
    """The hours before the fault are the bedside reference. Sensors are not held to this:
    their daily load cycle moves flow and pressure by more than a fault does, which is why a
    valve fault shows in how the features relate (flow down while pressure rises)."""
    d = data("vitals")
    for e in long_events(d):
        i = d.streams.index(e.stream)
        for name, way in DIRECTION[e.kind].items():
            j = d.features.index(name)
            before = np.nanmean(d.values[i, e.start_idx - 200 : e.start_idx, j])
            during = np.nanmean(d.values[i, e.start_idx : e.end_idx + 1, j])
            assert way * (during - before) >= d.noise_sd[i, j], (e, name)


@pytest.mark.parametrize("domain", ["vitals", "sensors"])
def test_the_faults_only_fill_free_time_and_change_nothing_else(domain: str) -> None:
    d, before = data(domain), data(domain, sustained=False)
    faults = long_events(d)
    assert 0.3 <= len({e.stream for e in faults}) / len(d.streams) <= 0.7  # about half
    assert [e for e in d.events if e.kind not in LONG] == before.events  # none moved
    inside = np.zeros(d.label.shape, dtype=bool)
    for e in faults:
        inside[d.streams.index(e.stream), e.start_idx : e.end_idx + 1] = True
    np.testing.assert_array_equal(d.values[~inside], before.values[~inside])
    np.testing.assert_array_equal(d.values[d.label == 0], data(domain, 0.0).values[d.label == 0])


def test_the_same_seed_gives_the_same_faults() -> None:
    a = generate("sensors", 12, 1500, seed=4)
    b = generate("sensors", 12, 1500, seed=4)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.events == b.events and long_events(a)
    more = generate("sensors", 20, 1500, seed=4)  # a stream does not depend on the others
    assert long_events(a) == [e for e in long_events(more) if e.stream in a.streams]
    other = generate("sensors", 12, 1500, seed=5)
    assert long_events(other) != long_events(a)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, MIN_STREAM - 1), st.floats(0, 8), st.integers(0, 2**32))
@example(1199, 8.0, 0)  # 1,199 readings stay untouched, whatever MIN_STREAM says
def test_short_streams_never_hold_one_and_are_unchanged(
    length: int, rate: float, seed: int
) -> None:
    d = generate("vitals", 2, length, seed, anomaly_rate=rate)
    assert not long_events(d)
    np.testing.assert_array_equal(
        d.values, generate("vitals", 2, length, seed, anomaly_rate=rate, sustained=False).values
    )


@pytest.mark.parametrize("length", [MIN_STREAM, MIN_STREAM + 37, 3000])
def test_at_rate_2_every_stream_with_room_holds_one_and_others_none(length: int) -> None:
    """Room: 400 readings after the warm-up quarter, 100 clear of every short event."""
    d = generate("sensors", 30, length, seed=2, anomaly_rate=2.0)
    before = generate("sensors", 30, length, seed=2, anomaly_rate=2.0, sustained=False)
    for stream in d.streams:
        short = [e for e in before.events if e.stream == stream]
        edges = [
            math.ceil(length / 4),
            *[x for e in short for x in (e.start_idx - 100, e.end_idx + 101)],
        ]
        room = max(b - a for a, b in zip(edges[::2], [*edges[1::2], length], strict=True))
        faults = [e for e in long_events(d) if e.stream == stream]
        assert len(faults) == (room >= LENGTH[0]), (stream, room)
        for f in faults:
            assert f.start_idx >= math.ceil(length / 4) and f.end_idx < length
            assert all(
                f.start_idx - e.end_idx > 100 or e.start_idx - f.end_idx > 100 for e in short
            )
    assert long_events(d)


@pytest.mark.parametrize("domain", ["vitals", "sensors"])
def test_the_quality_reports_suites_hold_every_kind(domain: str) -> None:
    """The synthetic suites of ``streamlstm quality`` at their default size, read back the
    way the report reads them: each sustained kind is labelled as its own episodes, often
    enough for a coverage figure per kind."""
    pytest.importorskip("torch")  # the report's data path reaches training
    from streamlstm import config as config_mod
    from streamlstm.evaluation.quality_data import synthetic
    from streamlstm.evaluation.quality_doc import QualityOptions

    opts = QualityOptions(Path("q.md"), Path("configs"), Path("nab"), Path("c.yaml"))
    config = config_mod.from_dict(yaml.safe_load(config_mod.default_config_text(domain)))
    suite, events_for = synthetic(config, domain, opts.streams, opts.length, opts.seed)
    episodes = [
        e for stream, rows in suite.by_stream().items() for e in events_for(stream, None, rows)
    ]
    for kind in SUSTAINED_KINDS[domain]:
        spans = [e.end_idx - e.start_idx + 1 for e in episodes if e.kind == kind]
        assert len(spans) >= 5 and LENGTH[0] <= min(spans) <= max(spans) <= LENGTH[1], kind


def test_simulate_help_lists_every_kind(capsys) -> None:
    top = argparse.ArgumentParser()
    simulate_cmd.add_parser(top.add_subparsers())
    with pytest.raises(SystemExit):
        top.parse_args(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for kinds in (*KINDS.values(), *SUSTAINED_KINDS.values()):
        for kind in kinds:
            assert kind in text, kind
