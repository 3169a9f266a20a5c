"""Evaluation as deployed: the live retraining schedule simulated inside a file replay.

The readings are replayed in time order through ``evaluation.replay`` (the live scoring path),
and every ``every`` readings a round runs as the live one does (``adapters/retrain/round``):
the readings of the last ``retrain.lookback_s`` (in the readings' own time) minus those inside
alert episodes the detector itself opened in this replay (``train.select``; labels are never
looked at), each stream's tail held out, a candidate trained on the rest, the same gate
(``gate.gate_stats`` + ``gate.decide``) against the model most recently promoted, and a
promoted candidate staged with ``Engine.stage`` so it warms in shadow for
``retrain.shadow_readings`` and takes over by itself, as on a worker. So an evaluation measures
how the system adapts, not only its first model.

What differs from live, on purpose: a round runs between two batches and its candidate is
staged at once (live, scoring goes on while Ray Train works, and the registry then reaches the
workers); training is the in-process ``train.fit.fit``, passed in as ``train``, which is the
loop Ray Train runs in its workers.
"""

from __future__ import annotations

import bisect
import copy
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from streamlstm.config import Config
from streamlstm.datafiles import FileData, Series, to_series
from streamlstm.detect.detector import ScoringModel
from streamlstm.evaluation.replay import ReplayRow, engine_for, read_usable, replay, replay_bar
from streamlstm.records import AlertEvent, Reading
from streamlstm.stream.engine import Engine, GroupResult
from streamlstm.train.gate import GateDecision, decide, gate_stats
from streamlstm.train.models import fit_model
from streamlstm.train.select import HOLDOUT, alert_episodes, normal_readings, split_held_out

# Batch size while a model warms in shadow: the switch lands at most this many readings
# after the shadow is warm (out of shadow_readings x streams).
SWAP_BATCH = 64

Train = Callable[[str, list[Series]], ScoringModel]  # (group, training series) -> candidate


@dataclass
class RetrainRound:
    """One group's part of one round."""

    index: int  # 1-based round number
    at_reading: int  # readings replayed when it ran
    group: str
    outcome: str  # promoted | rejected | skipped | failed
    window_readings: int  # readings of every group in the look-back
    dropped_in_episodes: int  # of those, inside alert episodes
    training_readings: int = 0
    held_out_readings: int = 0
    version: str | None = None  # the candidate
    previous: str | None = None  # the version it was gated against
    gate: GateDecision | None = None
    error: str | None = None
    took_over_at: int | None = None  # readings replayed before it scored its first one

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "gate"}
        return {**out, "gate": self.gate.to_dict() if self.gate else None}


@dataclass(frozen=True)
class RoundData:
    data: FileData  # the normal readings of the look-back, (ts, stream) ordered
    window_readings: int
    dropped_in_episodes: int


def round_data(
    replayed: Sequence[Reading], events: Sequence[AlertEvent], now_ts: float, lookback_s: float
) -> RoundData:
    """What the live round at ``now_ts`` reads: readings and alert events of the look-back
    (``adapters/retrain_data`` seeks both topics to now - lookback), minus every reading
    inside an alert episode of its stream."""
    since = now_ts - lookback_s
    window = [r for r in replayed if since <= r.ts <= now_ts]
    # The alerts topic carries AlertEvent.to_dict(): build the episodes from that same form.
    episodes = alert_episodes(e.to_dict() for e in events if since <= e.ts <= now_ts)
    kept = normal_readings(window, episodes)
    return RoundData(FileData(kept), len(window), len(window) - len(kept))


