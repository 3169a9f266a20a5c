"""Fencing (issue 18 item 10): each (re)assignment of a partition claims its next generation;
a worker whose generation is stale writes no snapshot and no commit, and its loop stops.

The storage and wrapper cases use a real snapshot directory; the live case runs two real
worker bodies (``PartitionWorkerImpl``, in-process) for the same partition on the real
broker: the first one, left running beside its replacement as on a partitioned node, must
stop and write nothing after the replacement's claim.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from streamlstm.adapters.ops.fencing import Fence, FencedSource, FencedStore, StaleGeneration
from streamlstm.adapters.ops.storage import SnapshotStore, encode_snapshot, name_order

TP = ("vitals", 3)
BLOBS = {"g": b"state"}


def test_each_claim_takes_the_next_generation_and_fences_the_previous_holder(
    tmp_path: Path,
) -> None:
    store = SnapshotStore(str(tmp_path))
    assert store.generation(TP) == 0
    first = Fence.claim(store, [TP])
    first.check()
    second = Fence.claim(SnapshotStore(str(tmp_path)), [TP])  # another process, same storage
    assert (first.held[TP], second.held[TP]) == (1, 2)
    second.check()
    with pytest.raises(StaleGeneration) as info:
        first.check()
    assert (info.value.held, info.value.current) == (1, 2)
    assert "generation 2" in str(info.value)


def test_claims_at_the_same_time_never_share_a_generation(tmp_path: Path) -> None:
    got: list[int] = []

    def claim_many() -> None:
        store = SnapshotStore(str(tmp_path))
        got.extend(store.claim(TP) for _ in range(25))

    threads = [threading.Thread(target=claim_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # unique, increasing; a number taken by a claim that lost a race is skipped, not shared
    assert len(set(got)) == len(got) == 100
    assert SnapshotStore(str(tmp_path)).generation(TP) == max(got)


def test_a_stale_holder_saves_nothing(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path))
    stale = FencedStore(store, Fence.claim(store, [TP]))
    stale.save(TP, BLOBS, 10)
    Fence.claim(store, [TP])  # the replacement
    before = sorted(os.listdir(store._dir(TP)))
    with pytest.raises(StaleGeneration):
        stale.save(TP, BLOBS, 20)
    assert sorted(os.listdir(store._dir(TP))) == before
    assert store.load(TP) == (BLOBS, 10)


def test_the_newest_generation_wins_over_a_higher_offset_of_an_older_one(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path), keep=3)
    folder = Path(store._dir(TP))
    folder.mkdir(parents=True)
    (folder / f"snap-{900:020d}.bin").write_bytes(encode_snapshot({"g": b"legacy"}, 900))
    store.save(TP, {"g": b"old"}, 500, generation=1)
    assert store.load(TP) == ({"g": b"old"}, 500)  # a name from before fencing is generation 0
    store.save(TP, {"g": b"new"}, 300, generation=2)
    assert store.load(TP) == ({"g": b"new"}, 300)
    store.save(TP, {"g": b"newer"}, 310, generation=2)  # keep=3: the legacy one goes first
    names = sorted(os.listdir(folder))
    assert [name_order(n) for n in names] == [(1, 500), (2, 300), (2, 310)]


class _RecordingSource:
    """Records what reaches the consumer (the wrapper is what is tested here)."""

    def __init__(self) -> None:
        self.commits: list[tuple[dict, dict]] = []

    def commit(self, offsets: dict, metadata: dict | None = None) -> None:
        self.commits.append((offsets, metadata))


def test_a_commit_carries_the_generation_and_a_stale_one_commits_nothing(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path))
    inner = _RecordingSource()
    source = FencedSource(inner, Fence.claim(store, [TP]))
    source.commit({TP: 7})
    assert inner.commits == [({TP: 7}, {TP: "generation=1"})]
    store.claim(TP)
    with pytest.raises(StaleGeneration):
        source.commit({TP: 9})
    assert len(inner.commits) == 1


# --- live: two worker bodies for one partition on the real broker -----------------------


def _config(bootstrap: str, tmp: Path, make_topic) -> dict:
    from tests.helpers import tiny_config

    plain = tiny_config().model_dump()
    plain["kafka"].update(
        bootstrap=bootstrap,
        input_topics=[make_topic(prefix="fence-in")],
        alerts_topic=make_topic(prefix="fence-alerts"),
        dlq_topic=make_topic(prefix="fence-dlq"),
        group_id=f"g-{uuid.uuid4().hex[:8]}",
    )
    # keep: nothing pruned, so every snapshot the stale worker might write stays visible.
    plain["checkpoint"].update(dir=str(tmp / "snapshots"), interval_s=0.3, keep=1000)
    return plain


def _records(n_per_stream: int) -> list[tuple[bytes, bytes]]:
    from tests.helpers import interleave, series

    readings = interleave(series("a", n_per_stream, seed=1), series("b", n_per_stream, seed=2))
    out = []
    for r in readings:
        values = dict(zip(["hr", "spo2", "rr"], r.values, strict=True))
        value = {"stream": r.stream, "ts": int(r.ts * 1000), "values": values}
        out.append((r.stream.encode(), orjson.dumps(value)))
    return out


def _send(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from streamlstm.adapters.kafka.client import KafkaSink

    feeder = KafkaSink(bootstrap)
    for key, value in records:
        feeder.send_alert(topic, key, value)  # a plain keyed send
    feeder.flush(30)
    feeder.close()


class _Running:
    """A worker body's ``run`` in a thread; its return value or error kept."""

    def __init__(self, worker) -> None:
        self.worker, self.result, self.error = worker, None, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.worker.run()
        except BaseException as exc:  # the test reports it
            self.error = exc


