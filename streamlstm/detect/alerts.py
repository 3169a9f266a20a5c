"""The alert state machine: per stream, pure, deterministic ids.

States: idle -> (``min_duration`` readings at or above ``enter``, or with
``open_on_critical`` one at or above ``critical``; judged on the window's score, or with
``open_on: newest`` on the reading's own) -> open -> (``exit_duration`` readings below
``exit``) -> idle with a ``cooldown`` in which nothing opens. An open alert is re-announced
(``update``) when its severity rises or its peak grows by ``update_ratio``.
An alert open for ``rebaseline_after_s``, or (``rebaseline_after_history``) that many times
as long as the history its normal was learnt from, ends with a ``rebaseline`` event instead:
the stream's new state is accepted as its normal, visibly, and the detector re-learns it.

``alert_phase`` gives each row's phase, from which ``holding.py`` decides which readings
the stream's normal may not learn from.

State lives in host columns of the group's ``StateTable`` (see ``HOST_COLUMNS``); the step is
vectorised to pick the few streams that need attention and runs plain Python only for them,
so a quiet poll of 10 000 streams costs a handful of numpy operations.

``alert_id`` = hash(stream, position of the opening reading (``records.position``: record
offset and index in a batched record), model version), minted at open and
kept in the row: a replay after a crash re-opens the same alert with the same id, so
consumers can de-duplicate, and a model swap mid-alert does not change it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from streamlstm.config import AlertConfig
from streamlstm.detect.columns import Col
from streamlstm.detect.state import Column
from streamlstm.records import AlertEvent

IDLE, OPEN = 0, 1
PHASE_IDLE, PHASE_PENDING, PHASE_OPEN = 0, 1, 2  # alert_phase
WARNING, CRITICAL = 1, 2
SEVERITY = {WARNING: "warning", CRITICAL: "critical"}
KIND = {0: "anomaly", 1: "signal_quality"}

HOST_COLUMNS: dict[str, Column] = {
    Col.A_STATE: Column((), "int8", IDLE),
    Col.A_PENDING: Column((), "int32", 0),  # consecutive readings at or above enter
    Col.A_BELOW: Column((), "int32", 0),  # consecutive readings below exit while open
    Col.A_COOLDOWN: Column((), "int32", 0),  # readings left before a new alert may open
    Col.A_PEAK: Column((), "float32", 0.0),  # highest score announced for the open alert
    Col.A_LEVEL: Column((), "float32", 0.0),  # the open alert's typical score (exit_share)
    Col.A_SEVERITY: Column((), "int8", 0),
    Col.A_KIND: Column((), "int8", 0),
    Col.A_OPEN_OFFSET: Column((), "int64", -1),
    Col.A_OPEN_TS: Column((), "float64", 0.0),
    # The first reading of the stream's normal: its first reading, or the first after a
    # rebaseline (NaN: not seen yet, or a row restored from an older snapshot).
    Col.A_NORMAL_TS: Column((), "float64", float("nan")),
    # The alert id, minted at open and kept (12 bytes as 8 + 4): update and resolve events
    # carry the id of the open even if the model version changed in between.
    Col.A_ID_HI: Column((), "int64", 0),
    Col.A_ID_LO: Column((), "int64", 0),
}


def alert_id(stream: str, open_offset: int, model_version: str) -> str:
    raw = f"{stream}\x1f{open_offset}\x1f{model_version}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


def _pack_id(alert: str) -> tuple[int, int]:
    raw = bytes.fromhex(alert)
    return int.from_bytes(raw[:8], "big", signed=True), int.from_bytes(raw[8:], "big")


def _unpack_id(hi: int, lo: int) -> str:
    return (hi.to_bytes(8, "big", signed=True) + lo.to_bytes(4, "big")).hex()


@dataclass
class AlertInputs:
    """One reading per row of a sub-step; arrays are aligned with ``rows``."""

    streams: Sequence[str]
    ts: np.ndarray  # (B,) float64 epoch seconds
    offsets: np.ndarray  # (B,) int64 positions (records.position), not raw record offsets
    score: np.ndarray  # (B,) calibrated score
    quality: np.ndarray  # (B,) bool: a stuck / dropped-out feature
    warming: np.ndarray  # (B,) bool: no alert may open
    top_features: Callable[[int], tuple[tuple[str, float], ...]]  # lazily, for events only
    sources: Callable[[int], tuple[str, int, int]]
    # (B,) the reading's own score (the step's ``own_score``): the lower of ``score`` and
    # the newest reading's alone, what ``alerts.exit_on`` / ``open_on: newest`` judge on;
    # never above ``score``. None: ``score`` itself.
    own_score: np.ndarray | None = None
    # (B,) bool: a sensor the open alert holds is still off its frozen normal
    # (``alerts.exit_when_back``; ``holding.still_off``): the reading does not count
    # towards resolving, whatever its score. None: none.
    held_off: np.ndarray | None = None

    def own_scores(self) -> np.ndarray:
        return self.score if self.own_score is None else self.own_score

    @cached_property
    def not_back(self) -> np.ndarray:
        """(B,) bool: readings that cannot count towards an exit (a stuck feature, a held
        sensor still off); worked out once per sub-step, read by every eventful row."""
        if self.held_off is None:
            return self.quality
        return self.quality | self.held_off


def alert_phase(host: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """(B,) int8 per row: ``PHASE_OPEN``, ``PHASE_PENDING`` (readings at or above enter,
    ``min_duration`` not reached) or ``PHASE_IDLE``."""
    phase = np.where(host[Col.A_PENDING][rows] > 0, PHASE_PENDING, PHASE_IDLE)
    return np.where(host[Col.A_STATE][rows] == OPEN, PHASE_OPEN, phase).astype(np.int8)


EPISODE_HORIZON = 30.0  # readings behind an open alert's typical score (its EMA)


def exit_limit(cfg: AlertConfig, level):
    """The score below which an open alert counts towards resolving: ``exit``, or with
    ``exit_share`` that share of the episode's typical score ``level`` if higher.

    Why: with the normal frozen through a fault, a plant that is put right rarely comes
    back to exactly the state it left (a reassembled rotor vibrates a little differently,
    the water is warmer): its score falls from ~70 to ~5, not below ``exit``, and the alert
    stayed open for the rest of the run (pump-dev runs 5 and 6, ~170 readings each). A fall
    to a small share of what the episode typically scored says the fault has gone; a fault
    that stays keeps its score near its typical one. ``level`` follows the score while the
    alert is open over ``EPISODE_HORIZON`` readings, so a slow recovery lowers it with the
    score and a short dip does not end the alert.
    """
    if cfg.exit_share is None:
        return cfg.exit
    return np.maximum(cfg.exit, cfg.exit_share * level)


def overdue(cfg: AlertConfig, ts, open_ts, normal_ts) -> np.ndarray:
    """Whether alerts opened at ``open_ts`` end in a rebaseline at ``ts`` (arrays or
    scalars): open ``rebaseline_after_s``, or ``rebaseline_after_history`` times as long as
    their normal's history (``open_ts - normal_ts``; a NaN history never ends one)."""
    open_s = np.asarray(ts - open_ts)
    ended = np.zeros(open_s.shape, dtype=bool)
    if cfg.rebaseline_after_s is not None:
        ended |= open_s >= cfg.rebaseline_after_s
    if cfg.rebaseline_after_history is not None:
        ended |= open_s >= cfg.rebaseline_after_history * (open_ts - normal_ts)
    return ended


