"""Bounded state: streams that stopped sending leave the worker's tables.

A stream id that never comes back (a discharged patient, a decommissioned pump, a producer
that put a timestamp in the id) would otherwise keep its row, and its place in every
snapshot, forever. Idle is judged in the data's own time: a stream is idle when its last
applied reading is ``idle_s`` older than the newest reading applied on its partition. Kafka
record timestamps are not used: a backfill, or ``simulate --bootstrap`` (readings from
2026-01-01 in records the producer stamps with the wall clock), would make every stream idle
at once. A replay of the same data therefore evicts exactly what the live run did, and a
restored partition judges from its snapshot's own readings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from streamlstm.detect.columns import Col
from streamlstm.detect.state import StateTable

TP = tuple[str, int]  # (topic, partition), as ``ports.TP``
StreamKey = tuple[str, str]  # (group, stream)


def last_reading_ts(table: StateTable, streams: Iterable[str]) -> dict[str, float]:
    """Each of ``streams`` held by ``table`` with its last applied reading's time (epoch
    seconds); a stream with nothing applied yet (-inf) is left out."""
    ids = [s for s in streams if table.row(s) is not None]
    if not ids:
        return {}
    rows = np.fromiter((table.row(s) for s in ids), np.int64, len(ids))
    last_ts = table.host[Col.LAST_TS][rows]
    return {s: float(t) for s, t in zip(ids, last_ts, strict=True) if np.isfinite(t)}


class StreamHomes:
    """Which partition each stream is read from, and which streams each partition holds.

    A stream is read from the partition it was first seen on (or restored from): offsets
    order a stream only within one partition, and its state is snapshotted with one
    partition, so keyless records of the stream on another partition are not its own
    (the loop sends them to the DLQ as ``other_partition``). At most ``max_streams`` are
    admitted (``state.max_streams``, over all partitions and groups of the worker): a new
    stream beyond it is refused (``too_many_streams``) while those held keep scoring."""

    def __init__(self, max_streams: int | None = None) -> None:
        self.streams_of: dict[TP, set[StreamKey]] = {}  # (group, stream) per partition
        self.home_of: dict[StreamKey, TP] = {}  # the one partition a stream is read from
        self.max_streams = max_streams  # None: no bound

    def restored(self, tp: TP, streams: set[StreamKey]) -> None:
        """``tp`` was (re)assigned with these streams from its snapshot."""
        self.streams_of[tp] = streams
        self.home_of.update(dict.fromkeys(streams, tp))

    def refusal(self, group: str, stream: str, tp: TP) -> str | None:
        """Why a reading of ``stream`` on ``tp`` is not scored here (a ``REASONS`` code), or
        None: ``tp`` is (or now becomes) its home."""
        key = (group, stream)
        home = self.home_of.get(key)
        if home is None:
            if self.max_streams is not None and len(self.home_of) >= self.max_streams:
                return "too_many_streams"
            self.home_of[key] = home = tp
            self.streams_of.setdefault(tp, set()).add(key)
        return None if home == tp else "other_partition"

    def evict_idle(self, tables: Mapping[str, StateTable], idle_s: float) -> int:
        """Drop the streams whose last reading is ``idle_s`` older than the newest reading
        of their partition, from ``tables`` and from here; returns how many."""
        evicted = 0
        for streams in self.streams_of.values():
            last = {
                group: last_reading_ts(tables[group], [s for g, s in streams if g == group])
                for group in {g for g, _ in streams}
            }
            newest = max((ts for by in last.values() for ts in by.values()), default=None)
            if newest is None:
                continue
            for group, by_stream in last.items():
                gone = [s for s, ts in by_stream.items() if ts < newest - idle_s]
                tables[group].evict(gone)
                for stream in gone:
                    streams.discard((group, stream))
                    self.home_of.pop((group, stream), None)
                evicted += len(gone)
        return evicted