@dataclass
class _Simulation:
    engine: Engine
    config: Config
    train: Train
    on_message: Callable[[str], None] | None
    current: dict[str, ScoringModel] = field(default_factory=dict)  # the latest promoted
    events: list[AlertEvent] = field(default_factory=list)  # as the alerts topic got them
    staged: dict[str, RetrainRound] = field(default_factory=dict)  # warming in shadow
    rounds: list[RetrainRound] = field(default_factory=list)
    replayed: int = 0
    switches_seen: int = 0

    def after_batch(self, results: dict[str, GroupResult]) -> None:
        self.replayed += sum(len(res.readings) for res in results.values())
        self.events.extend(self.engine.events(results))
        for group, _, new in self.engine.switched[self.switches_seen :]:
            self.switches_seen += 1
            round_ = self.staged.pop(group, None)
            if round_ is not None and round_.version == new:
                round_.took_over_at = self.replayed
                self._say(
                    f"retrain round {round_.index}: {new} took over at reading {self.replayed}"
                )

    def run_round(self, readings: Sequence[Reading], end: int) -> None:
        now = readings[end - 1].ts
        lo = bisect.bisect_left(readings, now - self.config.retrain.lookback_s, 0, end, key=_ts)
        data = round_data(readings[lo:end], self.events, now, self.config.retrain.lookback_s)
        index = 1 + (self.rounds[-1].index if self.rounds else 0)
        for group in self.config.groups:
            round_ = RetrainRound(
                index, end, group.name, "", data.window_readings, data.dropped_in_episodes
            )
            candidate = self._train_and_gate(round_, data.data)
            if candidate is not None:
                self.current[group.name] = candidate
                self.engine.stage(candidate, self.config.retrain.shadow_readings)
                self.staged[group.name] = round_  # replaces one still warming, as live
            self.rounds.append(round_)
            self._say(describe(round_))

    def _train_and_gate(self, round_: RetrainRound, data: FileData) -> ScoringModel | None:
        """Fills in ``round_``; returns the candidate when the gate promotes it."""
        train_idx, held_idx = split_held_out(data, round_.group, HOLDOUT)
        round_.training_readings = sum(len(v) for v in train_idx.values())
        round_.held_out_readings = sum(len(v) for v in held_idx.values())
        if round_.training_readings < self.config.retrain.min_readings:
            round_.outcome = "skipped"
            return None
        try:
            candidate = self.train(round_.group, to_series(data, train_idx))
        except Exception as exc:  # as live: a failed run is reported, the current model stays
            round_.outcome, round_.error = "failed", str(exc)[:500]
            return None
        current = self.current[round_.group]
        held = to_series(data, held_idx)
        det, alerts = self.config.detector, self.config.alerts
        round_.gate = decide(
            gate_stats(candidate, held, det, alerts),
            gate_stats(_cpu_copy(current), held, det, alerts),
            self.config.retrain.gate_margin,
        )
        round_.version, round_.previous = candidate.version, current.version
        round_.outcome = "promoted" if round_.gate.promote else "rejected"
        return candidate if round_.gate.promote else None

    def _say(self, text: str) -> None:
        if self.on_message:
            self.on_message(text)


def _ts(r: Reading) -> float:
    return r.ts


def _cpu_copy(model: ScoringModel) -> ScoringModel:
    """The gate's detector moves a net to the CPU in place; the serving one may be on a GPU
    (live, the gate loads its own copy from the registry)."""
    return replace(model, net=copy.deepcopy(model.net).cpu())


