"""PollIndex: one pass over a poll's records gives what the per-record rules gave."""

from __future__ import annotations

import random

from streamlstm.records import RawRecord
from streamlstm.stream.poison import Poll
from streamlstm.stream.poll_index import PollIndex


def _interleaved(seed: int) -> list[RawRecord]:
    """Three partitions, records interleaved, offsets ascending within each."""
    rng = random.Random(seed)
    next_of = {0: 3, 1: 10, 2: 0}
    out = []
    for _ in range(40):
        p = rng.choice([0, 1, 2])
        out.append(RawRecord("icu" if p < 2 else "plant", p, next_of[p], b"k", b"{}"))
        next_of[p] += rng.choice([1, 1, 2])
    return out


def test_the_index_agrees_with_the_per_record_rules() -> None:
    for seed in range(5):
        records = _interleaved(seed)
        before = {("icu", 0): 9, ("icu", 1): 0, ("other", 0): 4}  # one partition not polled
        index = PollIndex.of(records)
        advanced = dict(before)  # the rule per record the index replaced
        for rec in records:
            if rec.offset >= advanced.get((rec.topic, rec.partition), 0):
                advanced[(rec.topic, rec.partition)] = rec.offset + 1
        fresh = [rec.offset >= before.get((rec.topic, rec.partition), 0) for rec in records]
        assert index.advanced(before) == advanced
        assert index.fresh(before).tolist() == fresh and any(fresh) and not all(fresh)
        assert index.poll() == Poll.of(records)
        assert [index.tps[k] for k in index.tp_of] == [(r.topic, r.partition) for r in records]
