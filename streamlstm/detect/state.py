"""``StateTable``: columnar per-stream state for one model group.

One row per stream. Columns that the batched step computes on live on the worker's device
(torch); columns the alert logic and bookkeeping touch from Python live on the host (numpy).
Rows are reused after eviction; the table grows in steps so memory tracks the stream count.

Snapshots are an uncompressed ``.npz`` of plain arrays plus a JSON header, loaded with
``allow_pickle=False``: a snapshot can never execute code.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SNAPSHOT_FORMAT = 1


@dataclass(frozen=True)
class Column:
    shape: tuple[int, ...]  # per-row shape
    dtype: str  # numpy dtype name, e.g. "float32"
    fill: float = 0.0  # value of a fresh row


SHRINK_BELOW = 2  # a table whose live rows fall to half its capacity is compacted


class StateTable:
    """Rows of per-stream state; ``device_cols`` on ``device``, ``host_cols`` in numpy."""

    def __init__(
        self,
        device_cols: dict[str, Column],
        host_cols: dict[str, Column],
        device: torch.device | str = "cpu",
        capacity: int = 1024,
    ):
        self.device_spec = dict(device_cols)
        self.host_spec = dict(host_cols)
        self.device = torch.device(device)
        self.index: dict[str, int] = {}  # stream id -> row
        self.ids: list[str | None] = []  # row -> stream id (None = free)
        self.free: list[int] = []
        self.dev: dict[str, Tensor] = {}
        self.host: dict[str, np.ndarray] = {}
        self._capacity = 0
        self._grow(max(capacity, 1))

    # --- rows -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    @property
    def capacity(self) -> int:
        return self._capacity

    def rows_for(self, stream_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Row of each stream, adding fresh rows for new ones. Returns (rows, is_new)."""
        found = list(map(self.index.get, stream_ids))
        is_new = np.zeros(len(stream_ids), dtype=bool)
        if None in found:  # new streams: add rows (rare once streams are known)
            for i, sid in enumerate(stream_ids):
                if found[i] is None:
                    found[i] = self.index.get(sid)  # an id repeated in this call
                    if found[i] is None:
                        found[i] = self._add(sid)
                        is_new[i] = True
            rows = np.array(found, dtype=np.int64)
            # One reset for all new rows: per row it was a device write per column, minutes
            # for a million new streams on a GPU.
            self._reset_rows(rows[is_new])
            return rows, is_new
        return np.array(found, dtype=np.int64), is_new

    def row(self, stream_id: str) -> int | None:
        return self.index.get(stream_id)

    def _add(self, stream_id: str) -> int:
        if not self.free:
            # Grow by 1/8: memory tracks the stream count closely (at most 12.5 % slack).
            self._grow(self._capacity + max(1024, self._capacity // 8))
        row = self.free.pop()
        self.index[stream_id] = row
        self.ids[row] = stream_id
        return row  # the caller resets it (``rows_for``, for all new rows at once)

    def evict(self, stream_ids: Iterable[str]) -> int:
        count = 0
        for sid in stream_ids:
            row = self.index.pop(sid, None)
            if row is not None:
                self.ids[row] = None
                self.free.append(row)
                count += 1
        if count and len(self.index) <= self._capacity // SHRINK_BELOW and self._capacity > 1024:
            self._compact()
        return count

    def _compact(self) -> None:
        """Move the live rows to the front of a table sized to them (+1/8, at least 1024):
        a ward that had 16 000 patients at its peak and has 1 000 now holds 1 000 rows, not
        16 000. Rows are only ever looked up by stream id, so renumbering them is safe."""
        streams = list(self.index)
        keep = np.fromiter((self.index[sid] for sid in streams), np.int64, len(streams))
        capacity = max(1024, len(streams) + len(streams) // 8)
        idx = torch.as_tensor(keep, device=self.device)
        for name, col in self.device_spec.items():
            fresh = torch.full(
                (capacity, *col.shape),
                col.fill,
                dtype=getattr(torch, col.dtype),
                device=self.device,
            )
            fresh[: len(keep)] = self.dev[name].index_select(0, idx)
            self.dev[name] = fresh
        for name, col in self.host_spec.items():
            fresh_np = np.full((capacity, *col.shape), col.fill, dtype=col.dtype)
            fresh_np[: len(keep)] = self.host[name][keep]
            self.host[name] = fresh_np
        self.index = {sid: row for row, sid in enumerate(streams)}
        self.ids = [*streams, *([None] * (capacity - len(streams)))]
        self.free = list(range(capacity - 1, len(streams) - 1, -1))
        self._capacity = capacity

    def _reset_rows(self, rows: np.ndarray) -> None:
        idx = torch.as_tensor(rows, device=self.device)
        for name, col in self.device_spec.items():
            self.dev[name][idx] = col.fill
        for name, col in self.host_spec.items():
            self.host[name][rows] = col.fill

    def _grow(self, new_capacity: int) -> None:
        old = self._capacity
        for name, col in self.device_spec.items():
            fresh = torch.full(
                (new_capacity, *col.shape),
                col.fill,
                dtype=getattr(torch, col.dtype),
                device=self.device,
            )
            if old:
                fresh[:old] = self.dev[name]
            self.dev[name] = fresh
        for name, col in self.host_spec.items():
            fresh_np = np.full((new_capacity, *col.shape), col.fill, dtype=col.dtype)
            if old:
                fresh_np[:old] = self.host[name]
            self.host[name] = fresh_np
        self.ids.extend([None] * (new_capacity - old))
        # Free rows are popped from the end: keep low rows first so the table stays dense.
        self.free = list(range(new_capacity - 1, old - 1, -1)) + self.free
        self._capacity = new_capacity

    # --- gather / scatter --------------------------------------------------------------
    def gather(self, rows: Tensor) -> dict[str, Tensor]:
        """Every device column of ``rows``, as fresh contiguous tensors."""
        return {n: t.index_select(0, rows) for n, t in self.dev.items()}

    def scatter(self, rows: Tensor, values: dict[str, Tensor]) -> None:
        for name, value in values.items():
            self.dev[name].index_copy_(0, rows, value)

    def view(self, lo: int, hi: int) -> dict[str, Tensor]:
        """``gather`` of the rows lo..hi-1 without a copy: views into the columns. A dense
        table whose streams all report in row order (one reading each per poll) needs no
        gather at all; ``write_back`` then copies only what the step replaced."""
        return {n: t[lo:hi] for n, t in self.dev.items()}

    def write_back(self, lo: int, view: dict[str, Tensor], values: dict[str, Tensor]) -> None:
        for name, value in values.items():
            if value is not view[name]:  # a column changed in place is already written
                self.dev[name][lo : lo + len(value)].copy_(value)

    # --- snapshot / restore ------------------------------------------------------------
    def snapshot(self, stream_ids: Sequence[str] | None = None, meta: dict | None = None) -> bytes:
        """Bytes holding the rows of ``stream_ids`` (all streams when None) and ``meta``."""
        ids = list(self.index) if stream_ids is None else [s for s in stream_ids if s in self.index]
        rows = np.array([self.index[s] for s in ids], dtype=np.int64)
        idx = torch.as_tensor(rows, device=self.device)
        arrays = {f"dev.{n}": t.index_select(0, idx).cpu().numpy() for n, t in self.dev.items()}
        arrays.update({f"host.{n}": a[rows] for n, a in self.host.items()})
        header = {"format": SNAPSHOT_FORMAT, "streams": ids, "meta": meta or {}}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def restore(self, blob: bytes) -> tuple[list[str], dict]:
        """Add (or overwrite) the rows held in ``blob``; returns (stream ids, ``meta``)."""
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes())
            if header.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(f"snapshot format {header.get('format')} is not supported")
            rows, _ = self.rows_for(header["streams"])
            idx = torch.as_tensor(rows, device=self.device)
            for name, col in self.device_spec.items():
                if f"dev.{name}" not in npz.files:  # a column added since: keeps its default
                    continue
                data = torch.from_numpy(npz[f"dev.{name}"]).to(self.device)
                if tuple(data.shape[1:]) != col.shape:
                    raise ValueError(f"snapshot column {name}: shape {tuple(data.shape)}")
                self.dev[name].index_copy_(0, idx, data)
            for name in self.host_spec:
                if f"host.{name}" in npz.files:  # a column added since: keeps its default
                    self.host[name][rows] = npz[f"host.{name}"]
        return list(header["streams"]), header["meta"]

    def nbytes(self) -> int:
        """Bytes held by the columns (capacity rows), for memory accounting."""
        dev = sum(t.element_size() * t.nelement() for t in self.dev.values())
        return dev + sum(a.nbytes for a in self.host.values())


def read_meta(blob: bytes) -> dict:
    """The ``meta`` of a snapshot, without restoring it."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return json.loads(npz["header"].tobytes()).get("meta", {})


def table_rows(table: StateTable) -> dict[str, dict[str, np.ndarray]]:
    """Every column of every stream's row, as host arrays.

    Used to prove that a run with crashes and restarts ends in the same state as one without.
    Compare float columns with a tolerance: a BLAS kernel may round differently when the
    same readings arrive in differently sized batches, so bitwise equality is not promised.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for stream, row in table.index.items():
        cols = {name: col[row].detach().cpu().numpy().copy() for name, col in table.dev.items()}
        cols.update({name: np.asarray(col[row]).copy() for name, col in table.host.items()})
        out[stream] = cols
    return out
