"""The streaming loop over small protocols, and the engine both it and offline replay use.

``Engine.process(readings)`` routes readings to their model group's detector and state
table: the live worker calls it once per poll, ``replay`` calls it over a file in
time-ordered batches. Kafka, Ray and Prometheus implement ``Source``, ``Sink`` and
``Metrics`` at the edge (``streamlstm.adapters``); nothing here imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from streamlstm import hotswap
from streamlstm.config import Config
from streamlstm.detector import Detector, Scored, ScoringModel
from streamlstm.records import AlertEvent, Reading
from streamlstm.state import StateTable


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
        out = {}
        for group, batch in by_group.items():
            out[group] = GroupResult(batch, self.detectors[group].score(self.tables[group], batch))
            if group in self.shadows:
                self._shadow_step(group, batch)
        return out

    def stage(self, model: ScoringModel, shadow_readings: int) -> None:
        """Start warming ``model`` in shadow; it takes over by itself when warm."""
        self.shadows[model.group] = hotswap.stage(
            self.detectors[model.group], model, shadow_readings
        )

    def _shadow_step(self, group: str, batch: list[Reading]) -> None:
        shadow = self.shadows[group]
        hotswap.feed(shadow, batch)
        if hotswap.ready(shadow):
            old = self.detectors[group].model.version
            self.detectors[group], self.tables[group] = hotswap.switch(shadow, self.tables[group])
            del self.shadows[group]
            self.switched.append((group, old, self.detectors[group].model.version))

    def events(self, results: dict[str, GroupResult]) -> list[AlertEvent]:
        return [e for res in results.values() for e in res.scored.events]


@dataclass
class ReplayRow:
    stream: str
    ts: float
    score: float
    threshold: float
    is_anomaly: bool
    warming: bool
    rms_error: float
    alert_event: str = ""
    alert_id: str = ""
    top_feature: str = ""
    offset: int = 0


def rows_by_stream(rows: list[ReplayRow]) -> dict[str, list[ReplayRow]]:
    """Replay rows grouped per stream, each stream's rows in replay (time) order."""
    out: dict[str, list[ReplayRow]] = {}
    for r in rows:
        out.setdefault(r.stream, []).append(r)
    return out


def replay(
    engine: Engine,
    readings: list[Reading],
    batch_size: int = 4096,
    on_batch: Callable[[int], None] | None = None,
    on_results: Callable[[dict[str, GroupResult]], None] | None = None,
) -> tuple[list[ReplayRow], list]:
    """Score time-ordered ``readings`` in batches through the live scoring path.

    Returns one row per scored reading (in input order) and the rejections
    ``(index into readings, Rejection)``. ``on_results`` sees each batch's results (its alert
    events included) once the batch is scored, as a live worker's sink would.
    """
    rows: list[ReplayRow | None] = [None] * len(readings)
    rejected: list = []
    for start in range(0, len(readings), batch_size):
        batch = readings[start : start + batch_size]
        position = {id(r): start + k for k, r in enumerate(batch)}
        results = engine.process(batch)
        for group, res in results.items():
            threshold = engine.detectors[group].alerts.cfg.enter
            _fill_rows(rows, position, res, threshold)
            rejected.extend((position[id(res.readings[i])], rej) for i, rej in res.scored.rejected)
        if on_results:
            on_results(results)
        if on_batch:
            on_batch(len(batch))
    return [r for r in rows if r is not None], rejected


def _fill_rows(rows: list, position: dict[int, int], res: GroupResult, threshold: float) -> None:
    sc = res.scored
    by_source: dict[tuple[str, int], int] = {}
    for j, i in enumerate(sc.index):
        r = res.readings[i]
        pos = position[id(r)]
        rows[pos] = ReplayRow(
            r.stream,
            r.ts,
            sc.score[j],
            threshold,
            sc.in_alert[j],
            sc.warming[j],
            sc.raw_error[j],
            offset=r.offset,
        )
        by_source[(r.stream, r.offset)] = pos
    for event in sc.events:
        row = rows[by_source[(event.stream, event.source[2])]]
        if row.alert_event != "open":  # an open outranks an update on the same reading
            row.alert_event, row.alert_id = event.event, event.alert_id
        if event.top_features and not row.top_feature:
            row.top_feature = event.top_features[0][0]
