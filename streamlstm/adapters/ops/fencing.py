"""Fencing: a worker writes a partition's snapshots and commits its offsets only while it
holds the partition's newest generation.

Every (re)assignment of a partition claims its next generation (``SnapshotStore.claim``, a
marker file beside the snapshots) before the worker restores anything. The worker carries
the generations it claimed; before each snapshot write and each offset commit it reads the
partition's generation back. A newer one means another worker has taken the partition over:
the supervisor restarted it elsewhere while this one was cut off (a partitioned node), or a
second supervisor runs on the same snapshots. ``StaleGeneration`` is raised, nothing is
written, and the actor stops its loop (``workers.py``). Snapshot names and commit metadata
carry the generation, so what each generation wrote can be told apart.
"""

from __future__ import annotations

from streamlstm.adapters.ops.storage import SnapshotStore
from streamlstm.records import RawRecord

TP = tuple[str, int]


class StaleGeneration(Exception):
    """This worker's generation of a partition is no longer the newest: stop, write nothing."""

    def __init__(self, tp: TP, held: int, current: int):
        self.tp, self.held, self.current = tp, held, current
        super().__init__(
            f"{tp[0]}:{tp[1]} was claimed by generation {current}; this worker holds "
            f"generation {held}"
        )


class Fence:
    """The generations one worker holds, checked against the store."""

    def __init__(self, store: SnapshotStore, held: dict[TP, int]):
        self.store, self.held = store, dict(held)

    @classmethod
    def claim(cls, store: SnapshotStore, partitions: list[TP]) -> Fence:
        """Claim the next generation of each partition (fences out their previous holders)."""
        return cls(store, {tp: store.claim(tp) for tp in partitions})

    def check(self, partitions: list[TP] | None = None) -> None:
        """Raises ``StaleGeneration`` for the first partition someone else claimed since."""
        for tp in self.held if partitions is None else partitions:
            current = self.store.generation(tp)
            if current != self.held[tp]:
                raise StaleGeneration(tp, self.held[tp], current)


class FencedStore:
    """The loop's snapshot store: a save checks the fence first and is named by the
    generation; loads pass through (the newest generation's snapshot wins)."""

    def __init__(self, store: SnapshotStore, fence: Fence):
        self.store, self.fence = store, fence

    def save(self, tp: TP, blobs: dict[str, bytes], next_offset: int) -> None:
        self.fence.check([tp])
        self.store.save(tp, blobs, next_offset, generation=self.fence.held[tp])

    def load(self, tp: TP) -> tuple[dict[str, bytes], int] | None:
        return self.store.load(tp)


class FencedSource:
    """The loop's source: a commit checks the fence first and carries each partition's
    generation in the offset's metadata; polls and seeks pass through."""

    def __init__(self, source, fence: Fence):
        self.source, self.fence = source, fence

    def poll(self, timeout_s: float, max_records: int) -> list[RawRecord]:
        return self.source.poll(timeout_s, max_records)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self.source.seek(topic, partition, offset)

    def commit(self, offsets: dict[TP, int]) -> None:
        self.fence.check(list(offsets))
        metadata = {tp: f"generation={self.fence.held[tp]}" for tp in offsets}
        self.source.commit(offsets, metadata)
