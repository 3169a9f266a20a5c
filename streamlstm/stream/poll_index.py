"""One pass over a poll's records for everything that needs their partitions and offsets.

The loop needs, per poll: each record's partition (to count its outcomes per partition),
whether it is past its partition's next offset (fresh: counted once), the next offsets after
it, and the first and last offset per partition (the flight recorder and the poison rule
name a poll by them). All of it comes from two arrays built once, instead of a Python pass
over the records for each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streamlstm.records import RawRecord
from streamlstm.stream.poison import TP, Poll


@dataclass(frozen=True)
class PollIndex:
    tps: list[TP]  # the poll's partitions, in order of first appearance
    tp_of: np.ndarray  # (N,) int64: each record's index in ``tps``
    offsets: np.ndarray  # (N,) int64: each record's offset

    @classmethod
    def of(cls, records: list[RawRecord]) -> PollIndex:
        index: dict[TP, int] = {}
        tp_of = np.fromiter(
            (index.setdefault((r.topic, r.partition), len(index)) for r in records),
            np.int64,
            len(records),
        )
        offsets = np.fromiter((r.offset for r in records), np.int64, len(records))
        return cls(list(index), tp_of, offsets)

    def poll(self) -> Poll:
        """First and last offset per partition (offsets ascend within a partition)."""
        spans = {}
        for k, tp in enumerate(self.tps):
            mine = self.offsets[self.tp_of == k]
            spans[tp] = (int(mine[0]), int(mine[-1]))
        return Poll(len(self.offsets), spans)

    def fresh(self, next_offset: Mapping[TP, int]) -> np.ndarray:
        """(N,) bool: at or past its partition's ``next_offset`` (not counted yet)."""
        start = np.fromiter((next_offset.get(tp, 0) for tp in self.tps), np.int64, len(self.tps))
        return self.offsets >= start[self.tp_of]

    def advanced(self, next_offset: Mapping[TP, int]) -> dict[TP, int]:
        """``next_offset`` moved past every record of the poll."""
        out = dict(next_offset)
        ends = np.full(len(self.tps), -1, dtype=np.int64)
        np.maximum.at(ends, self.tp_of, self.offsets)
        for tp, end in zip(self.tps, ends.tolist(), strict=True):
            out[tp] = max(out.get(tp, 0), end + 1)
        return out
