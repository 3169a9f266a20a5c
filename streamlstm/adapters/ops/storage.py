"""Snapshot storage: one file per (partition, next offset), written atomically, checksummed.

A local directory gets write-to-temp + fsync + rename + fsync(dir): a reader sees either the
whole new snapshot or none of it. Any ``pyarrow.fs`` URI (s3://, gs://, hdfs://) is written
with a single object put, which those stores make atomic.

File layout: ``MAGIC``, an 8-byte big-endian header length, a JSON header (next offset, and
per model group its size and sha256), then the group blobs. A truncated or corrupted file
fails its checksum and the previous snapshot is used instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"SLSTMSNAP1\n"
TP = tuple[str, int]


def encode_snapshot(blobs: dict[str, bytes], next_offset: int) -> bytes:
    groups = [
        {"name": g, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        for g, b in blobs.items()
    ]
    header = json.dumps({"next_offset": next_offset, "groups": groups}).encode()
    return MAGIC + struct.pack(">Q", len(header)) + header + b"".join(blobs.values())


def decode_snapshot(data: bytes) -> tuple[dict[str, bytes], int]:
    """Raises ValueError on a torn or corrupted snapshot."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
        raise ValueError("not a snapshot (bad magic)")
    pos = len(MAGIC)
    (size,) = struct.unpack(">Q", data[pos : pos + 8])
    pos += 8
    try:
        header = json.loads(data[pos : pos + size])
    except ValueError as exc:
        raise ValueError("snapshot header is corrupt") from exc
    pos += size
    blobs = {}
    for g in header["groups"]:
        blob = data[pos : pos + g["size"]]
        if len(blob) != g["size"] or hashlib.sha256(blob).hexdigest() != g["sha256"]:
            raise ValueError(f"snapshot group {g['name']}: checksum mismatch (torn write?)")
        blobs[g["name"]] = blob
        pos += g["size"]
    if pos != len(data):
        raise ValueError("snapshot has trailing bytes")
    return blobs, int(header["next_offset"])


class SnapshotStore:
    """``save``/``load`` per partition under ``root`` (a directory or a pyarrow.fs URI)."""

    def __init__(self, root: str, keep: int = 3, crash_hook=None):
        self.root = root
        self.keep = keep
        self._crash = crash_hook  # called between the two halves of a write (chaos tests)
        self._fs = None
        if "://" in root:
            import pyarrow.fs as pafs

            self._fs, self._base = pafs.FileSystem.from_uri(root)
        else:
            self._base = str(Path(root))

    def _dir(self, tp: TP) -> str:
        safe_topic = tp[0].replace("/", "_")
        return f"{self._base}/{safe_topic}/{tp[1]}"

    def save(self, tp: TP, blobs: dict[str, bytes], next_offset: int) -> None:
        data = encode_snapshot(blobs, next_offset)
        name = f"snap-{next_offset:020d}.bin"
        if self._fs is None:
            self._save_local(Path(self._dir(tp)), name, data)
        else:
            self._fs.create_dir(self._dir(tp), recursive=True)
            with self._fs.open_output_stream(f"{self._dir(tp)}/{name}") as out:
                out.write(data)
        self._prune(tp)

    def _save_local(self, folder: Path, name: str, data: bytes) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.tmp"
        try:
            with open(tmp, "wb") as fh:
                half = len(data) // 2
                fh.write(data[:half])
                if self._crash is not None:
                    fh.flush()
                    self._crash("mid_snapshot")
                fh.write(data[half:])
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            tmp.unlink(missing_ok=True)  # a partial temp file would keep a full disk full
            raise
        os.replace(tmp, folder / name)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _names(self, tp: TP) -> list[str]:
        """Snapshot file names of a partition, newest first."""
        folder = self._dir(tp)
        if self._fs is None:
            names = os.listdir(folder) if os.path.isdir(folder) else []
        else:
            import pyarrow.fs as pafs

            infos = self._fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
            names = [info.base_name for info in infos]
        return sorted(
            (n for n in names if n.startswith("snap-") and n.endswith(".bin")), reverse=True
        )

    def _read(self, path: str) -> bytes:
        if self._fs is None:
            return Path(path).read_bytes()
        with self._fs.open_input_stream(path) as fh:
            return fh.read()

    def load(self, tp: TP) -> tuple[dict[str, bytes], int] | None:
        """The newest complete snapshot of ``tp``; a corrupt one is skipped with a warning."""
        for name in self._names(tp):
            try:
                return decode_snapshot(self._read(f"{self._dir(tp)}/{name}"))
            except (ValueError, OSError) as exc:
                log.warning(
                    "snapshot %s/%s of %s:%d unusable (%s); trying the previous one",
                    self._dir(tp),
                    name,
                    tp[0],
                    tp[1],
                    exc,
                )
        return None

    def _prune(self, tp: TP) -> None:
        for name in self._names(tp)[self.keep :]:
            path = f"{self._dir(tp)}/{name}"
            try:
                if self._fs is None:
                    os.remove(path)
                else:
                    self._fs.delete_file(path)
            except OSError:
                log.debug("could not prune %s", path)
