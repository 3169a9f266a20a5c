"""Hot-swap: a newly promoted model warms up in shadow on live readings, then takes over.

``stage`` gives the new model its own detector and state table. From then on every batch is
scored by the current model (its events go out) and also by the shadow (its events are
dropped), so the shadow builds each stream's ``(h, c)``, normalisation and calibration on
the same readings. When nearly every stream it has seen has had ``shadow_readings``
readings, ``switch`` makes it current, between two batches: no reading goes unscored and no
stream starts cold. Alert state (open alerts with their minted ids, cooldowns) is carried
over, so an alert open across the switch resolves under its original id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamlstm.detect import alerts
from streamlstm.detect.columns import Col
from streamlstm.detect.detector import Detector, ReadingColumns, ScoringModel
from streamlstm.detect.state import StateTable

# Switch when this share of the shadow's streams is warm: a stream that went quiet during
# the shadow period must not hold the swap back forever (it re-warms when it returns).
READY_SHARE = 0.95


@dataclass
class Shadow:
    detector: Detector
    table: StateTable
    needed: int  # readings per stream before the switch


def stage(current: Detector, model: ScoringModel, shadow_readings: int) -> Shadow:
    """A shadow detector for ``model`` with the current one's settings and device."""
    detector = Detector(model, current.cfg, current.alerts.cfg, current.device)
    return Shadow(detector, detector.new_table(), max(shadow_readings, 1))


def feed(shadow: Shadow, cols: ReadingColumns) -> None:
    """Score the batch in shadow; its events and rejections are dropped."""
    shadow.detector.score_columns(shadow.table, cols)


def ready(shadow: Shadow) -> bool:
    rows = np.fromiter(shadow.table.index.values(), np.int64)
    if len(rows) == 0:
        return False
    seen = shadow.table.dev[Col.SINCE_RESET][rows].cpu().numpy()
    return float((seen >= shadow.needed).mean()) >= READY_SHARE


def switch(shadow: Shadow, old_table: StateTable) -> tuple[Detector, StateTable]:
    """Carry alert state over from ``old_table``; returns the new current (detector, table)."""
    table = shadow.table
    streams = list(old_table.index)
    rows, is_new = table.rows_for(streams)
    if is_new.any():  # streams quiet since staging: fresh model state, their alert state kept
        shadow.detector.init_rows(table, rows[is_new])
    old_rows = np.fromiter((old_table.index[s] for s in streams), np.int64, len(streams))
    for name in alerts.HOST_COLUMNS:  # open alerts (with their ids), cooldowns
        table.host[name][rows] = old_table.host[name][old_rows]
    for name in (Col.LAST_TS, Col.LAST_OFFSET):  # the shadow already has them for streams it saw
        table.host[name][rows[is_new]] = old_table.host[name][old_rows[is_new]]
    return shadow.detector, table
