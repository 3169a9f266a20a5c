"""A poll's decoded columns -> the per-group ``ReadingColumns`` ``Engine.score_groups``
scores, with what the loop needs to trace each reading back to its record.

No ``Reading`` object is made per reading: the decoder's arrays are handed over as they
are (values as float32, what the detector steps on; ``offsets`` are the readings'
positions, ``records.position``), and a reading's (topic, partition) is looked up through
its record only for the few readings that raise an alert event. Building a ``Reading`` per
reading and turning the list back into columns cost about 4 µs per reading (issue 19).

A stream is read from one partition only (``home``): the records of a stream seen on
another partition are rejected whole (``other_partition``), and so are those of a new stream
the worker has no room for (``too_many_streams``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamlstm.detect.scored import ReadingColumns
from streamlstm.records import AlertEvent, RawRecord, offset_of
from streamlstm.stream.decode import GroupColumns


@dataclass
class PolledGroup:
    cols: ReadingColumns  # ``offsets`` = each reading's position (records.position)
    record: np.ndarray  # (N,) index of each reading's record in the poll
    fresh: np.ndarray  # (N,) bool: its record was not counted before


def group_columns(
    group: str,
    cols: GroupColumns,
    records: list[RawRecord],
    fresh_record: np.ndarray,
    refusal: Callable[[str, str, tuple[str, int]], str | None],
    refused: list[tuple[int, str]],
) -> PolledGroup:
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

    def source(i: int) -> tuple[str, int, int]:
        topic, partition = _tp(records[int(record[i])])
        return (topic, partition, int(position[i]))

    readings = ReadingColumns(streams, ts, position, values.astype(np.float32), source)
    return PolledGroup(readings, record, fresh_record[record])


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
