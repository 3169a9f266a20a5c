"""Bounded state: streams that stopped sending leave the worker's tables.

A stream id that never comes back (a discharged patient, a decommissioned pump, a producer
that put a timestamp in the id) would otherwise keep its row, and its place in every
snapshot, forever. Idle is judged in data time, against the newest Kafka record timestamp of
the stream's partition, so a replay of old data evicts exactly what the live run did.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from streamlstm.detect.columns import Col
from streamlstm.detect.state import StateTable


def idle_streams(table: StateTable, streams: Iterable[str], before_ts: float) -> list[str]:
    """The ``streams`` of ``table`` whose last applied reading is older than ``before_ts``."""
    ids = [s for s in streams if table.row(s) is not None]
    if not ids:
        return []
    rows = np.fromiter((table.row(s) for s in ids), np.int64, len(ids))
    last_ts = table.host[Col.LAST_TS][rows]  # -inf: nothing applied yet
    return [s for s, idle in zip(ids, last_ts < before_ts, strict=True) if idle]