def _start_history(host: dict[str, np.ndarray], rows: np.ndarray, ts: np.ndarray) -> None:
    """Rows whose normal has no start yet (a new stream, the reading after a rebaseline)
    start it at this reading."""
    fresh = np.isnan(host[Col.A_NORMAL_TS][rows])
    if fresh.any():
        host[Col.A_NORMAL_TS][rows[fresh]] = ts[fresh]


def _busy(host: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """(B,) bool: an open alert, a pending one, or a cooldown."""
    return (
        (host[Col.A_STATE][rows] == OPEN)
        | (host[Col.A_PENDING][rows] > 0)
        | (host[Col.A_COOLDOWN][rows] > 0)
    )


def _follow(level, score):
    """One step of the open alert's typical score (an EMA over ``EPISODE_HORIZON``)."""
    return level + (score - level) / EPISODE_HORIZON


class AlertMachine:
    def __init__(self, cfg: AlertConfig, model_version: str):
        self.cfg = cfg
        self.model_version = model_version

    def step(self, host: dict[str, np.ndarray], rows: np.ndarray, inp: AlertInputs) -> list:
        """Advance every row by one reading; returns the ``AlertEvent``s this produced.

        Transitions that raise no event (a pending count, a cooldown, a count of readings
        below exit, an open alert that neither grew nor ended) are applied to all rows at
        once in numpy; only the rows that raise an event go through ``_advance``, one by
        one, on their state from before this reading. Many streams inside alerts at once
        (an incident) then cost a few array operations, not a Python call each.
        """
        if self.cfg.rebaseline_after_history is not None:
            _start_history(host, rows, inp.ts)
        above = ((self._opening_scores(inp) >= self.cfg.enter) | inp.quality) & ~inp.warming
        if not above.any() and not _busy(host, rows).any():
            return []  # the common poll: every stream idle and quiet, nothing to do
        eventful = self._quiet_transitions(host, rows, above, inp)
        events: list[AlertEvent] = []
        for i in np.flatnonzero(eventful):
            event = self._advance(host, int(rows[i]), i, bool(above[i]), inp)
            if event is not None:
                events.append(event)
        return events

    def _opening_scores(self, inp: AlertInputs) -> np.ndarray:
        """(B,) what counts towards opening (``alerts.open_on``)."""
        return inp.own_scores() if self.cfg.open_on == "newest" else inp.score

    def _exit_scores(self, inp: AlertInputs) -> np.ndarray:
        """(B,) what an open alert's exit is judged on (``alerts.exit_on``)."""
        return inp.own_scores() if self.cfg.exit_on == "newest" else inp.score

    def _critical(self, score):
        """Scores that open an alert without the ``min_duration`` wait (``open_on_critical``):
        that wait keeps noise around ``enter`` from paging, and past ``critical`` it is not."""
        return (np.asarray(score) >= self.cfg.critical) & self.cfg.open_on_critical

    def _quiet_transitions(self, host, rows: np.ndarray, above: np.ndarray, inp: AlertInputs):
        """Apply the event-free transitions of ``_advance`` to their rows; returns (B,) bool:
        the rows left for ``_advance`` (an open, a rebaseline, a resolve or an update)."""
        cfg = self.cfg
        is_open = host[Col.A_STATE][rows] == OPEN
        cooling = ~is_open & (host[Col.A_COOLDOWN][rows] > 0)
        idle = ~is_open & ~cooling
        pending = np.where(above, host[Col.A_PENDING][rows] + 1, 0)
        at_once = above & self._critical(self._opening_scores(inp))
        opens = idle & ((pending >= cfg.min_duration) | at_once)
        ended = is_open & overdue(
            cfg, inp.ts, host[Col.A_OPEN_TS][rows], host[Col.A_NORMAL_TS][rows]
        )
        level = host[Col.A_LEVEL][rows]
        low = is_open & ~ended & (self._exit_scores(inp) < exit_limit(cfg, level)) & ~inp.not_back
        below = host[Col.A_BELOW][rows] + 1
        resolves = low & (below >= cfg.exit_duration)
        high = is_open & ~ended & ~low
        severity = np.where(inp.score >= cfg.critical, CRITICAL, WARNING)
        grew = inp.score >= host[Col.A_PEAK][rows] * cfg.update_ratio
        updates = high & ((severity > host[Col.A_SEVERITY][rows]) | grew)
        # The quiet ones, in place (rows are distinct within a sub-step).
        r = rows[cooling]
        host[Col.A_COOLDOWN][r] -= 1
        host[Col.A_PENDING][r] = 0
        waiting = idle & ~opens
        host[Col.A_PENDING][rows[waiting]] = pending[waiting]
        counting = low & ~resolves
        host[Col.A_BELOW][rows[counting]] = below[counting]
        host[Col.A_BELOW][rows[high & ~updates]] = 0
        if cfg.exit_share is not None:  # the level serves exit_share alone
            quiet = is_open & ~ended & ~resolves & ~updates  # eventful: in _while_open
            host[Col.A_LEVEL][rows[quiet]] = _follow(level[quiet], inp.score[quiet])
        return opens | ended | resolves | updates

    def _advance(self, host, row: int, i: int, above: bool, inp: AlertInputs):
        cfg = self.cfg
        if host[Col.A_STATE][row] == OPEN:
            return self._while_open(host, row, i, inp)
        if host[Col.A_COOLDOWN][row] > 0:
            host[Col.A_COOLDOWN][row] -= 1
            host[Col.A_PENDING][row] = 0
            return None
        host[Col.A_PENDING][row] = host[Col.A_PENDING][row] + 1 if above else 0
        at_once = above and bool(self._critical(self._opening_scores(inp)[i]))
        if host[Col.A_PENDING][row] < cfg.min_duration and not at_once:
            return None
        score = float(inp.score[i])
        host[Col.A_STATE][row] = OPEN
        host[Col.A_PENDING][row] = 0
        host[Col.A_BELOW][row] = 0
        host[Col.A_PEAK][row] = score
        host[Col.A_LEVEL][row] = score
        host[Col.A_SEVERITY][row] = CRITICAL if score >= cfg.critical else WARNING
        host[Col.A_KIND][row] = 0 if score >= cfg.enter else 1
        host[Col.A_OPEN_OFFSET][row] = inp.offsets[i]
        host[Col.A_OPEN_TS][row] = inp.ts[i]
        minted = alert_id(inp.streams[i], int(inp.offsets[i]), self.model_version)
        host[Col.A_ID_HI][row], host[Col.A_ID_LO][row] = _pack_id(minted)
        return self._event("open", host, row, i, inp)

    def _while_open(self, host, row: int, i: int, inp: AlertInputs):
        cfg = self.cfg
        score = float(inp.score[i])
        if overdue(cfg, inp.ts[i], host[Col.A_OPEN_TS][row], host[Col.A_NORMAL_TS][row]):
            # Open this long: the state is the new normal. Say so, close, re-learn; the new
            # normal's history starts with the stream's next reading.
            event = self._event("rebaseline", host, row, i, inp)
            host[Col.A_STATE][row] = IDLE
            host[Col.A_BELOW][row] = 0
            host[Col.A_NORMAL_TS][row] = np.nan
            return event
        level = host[Col.A_LEVEL][row]
        if self._exit_scores(inp)[i] < exit_limit(cfg, level) and not inp.not_back[i]:
            host[Col.A_BELOW][row] += 1
            if host[Col.A_BELOW][row] < cfg.exit_duration:
                if cfg.exit_share is not None:  # the level serves exit_share alone
                    host[Col.A_LEVEL][row] = _follow(level, score)
                return None
            event = self._event("resolve", host, row, i, inp)
            host[Col.A_STATE][row] = IDLE
            host[Col.A_BELOW][row] = 0
            host[Col.A_COOLDOWN][row] = cfg.cooldown
            return event
        if cfg.exit_share is not None:
            host[Col.A_LEVEL][row] = _follow(level, score)
        host[Col.A_BELOW][row] = 0
        severity = CRITICAL if score >= cfg.critical else WARNING
        grew = score >= host[Col.A_PEAK][row] * cfg.update_ratio
        if severity > host[Col.A_SEVERITY][row] or grew:
            host[Col.A_SEVERITY][row] = max(severity, int(host[Col.A_SEVERITY][row]))
            host[Col.A_PEAK][row] = max(score, float(host[Col.A_PEAK][row]))
            if host[Col.A_KIND][row] == 1 and score >= cfg.enter:
                host[Col.A_KIND][row] = 0  # a quality alert that turned into a real anomaly
            return self._event("update", host, row, i, inp)
        return None

    def _event(self, name: str, host, row: int, i: int, inp: AlertInputs) -> AlertEvent:
        stream = inp.streams[i]
        hi, lo = int(host[Col.A_ID_HI][row]), int(host[Col.A_ID_LO][row])
        if hi == 0 and lo == 0:  # opened before ids were kept (an older snapshot)
            kept = alert_id(stream, int(host[Col.A_OPEN_OFFSET][row]), self.model_version)
        else:
            kept = _unpack_id(hi, lo)
        return AlertEvent(
            alert_id=kept,
            event=name,
            stream=stream,
            ts=float(inp.ts[i]),
            score=float(inp.score[i]),
            threshold=self.cfg.enter,
            severity=SEVERITY[int(host[Col.A_SEVERITY][row])],
            model_version=self.model_version,
            top_features=inp.top_features(i),
            opened_ts=float(host[Col.A_OPEN_TS][row]),
            kind=KIND[int(host[Col.A_KIND][row])],
            source=inp.sources(i),
        )
