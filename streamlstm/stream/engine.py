"""The scoring engine: every model group's detector and state table, and hot-swap between
models, used alike by the live loop (``stream.loop``) and offline replay.

``Engine.score_groups(columns)`` scores each model group's readings, already laid out as
columns, on its detector and state table: the live worker calls it once per poll with the
columns its decoder built. ``Engine.process(readings)`` routes ``Reading`` objects to their
group and scores them the same way (``evaluation.replay`` over a file, in time-ordered
batches). It knows nothing of Kafka, Ray or Prometheus.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from streamlstm.config import Config
from streamlstm.detect.detector import Detector, ReadingColumns, Scored, ScoringModel
from streamlstm.detect.state import StateTable
from streamlstm.records import AlertEvent, Reading
from streamlstm.stream import hotswap


@dataclass
class GroupResult:
    readings: list[Reading]
    scored: Scored


@dataclass
class Engine:
    """Detectors and state tables of every model group a worker serves."""

    detectors: dict[str, Detector]
    tables: dict[str, StateTable] = field(default_factory=dict)
    shadows: dict[str, hotswap.Shadow] = field(default_factory=dict)
    switched: list[tuple[str, str, str]] = field(default_factory=list)  # group, old, new

    @classmethod
    def build(
        cls, config: Config, models: dict[str, ScoringModel], device: torch.device | str = "cpu"
    ) -> Engine:
        missing = [g.name for g in config.groups if g.name not in models]
        if missing:
            raise ValueError(f"no trained model for group(s) {missing}")
        detectors = {
            name: Detector(m, config.detector, config.alerts, device) for name, m in models.items()
        }
        return cls(detectors, {name: d.new_table() for name, d in detectors.items()})

    def process(self, readings: Iterable[Reading]) -> dict[str, GroupResult]:
        by_group: dict[str, list[Reading]] = {}
        for r in readings:
            by_group.setdefault(r.group, []).append(r)
        cols = {group: ReadingColumns.of(batch) for group, batch in by_group.items()}
        scored = self.score_groups(cols)
        return {group: GroupResult(by_group[group], scored[group]) for group in by_group}

    def score_groups(self, by_group: dict[str, ReadingColumns]) -> dict[str, Scored]:
        """Each group's readings as columns (the live loop's, straight from its decoder):
        scored by the group's detector, and by its shadow while one warms."""
        out = {}
        for group, cols in by_group.items():
            out[group] = self.detectors[group].score_columns(self.tables[group], cols)
            if group in self.shadows:
                self._shadow_step(group, cols)
        return out

    def stage(self, model: ScoringModel, shadow_readings: int) -> None:
        """Start warming ``model`` in shadow; it takes over by itself when warm."""
        self.shadows[model.group] = hotswap.stage(
            self.detectors[model.group], model, shadow_readings
        )

    def _shadow_step(self, group: str, cols: ReadingColumns) -> None:
        shadow = self.shadows[group]
        hotswap.feed(shadow, cols)
        if hotswap.ready(shadow):
            old = self.detectors[group].model.version
            self.detectors[group], self.tables[group] = hotswap.switch(shadow, self.tables[group])
            del self.shadows[group]
            self.switched.append((group, old, self.detectors[group].model.version))

    def events(self, results: dict[str, GroupResult]) -> list[AlertEvent]:
        return [e for res in results.values() for e in res.scored.events]
