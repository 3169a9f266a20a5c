"""Per-partition outcome counts that survive the death of the process that made them.

A partition's ``Ledger`` counts the outcomes (records; readings scored, warming, dead-lettered,
by reason; alert events by event and severity) of *all* its records below its next offset.
The worker saves it in the partition's snapshot (the blob ``LEDGER_BLOB``) beside the state
and restores it with the state, so the records replayed after any restart, in the same
process or another one, are counted onto the restored ledger once: exactly once per record,
like the state they come from.

The counts that leave the worker are cumulative: per partition, the ledger of its last
durable snapshot, and the one it was restored from (the ``baseline``). ``advance`` turns
them into deltas for a monotonic counter with a per-partition high-water mark, so a
restarted worker, or another worker taking a partition over, continues from the snapshot
without counting twice; and a new exporter starts from the baseline instead of jumping to
all-time totals.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

# A snapshot blob name no model group can have (group names match ^[A-Za-z0-9_.-]{1,64}$).
LEDGER_BLOB = "#ledger"

TP = tuple[str, int]  # (topic, partition)
Key = tuple[str, tuple[str, ...]]  # (counter name, label values), as MetricCounts keys them
Rows = list[list]  # [[name, [labels...], count], ...]: JSON and Ray friendly


@dataclasses.dataclass(frozen=True)
class Outcomes:
    """The reconciliation numbers: records = scored + warming + dlq when each record holds
    one reading (a batched record holds several)."""

    records: int
    scored: int  # readings
    warming: int
    dlq: int
    alerts: int  # alert events sent (every kind)
    by_reason: dict[str, int]  # dead-lettered readings
    skipped: int  # records passed over by an operator (``streamlstm snapshots skip``)


class Ledger:
    """Counts by (name, labels). Published ledgers are never changed in place (``merged``
    makes a new one), so another thread may read them while the loop counts on."""

    def __init__(self, counts: dict[Key, int] | None = None):
        self.counts: dict[Key, int] = dict(counts or {})

    def add(self, name: str, labels: tuple[str, ...] = (), n: int = 1) -> None:
        if n:
            key = (name, labels)
            self.counts[key] = self.counts.get(key, 0) + int(n)

    def total(self, name: str) -> int:
        """Summed over every label set of ``name``."""
        return sum(n for (k, _), n in self.counts.items() if k == name)

    def by_label(self, name: str) -> dict[str, int]:
        """Counts of a one-label counter by its label value."""
        return {labels[0]: n for (k, labels), n in self.counts.items() if k == name}

    def merged(self, other: Ledger) -> Ledger:
        out = Ledger(self.counts)
        for key, n in other.counts.items():
            out.counts[key] = out.counts.get(key, 0) + n
        return out

    def rows(self) -> Rows:
        return [[name, list(labels), n] for (name, labels), n in sorted(self.counts.items())]

    @classmethod
    def from_rows(cls, rows: Rows) -> Ledger:
        return cls({(name, tuple(labels)): int(n) for name, labels, n in rows})

    def to_blob(self) -> bytes:
        return json.dumps({"version": 1, "counts": self.rows()}).encode()

    @classmethod
    def from_blob(cls, blob: bytes) -> Ledger:
        return cls.from_rows(json.loads(blob)["counts"])

    def outcomes(self) -> Outcomes:
        return Outcomes(
            records=self.get("records"),
            scored=self.get("readings", ("scored",)),
            warming=self.get("readings", ("warming",)),
            dlq=self.get("readings", ("dlq",)),
            alerts=self.total("alert_events"),
            by_reason=self.by_label("dlq"),
            skipped=self.get("skipped"),
        )

    def summary(self) -> dict[str, Any]:
        """``outcomes`` as a plain dict (worker stats)."""
        return dataclasses.asdict(self.outcomes())

    def get(self, name: str, labels: tuple[str, ...] = ()) -> int:
        return self.counts.get((name, labels), 0)


def total(ledgers: Iterable[Ledger]) -> Ledger:
    out = Ledger()
    for ledger in ledgers:
        out = out.merged(ledger)
    return out


def advance(seen: Ledger, durable: Ledger) -> dict[Key, int]:
    """What ``durable`` (a partition's cumulative counts) adds beyond the high-water mark
    ``seen``, which moves up to it. A count below the mark (a restart replaying from an older
    snapshot) adds nothing until it passes the mark again."""
    deltas: dict[Key, int] = {}
    for key, n in durable.counts.items():
        ahead = n - seen.counts.get(key, 0)
        if ahead > 0:
            deltas[key] = ahead
            seen.counts[key] = n
    return deltas


class Ledgers:
    """A worker's ledgers per partition: ``live`` (every record below next_offset, with
    what the poll being handled counted, ``pending``, published with the new positions),
    ``durable`` (as of each partition's last snapshot) and ``baseline`` (as restored).
    The three maps are replaced, never changed in place: stats and metrics read them from
    other threads."""

    def __init__(self) -> None:
        self.live: dict[TP, Ledger] = {}
        self.durable: dict[TP, Ledger] = {}
        self.baseline: dict[TP, Ledger] = {}
        self.pending: dict[TP, Ledger] = {}

    def restored(self, ledgers: dict[TP, Ledger]) -> None:
        self.live = {**self.live, **ledgers}
        self.durable = {**self.durable, **ledgers}
        self.baseline = {**self.baseline, **ledgers}

    def count(self, tp: TP, name: str, labels: tuple[str, ...] = (), n: int = 1) -> None:
        self.pending.setdefault(tp, Ledger()).add(name, labels, n)

    def drop_pending(self) -> None:
        self.pending = {}

    def publish(self) -> None:
        pending, self.pending = self.pending, {}
        live = dict(self.live)
        for tp, counted in pending.items():
            live[tp] = live.get(tp, Ledger()).merged(counted)
        self.live = live

    def blob(self, tp: TP) -> bytes:
        return self.live.get(tp, Ledger()).to_blob()

    def saved(self, tp: TP) -> None:
        """``tp``'s snapshot with its live ledger is durable."""
        self.durable = {**self.durable, tp: self.live.get(tp, Ledger())}

    def totals(self, durable: bool = False) -> Ledger:
        return total((self.durable if durable else self.live).values())

    def restored_rows(self) -> list[list]:
        """Per partition: [topic, partition, baseline rows] (``Ledgers.report`` without the
        durable ledger)."""
        return [[tp[0], tp[1], ledger.rows()] for tp, ledger in sorted(self.baseline.items())]

    def report(self) -> list[list]:
        """Per partition: [topic, partition, baseline rows, durable rows] (``advance``
        turns them into counter deltas)."""
        baseline = self.baseline
        return [
            [tp[0], tp[1], baseline.get(tp, Ledger()).rows(), ledger.rows()]
            for tp, ledger in sorted(self.durable.items())
        ]
