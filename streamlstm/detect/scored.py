"""What ``Detector.score`` takes and gives as columns: a poll's readings (``ReadingColumns``)
and the results (``Scored``), plus the small helpers that group and describe them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from streamlstm.records import AlertEvent, Reading, Rejection, TopFeature


@dataclass
class Scored:
    """Results in processing order; ``index`` points into the readings passed to ``score``."""

    index: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    raw_error: list[float] = field(default_factory=list)
    warming: list[bool] = field(default_factory=list)
    in_alert: list[bool] = field(default_factory=list)
    held: list[bool] = field(default_factory=list)  # kept from the stream's normal
    events: list[AlertEvent] = field(default_factory=list)
    rejected: list[tuple[int, Rejection]] = field(default_factory=list)
    replayed: int = 0  # readings at or below a stream's last applied offset: skipped


def _no_source(offsets: np.ndarray) -> Callable[[int], tuple[str, int, int]]:
    return lambda i: ("", -1, int(offsets[i]))


@dataclass
class ReadingColumns:
    """N readings of one group as columns: what ``Detector.score_columns`` scores.

    ``values`` (N, F) float32 with NaN for a missing feature; ``ts`` (N,) float64 epoch
    seconds; ``offsets`` (N,) int64. ``source(i)`` gives reading i's (topic, partition,
    offset), asked only for readings that raise an alert event.
    """

    streams: Sequence[str]
    ts: np.ndarray
    offsets: np.ndarray
    values: np.ndarray
    source: Callable[[int], tuple[str, int, int]] | None = None

    def __post_init__(self) -> None:
        if self.source is None:
            self.source = _no_source(self.offsets)

    @classmethod
    def of(cls, readings: Sequence[Reading]) -> ReadingColumns:
        n = len(readings)
        width = len(readings[0].values) if n else 0
        # One flat pass (None -> NaN as with np.array), about twice as fast as np.array
        # on a list of tuples.
        flat = chain.from_iterable([r.values for r in readings])
        values = np.fromiter(flat, np.float32, n * width).reshape(n, width)

        def source(i: int) -> tuple[str, int, int]:
            r = readings[i]
            return (r.topic, r.partition, r.offset)

        return cls(
            [r.stream for r in readings],
            np.fromiter([r.ts for r in readings], np.float64, n),
            np.fromiter([r.offset for r in readings], np.int64, n),
            values,
            source,
        )


def top_shares(z: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """(feature, share) of the per-feature excess error (calibrated z (F,)), the largest
    ``k`` first."""
    total = float(z.sum())
    if total <= 0:
        return []
    return [(int(f), float(z[f]) / total) for f in np.argsort(-z)[:k] if z[f] > 0]


def explained(
    names: Sequence[str],
    picked: list[tuple[int, float]],
    value: np.ndarray,
    expected: np.ndarray,
    scale: np.ndarray,
) -> tuple[TopFeature, ...]:
    """The ``picked`` (feature, share) with how far each is off, for an alert event: the
    reading, the stream's forecast for it (NaN: none yet) and their distance in the stream's
    own std. value, expected, scale (F,): one reading's, host arrays."""
    out = []
    for f, share in picked:
        v, e, sd = float(value[f]), float(expected[f]), float(scale[f])
        known = np.isfinite(v) and np.isfinite(e) and sd > 0
        out.append(
            TopFeature(
                names[f],
                share,
                v if np.isfinite(v) else None,
                e if np.isfinite(e) else None,
                (v - e) / sd if known else None,
            )
        )
    return tuple(out)
