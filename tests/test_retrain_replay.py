"""The live retraining schedule replayed offline (``evaluate --retrain-every``): lists in,
rows and rounds out, real training and the real gate on small data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from streamlstm.config import Config
from streamlstm.datafiles import Series
from streamlstm.detect.detector import ScoringModel
from streamlstm.evaluation.replay import ReplayRow, replay
from streamlstm.evaluation.retrain_replay import (
    SWAP_BATCH,
    RetrainRound,
    format_rounds,
    replay_with_retraining,
    round_data,
)
from streamlstm.records import AlertEvent, Reading
from streamlstm.stream.engine import Engine
from streamlstm.train.fit import fit
from tests.helpers import FEATURES, interleave, series, tiny_config

STREAMS, LENGTH, EVERY = 4, 360, 600  # rounds after readings 600 and 1200 (of 1440)
SHADOW = 48  # readings per stream: 4 x 48 = 192 = three SWAP_BATCHes after the round
EPISODE = ("s1", 170, 185)  # s1's readings 170..184 shifted: the detector alerts there


def _config(**retrain) -> Config:
    base = tiny_config()
    return base.model_copy(
        update={
            "training": base.training.model_copy(update={"epochs": 4, "lanes": 2}),
            "retrain": base.retrain.model_copy(
                update={
                    "lookback_s": 60.0 * 120,  # the last 120 readings of each stream
                    "min_readings": 100,
                    "shadow_readings": SHADOW,
                    **retrain,
                }
            ),
        }
    )


def _readings() -> list[Reading]:
    per_stream = [series(f"s{k}", LENGTH, seed=k) for k in range(STREAMS)]
    stream, a, b = EPISODE
    k = int(stream[1:])
    for t in range(a, b):
        r = per_stream[k][t]
        hr, spo2, rr = r.values
        per_stream[k][t] = dataclasses.replace(r, values=(hr + 45.0, spo2 - 9.0, rr))
    out = interleave(*per_stream)
    return [dataclasses.replace(r, offset=i) for i, r in enumerate(out)]


def _as_series(readings: list[Reading]) -> list[Series]:
    by: dict[str, list[Reading]] = {}
    for r in readings:
        by.setdefault(r.stream, []).append(r)
    return [
        Series(s, np.array([r.ts for r in rs]), np.array([r.values for r in rs]))
        for s, rs in by.items()
    ]


class Trainer:
    """A real in-process trainer (``train.fit.fit``) that also keeps what it was given.

    ``broken`` adds noise to the trained weights: a training run gone wrong. (Training on
    another plant's levels would not do: every stream is normalised on its own scale, so
    such a model fits this plant as well.)
    """

    def __init__(self, config: Config, broken: bool = False) -> None:
        self.config, self.broken = config, broken
        self.given: list[list[Series]] = []

    def __call__(self, group: str, data: list[Series]) -> ScoringModel:
        self.given.append(data)
        g = self.config.group(group)
        result = fit(data, g.features, g.model, self.config.training, self.config.detector)
        if self.broken:
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for weight in result.net.parameters():
                    weight.add_(torch.randn(weight.shape, generator=gen))
        version = f"{group}-r{len(self.given)}"
        return ScoringModel(group, version, FEATURES, result.net, result.prior)


@pytest.fixture(scope="module")
def first_model() -> ScoringModel:
    """The model evaluate starts from: trained on the first 100 readings of every stream."""
    cfg = _config()
    head = [r for r in _readings() if r.ts < 1.767e9 + 60.0 * 100]
    model = Trainer(cfg)("g", _as_series(head))
    return dataclasses.replace(model, version="g-first")


def _plain(cfg: Config, model: ScoringModel) -> list[ReplayRow]:
    rows, _ = replay(Engine.build(cfg, {"g": model}), _readings())
    return rows


def _simulate(cfg: Config, model: ScoringModel, every: int, train: Trainer):
    engine = Engine.build(cfg, {"g": model})
    rows, rejected, rounds = replay_with_retraining(engine, _readings(), cfg, every, train)
    assert not rejected
    return engine, rows, rounds


# --- the selection: lists in, lists out -----------------------------------------------------


def _alert(event: str, stream: str, ts: float, opened: float, alert_id: str) -> AlertEvent:
    return AlertEvent(alert_id, event, stream, ts, 9.0, 6.0, "warning", "v", (), opened)


def test_round_data_is_the_lookback_minus_alert_episodes() -> None:
    readings = interleave(*[series(s, 10, t0=0.0) for s in ("a", "b", "c")])  # ts 0, 60 .. 540
    events = [
        _alert("open", "a", 180.0, 180.0, "a1"),  # a: 180..300 inside an episode
        _alert("update", "a", 240.0, 180.0, "a1"),
        _alert("resolve", "a", 300.0, 180.0, "a1"),
        _alert("open", "b", 480.0, 480.0, "b1"),  # b: still open from 480 on
        _alert("resolve", "c", 240.0, 60.0, "c1"),  # c: opened before the lookback: 180, 240
    ]
    got = round_data(readings, events, now_ts=540.0, lookback_s=400.0)  # since 140
    kept = [(r.stream, r.ts) for r in got.data.readings]
    assert [ts for s, ts in kept if s == "a"] == [360.0, 420.0, 480.0, 540.0]
    assert [ts for s, ts in kept if s == "b"] == [180.0, 240.0, 300.0, 360.0, 420.0]
    assert [ts for s, ts in kept if s == "c"] == [300.0, 360.0, 420.0, 480.0, 540.0]
    assert kept == sorted(kept, key=lambda x: (x[1], x[0]))  # time order, as training reads
    assert (got.window_readings, got.dropped_in_episodes) == (21, 7)


def test_round_data_ignores_alerts_after_now_and_readings_before_the_lookback() -> None:
    readings = series("a", 10, t0=0.0)
    late = [_alert("open", "a", 600.0, 120.0, "x")]  # not yet on the alerts topic at now=540
    got = round_data(readings, late, now_ts=540.0, lookback_s=300.0)
    assert [r.ts for r in got.data.readings] == [240.0, 300.0, 360.0, 420.0, 480.0, 540.0]


# --- the simulation ------------------------------------------------------------------------


def test_no_round_when_every_is_not_below_the_data_and_rows_equal_plain_replay(
    first_model,
) -> None:
    cfg = _config()
    plain = _plain(cfg, first_model)
    for every in (len(_readings()), 10 * len(_readings())):
        train = Trainer(cfg)
        engine, rows, rounds = _simulate(cfg, first_model, every, train)
        assert rounds == [] and train.given == [] and engine.switched == []
        assert rows == plain
    assert "none" in format_rounds([])


@pytest.fixture(scope="module")
def promoting(first_model):
    """A simulation whose gate promotes whatever trains (these tests are about the swap and
    the data, not the gate)."""
    cfg = _config(gate_margin=100.0)
    train = Trainer(cfg)
    return (cfg, train, *_simulate(cfg, first_model, EVERY, train))


def test_a_promoted_model_takes_over_after_its_shadow_warm_up(first_model, promoting) -> None:
    cfg, _, engine, rows, rounds = promoting
    plain = _plain(cfg, first_model)
    assert [(r.index, r.at_reading, r.outcome) for r in rounds] == [
        (1, 600, "promoted"),
        (2, 1200, "promoted"),
    ]
    assert engine.switched == [("g", "g-first", "g-r1"), ("g", "g-r1", "g-r2")]
    first = rounds[0]
    assert SHADOW * STREAMS == 3 * SWAP_BATCH  # so the switch lands exactly when warm
    assert first.took_over_at == first.at_reading + SHADOW * STREAMS
    assert rounds[1].took_over_at == rounds[1].at_reading + SHADOW * STREAMS
    # The first model scores every reading up to the switch, warm-up included; then the
    # new one does (different weights, so different errors).
    for got, want in zip(rows[: first.took_over_at], plain, strict=False):
        assert got.rms_error == pytest.approx(want.rms_error, rel=1e-5, abs=1e-6)
        assert got.alert_event == want.alert_event
    after = slice(first.took_over_at, first.took_over_at + 40)
    assert all(
        abs(g.rms_error - w.rms_error) > 1e-4
        for g, w in zip(rows[after], plain[after], strict=True)
    )
    assert len(rows) == len(plain) and [r.offset for r in rows] == [r.offset for r in plain]


def test_a_round_trains_on_its_lookback_without_the_replays_alert_episodes(promoting) -> None:
    _, train, _, rows, rounds = promoting
    s1 = [r for r in rows if r.stream == "s1"]
    opened = next(r.ts for r in s1 if r.alert_event == "open")
    resolved = next(r.ts for r in s1 if r.alert_event == "resolve" and r.ts > opened)
    first_round = train.given[0]  # after reading 600: s1's readings 29..149, 80% of them
    s1_ts = next(s.ts for s in first_round if s.stream == "s1")
    assert not np.any((s1_ts >= opened) & (s1_ts <= resolved))
    assert rounds[0].dropped_in_episodes == 0  # the episode (170..) is after this round
    second = {s.stream: s.ts for s in train.given[1]}  # after 1200: readings 179..299
    assert rounds[1].dropped_in_episodes > 0
    assert not np.any((second["s1"] >= opened) & (second["s1"] <= resolved))
    assert len(second["s0"]) == round(121 * 0.8)  # the rest is held out for the gate
    assert second["s0"][0] == 1.767e9 + 60.0 * 179  # the lookback's bound is inclusive


def test_a_rejected_candidate_leaves_the_current_model_serving(first_model) -> None:
    cfg = _config()
    bad = Trainer(cfg, broken=True)  # real training, then its weights scrambled
    engine, rows, rounds = _simulate(cfg, first_model, EVERY, bad)
    assert [r.outcome for r in rounds] == ["rejected", "rejected"]
    assert all(r.took_over_at is None and not r.gate.promote for r in rounds)
    assert rounds[0].gate.candidate.mean_error > rounds[0].gate.current.mean_error
    assert engine.switched == [] and engine.shadows == {}
    assert engine.detectors["g"].model.version == "g-first"
    assert rows == _plain(cfg, first_model)  # nothing changed for the readings either
    table = format_rounds(rounds)
    assert "rejected" in table and table.count("\n") == 3


def test_too_little_data_skips_the_round(first_model) -> None:
    cfg = _config(min_readings=10_000)
    train = Trainer(cfg)
    _, _, rounds = _simulate(cfg, first_model, EVERY, train)
    assert [r.outcome for r in rounds] == ["skipped", "skipped"] and train.given == []
    assert isinstance(rounds[0], RetrainRound) and rounds[0].to_dict()["gate"] is None
