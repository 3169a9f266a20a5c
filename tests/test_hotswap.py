"""Hot-swap in the core (lists in, events out): a new model warms in shadow on the live
readings and takes over between two batches, without an alert storm, without an unscored
reading, and with an alert that is open across the switch keeping its id."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamlstm.datafiles import Series
from streamlstm.detect.detector import ScoringModel
from streamlstm.records import Reading
from streamlstm.stream.engine import Engine
from streamlstm.train.fit import fit
from tests.helpers import FEATURES, series, tiny_config

STREAMS, LENGTH, STAGE_AT, SHADOW = 6, 1600, 700, 100
EPISODES = {"s0": (790, 815), "s3": (1000, 1020)}  # across the switch; after it


def _train(seed: int) -> ScoringModel:
    cfg = tiny_config()
    group = cfg.groups[0]
    train_cfg = cfg.training.model_copy(update={"seed": seed, "epochs": 6})
    data = []
    for k in range(STREAMS):
        readings = series(f"s{k}", 500, seed=100 + k)
        ts = np.array([r.ts for r in readings])
        data.append(Series(f"s{k}", ts, np.array([r.values for r in readings])))
    result = fit(data, group.features, group.model, train_cfg, cfg.detector)
    return ScoringModel(group.name, f"g-v{seed}", FEATURES, result.net, result.prior)


@pytest.fixture(scope="module")
def models() -> tuple[ScoringModel, ScoringModel]:
    return _train(1), _train(2)


def _steps() -> list[list[Reading]]:
    """One batch per time step, one reading per stream; two episodes injected."""
    per_stream = {f"s{k}": series(f"s{k}", LENGTH, seed=k) for k in range(STREAMS)}
    for stream, (a, b) in EPISODES.items():
        for t in range(a, b):
            r = per_stream[stream][t]
            hr, spo2, rr = r.values
            per_stream[stream][t] = dataclasses.replace(r, values=(hr + 45.0, spo2 - 9.0, rr))
    return [[per_stream[f"s{k}"][t] for k in range(STREAMS)] for t in range(LENGTH)]


def _run(models, swap: bool):
    cfg = tiny_config()
    engine = Engine.build(cfg, {"g": models[0]})
    events, scored, warming_after = [], 0, []
    switched_at = None
    for t, batch in enumerate(_steps()):
        if swap and t == STAGE_AT:
            engine.stage(models[1], SHADOW)
        res = engine.process(batch)["g"].scored
        assert not res.rejected
        scored += len(res.index)
        events += [(t, e) for e in res.events]
        if switched_at is not None:
            warming_after += res.warming
        if engine.switched and switched_at is None:
            switched_at = t
    return engine, events, scored, switched_at, warming_after


def test_the_new_model_takes_over_warm_and_every_reading_is_scored(models) -> None:
    engine, events, scored, switched_at, warming_after = _run(models, swap=True)
    v1, v2 = models[0].version, models[1].version
    assert engine.switched == [("g", v1, v2)]
    assert STAGE_AT + SHADOW - 1 <= switched_at < STAGE_AT + 2 * SHADOW
    assert scored == STREAMS * LENGTH  # nothing skipped or scored twice during the swap
    assert not any(warming_after)  # the shadow warmed every stream: nobody starts cold
    for t, e in events:
        assert e.model_version == (v1 if t <= switched_at else v2), (t, e)


def test_an_alert_open_across_the_switch_resolves_under_its_id(models) -> None:
    _, events, _, switched_at, _ = _run(models, swap=True)
    s0 = [(t, e) for t, e in events if e.stream == "s0" and t >= EPISODES["s0"][0]]
    opened = [(t, e) for t, e in s0 if e.event == "open"]
    resolved = [(t, e) for t, e in s0 if e.event == "resolve"]
    assert opened and opened[0][0] <= switched_at, s0  # opened by the old model
    assert resolved and resolved[0][0] > switched_at, s0  # resolved by the new one
    assert resolved[0][1].alert_id == opened[0][1].alert_id
    assert resolved[0][1].model_version == models[1].version


def test_no_alert_storm_after_the_switch_and_the_new_model_detects(models) -> None:
    _, swapped, _, switched_at, _ = _run(models, swap=True)
    _, plain, _, _, _ = _run(models, swap=False)
    span = range(switched_at + 1, switched_at + 501)

    def opens(events) -> int:
        return sum(
            1 for t, e in events if e.event == "open" and t in span and not _in_episode(e.stream, t)
        )

    assert opens(swapped) <= opens(plain)
    a, b = EPISODES["s3"]
    assert any(
        e.event == "open"
        and e.stream == "s3"
        and a <= t < b + 5
        and e.model_version == models[1].version
        for t, e in swapped
    ), [(t, e.event, e.stream) for t, e in swapped]


def _in_episode(stream: str, t: int) -> bool:
    a, b = EPISODES.get(stream, (0, 0))
    return a <= t < b + 10
