"""The fault-handling pieces without a broker: a failed snapshot write commits nothing and
is retried; a restart mid-swap serves the model its snapshots hold; crash points fire once."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from streamlstm.adapters.ops.storage import SnapshotStore
from streamlstm.adapters.ray.restart_models import pick_models
from streamlstm.detect.state import read_meta
from streamlstm.stream.crashpoints import CrashPoints, FullDisk
from streamlstm.stream.metric_counts import MetricCounts
from tests.test_worker_loop import _records, _run, _worker


def test_a_full_disk_commits_nothing_counts_it_and_recovers(tmp_path: Path) -> None:
    log: list = []
    w = _worker(tmp_path, _records(), log)
    w.metrics = MetricCounts()
    flag = tmp_path / "full"
    w.store = FullDisk(w.store, str(flag))
    w.assign([("icu", 0)])
    _run(w, 2, 16)
    w.checkpoint()
    durable = log[-1][1][("icu", 0)]  # committed with a durable snapshot
    flag.touch()
    _run(w, 3, 16)
    w.checkpoint()  # fails: logged and counted, not raised
    w.checkpoint()
    assert [e for e in log if e[0] == "commit"][-1][1][("icu", 0)] == durable
    counters = {name: v for name, _, v in w.metrics.drain()["counters"]}
    assert counters["snapshot_failures"] == 2
    assert not list((tmp_path / "icu" / "0").glob(".*.tmp"))
    flag.unlink()  # space returns
    w.checkpoint()
    assert log[-1] == ("commit", {("icu", 0): w.next_offset[("icu", 0)]})
    assert w.next_offset[("icu", 0)] > durable


def test_full_disk_raises_enospc(tmp_path: Path) -> None:
    flag = tmp_path / "full"
    flag.touch()
    store = FullDisk(SnapshotStore(str(tmp_path)), str(flag))
    with pytest.raises(OSError) as err:
        store.save(("t", 0), {"g": b"x"}, 1)
    assert err.value.errno == errno.ENOSPC


def _files(version: str) -> dict[str, bytes]:
    return {"model.json": json.dumps({"version": version}).encode()}


def _blob(version: str) -> bytes:
    from streamlstm.stream.engine import Engine
    from tests.helpers import tiny_config, tiny_model

    engine = Engine.build(tiny_config(), {"g": tiny_model(version=version)})
    blob = engine.tables["g"].snapshot([], {"model_version": version})
    assert read_meta(blob)["model_version"] == version
    return blob


def test_restart_mid_swap_serves_the_snapshot_version_and_restages(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path))
    old, new = _files("g-v1"), _files("g-v2")
    store.save(("t", 0), {"g": _blob("g-v1")}, 10)
    serve, stage = pick_models({"g": new}, {"g": old}, store, [("t", 0)])
    assert serve == {"g": old} and stage == {"g": new}
    store.save(("t", 0), {"g": _blob("g-v2")}, 20)  # it had switched before the crash
    assert pick_models({"g": new}, {"g": old}, store, [("t", 0)]) == ({"g": new}, {})
    assert pick_models({"g": new}, {}, store, [("t", 0)]) == ({"g": new}, {})


def test_crash_point_fires_once_across_processes(tmp_path: Path) -> None:
    once = tmp_path / "fired"
    once.touch()  # an earlier process fired it: a restarted one must not
    CrashPoints("after_poll:1", str(once)).hit("after_poll")  # returns: no exit
    assert os.path.exists(once)