def replay_with_retraining(
    engine: Engine,
    readings: list[Reading],
    config: Config,
    every: int,
    train: Train,
    batch_size: int = 4096,
    on_batch: Callable[[int], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> tuple[list[ReplayRow], list, list[RetrainRound]]:
    """``evaluation.replay.replay`` with a retrain round after every ``every`` readings replayed.

    ``readings`` must be time-ordered. Returns replay's rows and rejections (indices into
    ``readings``) and one ``RetrainRound`` per round and group. No round runs after the last
    reading: its model would score nothing.
    """
    if every <= 0:
        raise ValueError("every: must be > 0")
    sim = _Simulation(engine, config, train, on_message)
    sim.current = {group: d.model for group, d in engine.detectors.items()}
    rows: list[ReplayRow] = []
    rejected: list = []
    pos = 0
    while pos < len(readings):
        # A model takes over between two batches once warm: while one warms, small batches
        # let it switch about when a worker polling a live stream would, not up to a whole
        # batch later. Scores do not depend on batching (the exactness invariant).
        size = SWAP_BATCH if engine.shadows else batch_size
        end = min(len(readings), pos + size, (pos // every + 1) * every)
        part, part_rejected = replay(
            engine, readings[pos:end], size, on_batch, on_results=sim.after_batch
        )
        rows += part
        rejected += [(pos + i, rej) for i, rej in part_rejected]
        if end % every == 0 and end < len(readings):
            sim.run_round(readings, end)
        pos = end
    return rows, rejected, sim.rounds


def describe(r: RetrainRound) -> str:
    """One progress line, e.g. ``retrain round 2 at reading 12000: g promoted (gate ...)``."""
    head = f"retrain round {r.index} at reading {r.at_reading}: {r.group} {r.outcome}"
    if r.outcome == "skipped":
        return f"{head} ({r.training_readings} training readings < retrain.min_readings)"
    if r.outcome == "failed":
        return f"{head} ({r.error})"
    assert r.gate is not None and r.gate.candidate is not None and r.gate.current is not None
    cand, cur = r.gate.candidate, r.gate.current
    return (
        f"{head} (gate: error {cand.mean_error:.4f} vs {cur.mean_error:.4f}, alerts/10k "
        f"{cand.alerts_per_10k:.2f} vs {cur.alerts_per_10k:.2f}; trained on "
        f"{r.training_readings} readings, {r.dropped_in_episodes} dropped in alert episodes)"
    )


def format_rounds(rounds: list[RetrainRound]) -> str:
    """The round table of ``evaluate --retrain-every``."""
    lines = [
        "retrain rounds",
        f"  {'round':>5} {'at':>8} {'group':<10} {'outcome':<9} {'trained':>7} {'dropped':>7} "
        f"{'held':>6} {'err cand/cur':>15} {'alerts/10k c/c':>15}  took over at",
    ]
    for r in rounds:
        cand = r.gate.candidate if r.gate else None
        cur = r.gate.current if r.gate else None
        err = f"{cand.mean_error:.4f}/{cur.mean_error:.4f}" if cand and cur else "-"
        al = f"{cand.alerts_per_10k:.1f}/{cur.alerts_per_10k:.1f}" if cand and cur else "-"
        took = str(r.took_over_at) if r.took_over_at is not None else "-"
        lines.append(
            f"  {r.index:>5} {r.at_reading:>8} {r.group:<10} {r.outcome:<9} "
            f"{r.training_readings:>7} {r.dropped_in_episodes:>7} {r.held_out_readings:>6} "
            f"{err:>15} {al:>15}  {took}"
        )
    if not rounds:
        lines.append("  (none: --retrain-every is not below the number of readings)")
    return "\n".join(lines)


def in_process_trainer(config: Config, device: torch.device) -> Train:
    """A round's training: ``train.fit.fit`` in this process with the configured settings (and
    seed, so rounds are reproducible). No per-epoch bar: the round line reports the result."""

    def train(group: str, series: list[Series]) -> ScoringModel:
        return fit_model(config, group, series, device)[0]

    return train


def score_file_retraining(
    config: Config,
    path: str,
    model_dir: str | None,
    train_fraction: float,
    device: torch.device,
    every: int,
    quiet: bool = False,
) -> tuple[FileData, list[ReplayRow], list[RetrainRound]]:
    """Like ``replay.score_file`` (the first model from --model or --train-fraction), with a
    retrain round every ``every`` readings replayed."""

    data = read_usable(path, config)
    engine = engine_for(config, data, model_dir, train_fraction, device, quiet)
    with replay_bar(len(data.readings), quiet) as bar:

        def say(text: str) -> None:
            if not quiet:
                bar.write(text, file=sys.stderr)  # above the bar, not through it

        rows, _, rounds = replay_with_retraining(
            engine,
            data.readings,
            config,
            every,
            in_process_trainer(config, device),
            on_batch=bar.update,
            on_message=say,
        )
    return data, rows, rounds
