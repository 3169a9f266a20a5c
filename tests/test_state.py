"""StateTable: add/evict/gather/scatter and snapshot/restore without pickle."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from streamlstm.detect.state import Column, StateTable
from tests.helpers import interleave, series, tiny_detector


def _table() -> StateTable:
    return StateTable(
        {"h": Column((3,), "float32")}, {"last_ts": Column((), "float64", -1.0)}, capacity=2
    )


def test_rows_are_stable_grow_and_are_reused_after_eviction() -> None:
    t = _table()
    rows, new = t.rows_for(["a", "b", "c"])
    assert new.tolist() == [True, True, True] and len(set(rows.tolist())) == 3
    assert t.capacity >= 3
    again, new2 = t.rows_for(["b"])
    assert again[0] == rows[1] and not new2[0]
    t.host["last_ts"][rows] = [10.0, 20.0, 30.0]
    assert t.evict(["a", "b", "never-seen"]) == 2 and len(t) == 1
    fresh, _ = t.rows_for(["d"])
    assert fresh[0] in rows[:2]  # a freed row is reused
    assert t.host["last_ts"][fresh[0]] == -1.0  # and reset to the fresh fill


def test_a_table_shrinks_to_its_live_streams_and_keeps_their_state() -> None:
    t = _table()
    ids = [f"s{k}" for k in range(5000)]
    rows, _ = t.rows_for(ids)
    t.scatter(torch.as_tensor(rows), {"h": torch.arange(15000.0).view(5000, 3)})
    t.host["last_ts"][rows] = np.arange(5000.0)
    peak = t.capacity
    kept = ids[::50]  # 100 streams stay, 4 900 leave
    t.evict([sid for sid in ids if sid not in set(kept)])
    assert len(t) == 100 and t.capacity == 1024 < peak
    again, new = t.rows_for(kept)
    assert not new.any()
    k = np.arange(0, 5000, 50)
    assert t.gather(torch.as_tensor(again))["h"][:, 0].tolist() == (3.0 * k).tolist()
    assert t.host["last_ts"][again].tolist() == k.astype(float).tolist()
    fresh, new = t.rows_for(["newcomer"])
    assert new[0] and fresh[0] not in again and t.host["last_ts"][fresh[0]] == -1.0


def test_gather_scatter_round_trip() -> None:
    t = _table()
    rows, _ = t.rows_for(["a", "b"])
    idx = torch.as_tensor(rows)
    t.scatter(idx, {"h": torch.tensor([[1.0, 2, 3], [4, 5, 6]])})
    assert t.gather(idx.flip(0))["h"].tolist() == [[4, 5, 6], [1, 2, 3]]


def test_snapshot_restore_gives_identical_subsequent_scores() -> None:
    a, b = series("a", 60, seed=1), series("b", 60, seed=2, start_offset=100)
    first = interleave(a[:40], b[:40])
    rest = interleave(a[40:], b[40:])
    det = tiny_detector()
    table = det.new_table()
    det.score(table, first)
    blob = table.snapshot(meta={"next_offset": 40})
    expected = det.score(table, rest)

    det2 = tiny_detector()
    restored = det2.new_table()
    assert restored.restore(blob) == (["a", "b"], {"next_offset": 40})
    got = det2.score(restored, rest)
    assert got.score == pytest.approx(expected.score, abs=1e-6)
    assert [e.alert_id for e in got.events] == [e.alert_id for e in expected.events]


def test_snapshot_of_a_subset_and_no_pickle() -> None:
    det = tiny_detector()
    table = det.new_table()
    det.score(table, interleave(series("a", 5), series("b", 5, start_offset=10)))
    blob = table.snapshot(["b"])
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:  # loads without pickle
        assert "dev.h" in npz.files and npz["dev.h"].shape[0] == 1
    other = det.new_table()
    other.restore(blob)
    assert list(other.index) == ["b"]


def test_restore_rejects_a_wrong_shape() -> None:
    small = _table()
    small.rows_for(["a"])
    blob = small.snapshot()
    big = StateTable({"h": Column((4,), "float32")}, {"last_ts": Column((), "float64")})
    with pytest.raises(ValueError, match="column h"):
        big.restore(blob)


def test_a_snapshot_from_before_a_host_column_existed_restores_with_its_default() -> None:
    older = StateTable({}, {"a": Column((), "int32", 0)})
    rows, _ = older.rows_for(["s1", "s2"])
    older.host["a"][rows] = [4, 5]
    newer = StateTable({}, {"a": Column((), "int32", 0), "b": Column((), "int64", -1)})
    streams, _ = newer.restore(older.snapshot(["s1", "s2"]))
    assert streams == ["s1", "s2"]
    got, _ = newer.rows_for(["s1", "s2"])
    assert newer.host["a"][got].tolist() == [4, 5]
    assert newer.host["b"][got].tolist() == [-1, -1]


def test_a_snapshot_from_before_a_device_column_existed_restores_with_its_default() -> None:
    """An upgrade that adds per-stream state (the normaliser's var_ref, trend) must not stop a
    worker from restoring the snapshots the previous version wrote."""
    older = StateTable({"h": Column((2,), "float32")}, {})
    rows, _ = older.rows_for(["s1"])
    older.dev["h"][torch.as_tensor(rows)] = torch.tensor([[1.0, 2.0]])
    newer = StateTable({"h": Column((2,), "float32"), "var_ref": Column((2,), "float32")}, {})
    streams, _ = newer.restore(older.snapshot(["s1"]))
    assert streams == ["s1"]
    got, _ = newer.rows_for(["s1"])
    assert newer.dev["h"][torch.as_tensor(got)].tolist() == [[1.0, 2.0]]
    assert newer.dev["var_ref"][torch.as_tensor(got)].tolist() == [[0.0, 0.0]]
