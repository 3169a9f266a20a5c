"""The live benches' later copies of their records: every reading is scored, none dead-lettered."""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamlstm import config as config_mod
from streamlstm.adapters.dev.bench_setup import input_records, later_copies
from streamlstm.record_parser import RecordParser
from streamlstm.records import RawRecord
from streamlstm.stream.decode import decode_poll


@pytest.mark.parametrize("per_record", [1, 5])
def test_later_copies_of_a_later_phase_are_neither_refused_nor_out_of_order(per_record) -> None:
    """The e2e bench's quarter-load phase goes on copying the records where the half-load
    one stopped. Stamped against the broker's append time (now, as ``LogAppendTime`` sets
    it), no reading may be refused (a ``future_timestamp`` once refused them all), each
    stream's readings must keep rising across both phases, and without a gap: the sampling
    interval, not a restart's warm-up."""
    records = input_records(3, 10, seed=1, per_record=per_record)
    first = later_copies(records, 2 * len(records) + 1)
    second = later_copies(records, len(records), start=len(first))
    now_ms = int(time.time() * 1000)
    cfg = config_mod.load(None)
    topic = cfg.groups[0].topics[0]
    raws = [RawRecord(topic, 0, i, k, v, now_ms) for i, (k, v) in enumerate(first + second)]
    got = decode_poll(RecordParser(cfg.input, cfg.groups), raws)
    assert got.rejected == []
    (cols,) = got.groups.values()
    assert len(cols.ts) == 3 * 10 * 3 + per_record  # two cycles and a record, then one more
    streams = np.array(cols.streams)
    for stream in set(cols.streams):
        ts = cols.ts[streams == stream]
        assert (np.diff(ts) > 0).all()
        assert np.diff(ts).max() <= 2 * 60.0  # seconds: at most a sampling step and a second
