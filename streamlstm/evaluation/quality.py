"""Run the streaming detector and the two baselines over one labelled data set.

``score_suite`` trains the config's model on the first ``train_fraction`` of every stream
(the same as ``streamlstm evaluate`` without ``--model``; or on a protocol's fixed part of
each stream, e.g. NAB's probationary period), replays all readings through the
live scoring path, and scores the same readings with the baselines of ``baselines.py``. It
returns per detector the ``StreamEval``s the metrics of ``evaluation.metrics`` take. Thresholds
come from the config only; labels are read after scoring, to build the events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from streamlstm.config import Config
from streamlstm.datafiles import FileData, Series, in_time_order, to_series
from streamlstm.detect.calibration import calibration_horizons
from streamlstm.detect.detector import ScoringModel
from streamlstm.evaluation.baselines import (
    AlertTrace,
    calibrated_alerts,
    rolling_zscore_stats,
    sliding_lstm_stats,
    typical_error,
)
from streamlstm.evaluation.metrics import Event, StreamEval
from streamlstm.evaluation.replay import ReplayRow, replay, rows_by_stream
from streamlstm.evaluation.retrain_replay import in_process_trainer, replay_with_retraining
from streamlstm.stream.engine import Engine
from streamlstm.train.fit import normalise_lanes
from streamlstm.train.models import fit_model

DETECTORS = ("streaming LSTM-AE", "sliding-window LSTM-AE", "rolling z-score")
RETRAINED = "streaming LSTM-AE, retrained as deployed"  # with ``retrain_every``
ZSCORE_WINDOW = 100  # readings of history behind the rolling z-score baseline

EventsFor = Callable[[str, np.ndarray, list[int]], list[Event]]  # stream, ts, offsets


@dataclass
class Traced:
    """One stream under one detector: its evaluation input and what a plot needs."""

    eval: StreamEval
    score: np.ndarray
    values: np.ndarray  # (T, F) raw readings


@dataclass
class SuiteRun:
    models: dict[str, ScoringModel]
    by_detector: dict[str, list[Traced]] = field(default_factory=dict)
    rounds: list = field(default_factory=list)  # RetrainRound of the retrained replay

    def evals(self, detector: str) -> list[StreamEval]:
        return [t.eval for t in self.by_detector[detector]]


def score_suite(
    config: Config,
    data: FileData,
    events_for: EventsFor,
    train_fraction: float = 0.15,
    device: torch.device | None = None,
    baselines: bool = True,
    retrain_every: int = 0,
    train_readings: int | Callable[[int], int] | None = None,
) -> SuiteRun:
    """All three detectors over ``data`` (only the first without ``baselines``);
    ``events_for`` builds a stream's labelled events. With ``retrain_every`` the streaming
    detector also runs as deployed: the same first model, then a retrain round (data
    selection, gate, shadow warm-up) every ``retrain_every`` readings (``retrain_replay``).
    ``train_readings`` (per stream; or a function of the stream's length) replaces
    ``train_fraction`` when a protocol fixes it."""

    device = device or torch.device("cpu")
    split = _TrainSplit(train_fraction, train_readings)
    models = _train(config, data, split, device)
    engine = Engine.build(config, models, device)
    rows, _ = replay(engine, data.readings)
    run = SuiteRun(models)
    run.by_detector[DETECTORS[0]] = _streaming(rows, data, events_for)
    if retrain_every:
        engine = Engine.build(config, models, device)
        train = in_process_trainer(config, device)
        rows, _, run.rounds = replay_with_retraining(
            engine, data.readings, config, retrain_every, train
        )
        run.by_detector[RETRAINED] = _streaming(rows, data, events_for)
    for name in DETECTORS[1:] if baselines else ():
        run.by_detector[name] = _baseline(name, config, models, data, split, events_for)
    return run


@dataclass(frozen=True)
class _TrainSplit:
    """The first readings of a stream its model trains on (and its baselines' calibration
    starts from)."""

    fraction: float
    readings: int | Callable[[int], int] | None = None

    def of(self, n: int) -> int:
        if self.readings is None:
            return max(1, int(n * self.fraction))
        return self.readings(n) if callable(self.readings) else self.readings


def _train(
    config: Config, data: FileData, split: _TrainSplit, device: torch.device
) -> dict[str, ScoringModel]:
    """Each group's model on the first ``split.of(n)`` readings of each of its streams."""
    models = {}
    for group in config.groups:
        first = {
            s: rows[: split.of(len(rows))]
            for s, rows in data.by_stream().items()
            if data.readings[rows[0]].group == group.name
        }
        if first:
            models[group.name], _ = fit_model(config, group.name, to_series(data, first), device)
    return models


def _streaming(rows: list[ReplayRow], data: FileData, events_for: EventsFor) -> list[Traced]:
    out = []
    for stream, rs in rows_by_stream(rows).items():
        ts = np.array([r.ts for r in rs])
        evaluated = StreamEval(
            stream,
            ts,
            np.array([r.alert_event == "open" for r in rs]),
            np.array([r.is_anomaly for r in rs]),
            events_for(stream, ts, [r.offset for r in rs]),
        )
        values = np.array([data.readings[r.offset].values for r in rs], dtype=float)
        out.append(Traced(evaluated, np.array([r.score for r in rs]), values))
    return out


def _baseline(
    name: str,
    config: Config,
    models: dict[str, ScoringModel],
    data: FileData,
    split: _TrainSplit,
    events_for: EventsFor,
) -> list[Traced]:
    """Each stream on its own (a lane of one): no padding work, same results as batched."""
    model = models[_group_of(config, models)]
    out = []
    for stream, given in data.by_stream().items():
        offsets = in_time_order(data, given)  # what the streaming detector scored too
        (s,) = to_series(data, {stream: offsets})
        stats, seen, horizon = _baseline_stats(name, config, model, s)
        n_train = max(2, split.of(len(s.ts)))
        skip = min(config.detector.burn_in_readings, n_train - 1)
        prior = typical_error(stats[:n_train], seen[:n_train], skip)
        trace: AlertTrace = calibrated_alerts(
            stats, seen, prior, config.detector, config.alerts, horizon=horizon
        )
        evaluated = StreamEval(
            stream,
            s.ts,
            trace.alert_open[:, 0],
            trace.in_alert[:, 0],
            events_for(stream, s.ts, offsets),
        )
        out.append(Traced(evaluated, trace.score[:, 0], s.values))
    return out


def _group_of(config: Config, models: dict[str, ScoringModel]) -> str:
    return next(g.name for g in config.groups if g.name in models)


def _baseline_stats(
    name: str, config: Config, model: ScoringModel, s: Series
) -> tuple[torch.Tensor, torch.Tensor, float | torch.Tensor | None]:
    """stats, seen and their calibration horizons (None: the errors' one for every column)."""
    if name == "rolling z-score":
        return (*rolling_zscore_stats(s.values[:, None, :], ZSCORE_WINDOW), None)
    z, m, _ = normalise_lanes([s], model.prior, config.detector, torch.device("cpu"))
    net = model.net.to("cpu").eval()
    det, context = config.detector, config.training.chunk_len
    stats, seen = sliding_lstm_stats(net, z, m, context, det.score_inputs)
    return stats, seen, calibration_horizons(det, s.values.shape[1])  # the detector's columns
