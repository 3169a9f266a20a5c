"""The worker's garbage-collector handling (``adapters/ops/heap.py``), on this process's
own collector: freezing takes the long-lived objects out of every collection's scan, and
the pause recorder counts and times the collections it sees, and only while installed."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from streamlstm.adapters.ops.heap import GcPauses, freeze_long_lived


def test_freezing_takes_the_live_objects_out_of_what_a_collection_scans() -> None:
    held = [[i] for i in range(10_000)]  # long-lived state, tracked by the collector
    scanned_before = len(gc.get_objects())
    try:
        frozen = freeze_long_lived()
        # not `frozen == get_freeze_count()`: a frozen object freed by another thread
        # (a client's background thread from an earlier test) lowers the count in between
        assert frozen >= len(held) and gc.get_freeze_count() >= len(held)
        # a full collection walks generations 0-2 only: what is frozen is not among them
        assert len(gc.get_objects()) < scanned_before - len(held)
        assert not any(obj is held[0] for obj in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(obj is held[0] for obj in gc.get_objects())


def test_gc_pauses_counts_and_times_collections_only_while_installed() -> None:
    clock = iter(float(t) for t in range(100))
    pauses = GcPauses(timer=lambda: next(clock))
    was_enabled = gc.isenabled()
    gc.disable()  # no automatic collection in between: only the one asked for below
    pauses.install()
    pauses.install()  # a second install (a worker's restart) adds no second callback
    try:
        gc.collect()  # one full collection: start at t, stop at t + 1
    finally:
        pauses.remove()
        if was_enabled:
            gc.enable()
    assert pauses.totals() == {"collections": 1, "full": 1, "pause_s": 1.0, "max_pause_s": 1.0}
    gc.collect()
    assert pauses.totals()["collections"] == 1  # removed: not counted


@pytest.mark.kafka
def test_a_started_worker_freezes_its_heap_and_reports_its_collections(
    kafka_bootstrap: str, kafka_topic_factory, tmp_path: Path
) -> None:
    """The real worker body, in-process, on the real broker: once started its long-lived
    objects are frozen, its stats carry the collector's counts, and close stops counting."""
    from streamlstm.adapters.ray.workers import PartitionWorkerImpl, model_files
    from streamlstm.train.checkpoint import save_model
    from tests.helpers import tiny_config, tiny_model

    config = tiny_config().model_dump()
    topic = kafka_topic_factory(prefix="heap-in")
    config["kafka"].update(
        bootstrap=kafka_bootstrap,
        input_topics=[topic],
        alerts_topic=kafka_topic_factory(prefix="heap-alerts"),
        dlq_topic=kafka_topic_factory(prefix="heap-dlq"),
    )
    config["checkpoint"]["dir"] = str(tmp_path / "snapshots")
    save_model(tmp_path / "model" / "g", tiny_model(), {})
    worker = PartitionWorkerImpl(config, model_files(tmp_path / "model"), kafka_bootstrap, 0)
    gc.unfreeze()  # what an earlier test froze in this process does not count
    try:
        worker.start([(topic, 0)])
        assert gc.get_freeze_count() > 0
        gc.collect()
        counted = worker.stats()["gc"]
        assert counted["collections"] >= 1 and counted["full"] >= 1
        worker.close()
        worker.sink.producer.close()
        gc.collect()
        assert worker.stats()["gc"] == counted  # closed: no longer counting
    finally:
        gc.unfreeze()
