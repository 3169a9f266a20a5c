"""A poll's decoded columns -> the per-group reading lists ``Engine.process_groups`` scores,
with what the loop needs to trace each reading back to its record.

The detector takes ``Reading`` objects; building them from the columns is the stage
``group`` of ``bench e2e --profile``. Their ``values`` are rows of the poll's float32 array,
not tuples: a tuple costs six Python floats per reading to make and to read back, a row
view one small object (and the detector reads them as float32 anyway).

A stream is read from one partition only (``home``): the records of a stream seen on
another partition are rejected whole (``other_partition``), and so are those of a new stream
the worker has no room for (``too_many_streams``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from streamlstm.records import AlertEvent, RawRecord, Reading, offset_of
from streamlstm.stream.decode import GroupColumns


@dataclass
class GroupReadings:
    readings: list[Reading]  # ``offset`` = the reading's position (records.position)
    record: np.ndarray  # (N,) index of each reading's record in the poll
    fresh: np.ndarray  # (N,) bool: its record was not counted before


def group_readings(
    group: str,
    cols: GroupColumns,
    records: list[RawRecord],
    fresh_record: np.ndarray,
    refusal: Callable[[str, str, tuple[str, int]], str | None],
    refused: list[tuple[int, str]],
) -> GroupReadings:
    """``refusal(group, stream, tp)`` is asked once per record; the records it refuses are
    appended to ``refused`` (index, reason) and their readings left out."""
    record = cols.record
    starts = np.flatnonzero(np.r_[True, record[1:] != record[:-1]]) if len(record) else record
    away: list[int] = []
    for j in starts:
        i = int(record[j])
        reason = refusal(group, cols.streams[j], _tp(records[i]))
        if reason is not None:
            away.append(i)
            refused.append((i, reason))
    streams, ts, values, position = cols.streams, cols.ts, cols.values, cols.position
    if away:
        keep = ~np.isin(record, away)
        streams = [s for s, k in zip(streams, keep, strict=True) if k]
        ts, values, position, record = ts[keep], values[keep], position[keep], record[keep]
    rec_list = record.tolist()
    readings = list(
        map(
            Reading,
            streams,
            ts.tolist(),
            list(values.astype(np.float32)),  # row views: no Python float per value
            repeat(group),
            [records[i].topic for i in rec_list],
            [records[i].partition for i in rec_list],
            position.tolist(),
        )
    )
    return GroupReadings(readings, record, fresh_record[record])


def _tp(record: RawRecord) -> tuple[str, int]:
    return (record.topic, record.partition)


def where(record: RawRecord) -> tuple[str, int, int]:
    return (record.topic, record.partition, record.offset)


def at_record(event: AlertEvent, batched: set[tuple[str, int, int]]) -> AlertEvent:
    """The detector names a reading by its position; the event names its record's offset,
    and, for a batched record, the reading's index in it."""
    topic, partition, pos = event.source
    offset, index = offset_of(pos)
    extra = event.extra
    if (topic, partition, offset) in batched:
        extra = {**extra, "batch_index": index}
    return dataclasses.replace(event, source=(topic, partition, offset), extra=extra)
