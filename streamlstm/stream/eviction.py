"""Bounded state: streams that stopped sending leave the worker's tables.

A stream id that never comes back (a discharged patient, a decommissioned pump, a producer
that put a timestamp in the id) would otherwise keep its row, and its place in every
snapshot, forever. Idle is judged in data time, against the newest Kafka record timestamp of
the stream's partition, so a replay of old data evicts exactly what the live run did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from streamlstm.detect.columns import Col
from streamlstm.detect.state import StateTable

TP = tuple[str, int]  # (topic, partition), as ``ports.TP``
StreamKey = tuple[str, str]  # (group, stream)


def idle_streams(table: StateTable, streams: Iterable[str], before_ts: float) -> list[str]:
    """The ``streams`` of ``table`` whose last applied reading is older than ``before_ts``."""
    ids = [s for s in streams if table.row(s) is not None]
    if not ids:
        return []
    rows = np.fromiter((table.row(s) for s in ids), np.int64, len(ids))
    last_ts = table.host[Col.LAST_TS][rows]  # -inf: nothing applied yet
    return [s for s, idle in zip(ids, last_ts < before_ts, strict=True) if idle]


class StreamHomes:
    """Which partition each stream is read from, and the newest record time per partition.

    A stream is read from the partition it was first seen on (or restored from): offsets
    order a stream only within one partition, and its state is snapshotted with one
    partition, so keyless records of the stream on another partition are not its own
    (the loop sends them to the DLQ as ``other_partition``)."""

    def __init__(self) -> None:
        self.streams_of: dict[TP, set[StreamKey]] = {}  # (group, stream) per partition
        self.home_of: dict[StreamKey, TP] = {}  # the one partition a stream is read from
        self.newest_ms: dict[TP, int] = {}  # newest Kafka record timestamp per partition

    def restored(self, tp: TP, streams: set[StreamKey]) -> None:
        """``tp`` was (re)assigned with these streams from its snapshot."""
        self.streams_of[tp] = streams
        self.home_of.update(dict.fromkeys(streams, tp))

    def saw(self, tp: TP, timestamp_ms: int) -> None:
        if timestamp_ms > self.newest_ms.get(tp, 0):
            self.newest_ms[tp] = timestamp_ms

    def at_home(self, group: str, stream: str, tp: TP) -> bool:
        """A reading of ``stream`` on ``tp`` belongs to it: ``tp`` is (or now becomes) its home."""
        key = (group, stream)
        if self.home_of.setdefault(key, tp) != tp:
            return False
        self.streams_of.setdefault(tp, set()).add(key)
        return True

    def evict_idle(self, tables: Mapping[str, StateTable], idle_s: float) -> int:
        """Drop the streams whose last reading is ``idle_s`` older than their partition's
        newest record, from ``tables`` and from here; returns how many."""
        evicted = 0
        for tp, streams in self.streams_of.items():
            if tp not in self.newest_ms:
                continue
            before = self.newest_ms[tp] / 1000.0 - idle_s
            for group in {g for g, _ in streams}:
                gone = idle_streams(tables[group], [s for g, s in streams if g == group], before)
                tables[group].evict(gone)
                for stream in gone:
                    streams.discard((group, stream))
                    self.home_of.pop((group, stream), None)
                evicted += len(gone)
        return evicted
