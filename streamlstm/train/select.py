"""What a retrain round learns from, as pure functions over readings and alert events.

The live round (``adapters/retrain/data`` reading Kafka, ``adapters/retrain/round`` training and
gating) and its offline twin (``retrain_replay``) both call these, so "recent normal data"
means the same thing in production and in an evaluation: the readings of the look-back
window minus every reading inside an alert episode of its stream (the detector's own
judgement, never labels), then each stream's tail held out for the gate.
"""

from __future__ import annotations

from collections.abc import Iterable

from streamlstm.datafiles import FileData
from streamlstm.records import Reading, parse_ts

# Share of each stream's end the gate scores when no separate validation data is given.
HOLDOUT = 0.2

Episodes = dict[str, list[tuple[float, float]]]


def alert_episodes(events: Iterable[dict]) -> Episodes:
    """Per stream, (start, end) seconds of every alert episode; an open one ends at +inf.

    ``events`` are alert events as the alerts topic carries them (``AlertEvent.to_dict``).
    """
    open_at: dict[str, dict[str, float]] = {}  # stream -> alert_id -> opened
    out: Episodes = {}
    for event in events:
        stream, alert_id = event.get("stream"), event.get("alert_id")
        if not stream or not alert_id or not event.get("opened_ts"):
            continue  # not an alert event of this contract
        opened = parse_ts(event["opened_ts"])
        if event.get("event") == "resolve":
            open_at.get(stream, {}).pop(alert_id, None)
            out.setdefault(stream, []).append((opened, parse_ts(event["ts"])))
        else:
            open_at.setdefault(stream, {}).setdefault(alert_id, opened)
    for stream, still_open in open_at.items():
        out.setdefault(stream, []).extend((t, float("inf")) for t in still_open.values())
    return out


def inside(episodes: Iterable[tuple[float, float]], ts: float) -> bool:
    return any(start <= ts <= end for start, end in episodes)


def normal_readings(readings: Iterable[Reading], episodes: Episodes) -> list[Reading]:
    """The readings outside every alert episode of their stream, in (ts, stream) order."""
    kept = [r for r in readings if not inside(episodes.get(r.stream, ()), r.ts)]
    kept.sort(key=lambda r: (r.ts, r.stream))
    return kept


def split_held_out(
    data: FileData, group: str, holdout: float
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Per stream of ``group``: (first rows to train on, last ``holdout`` share for the gate)."""
    train, held = {}, {}
    for stream, rows in data.by_stream().items():
        if data.readings[rows[0]].group != group:
            continue
        cut = round(len(rows) * (1.0 - holdout))
        train[stream], held[stream] = rows[:cut], rows[cut:]
    return train, held