def _until(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.kafka
def test_a_stale_worker_beside_its_replacement_stops_and_writes_nothing(
    kafka_bootstrap: str, kafka_topic_factory, tmp_path: Path
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    from streamlstm.adapters.ray.workers import PartitionWorkerImpl, model_files
    from streamlstm.train.checkpoint import save_model
    from tests.helpers import tiny_model

    config = _config(kafka_bootstrap, tmp_path, kafka_topic_factory)
    topic = config["kafka"]["input_topics"][0]
    tp = (topic, 0)
    records = _records(80)
    half = len(records) // 2
    save_model(tmp_path / "model" / "g", tiny_model(), {})
    files = model_files(tmp_path / "model")
    store = SnapshotStore(config["checkpoint"]["dir"])

    _send(kafka_bootstrap, topic, records[:half])
    stale = PartitionWorkerImpl(config, files, kafka_bootstrap, 0)
    stale.start([tp])
    stale_run = _Running(stale)
    _until(lambda: (store.load(tp) or ({}, 0))[1] == half, "the first worker's snapshot")

    # Its replacement starts while it still runs (the supervisor lost sight of it).
    fresh = PartitionWorkerImpl(config, files, kafka_bootstrap, 1)
    starts = fresh.start([tp])["starts"]
    restored_from = starts[f"{topic}:0"]
    fresh_run = _Running(fresh)
    _send(kafka_bootstrap, topic, records[half:])  # work for both, and a reason to checkpoint
    stale_run.thread.join(60)
    stale_stopped = not stale_run.thread.is_alive()
    stale.stop()  # (only matters when the fence failed: the test ends either way)
    stale_run.thread.join(60)
    _until(lambda: fresh.stats()["positions"].get(f"{topic}:0") == len(records), "catch-up")
    fresh.stop()
    fresh_run.thread.join(60)
    counters = stale.metrics()["counts"]["counters"]
    for worker in (stale, fresh):
        worker.close()

    assert stale_stopped, "the stale worker's loop kept running beside its replacement"
    assert stale_run.error is None and fresh_run.error is None, (stale_run.error, fresh_run.error)
    assert "generation 2" in stale_run.result["fenced"], stale_run.result
    assert ["fenced", [], 1.0] in counters
    written = [name_order(n) for n in os.listdir(store._dir(tp)) if name_order(n)]
    stale_offsets = [offset for generation, offset in written if generation == 1]
    assert stale_offsets and max(stale_offsets) <= restored_from, (restored_from, written)
    assert max(offset for generation, offset in written if generation == 2) == len(records)
    assert store.load(tp)[1] == len(records)
    probe = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=config["kafka"]["group_id"])
    try:
        committed = probe.committed(TopicPartition(topic, 0), metadata=True)
    finally:
        probe.close()
    assert (committed.offset, committed.metadata) == (len(records), "generation=2")
    # The replacement's counts continue from the ledger in the snapshot it restored: every
    # record of the partition counted once, none of the stale worker's twice.
    assert restored_from > 0 and fresh.stats()["records"] == len(records)
