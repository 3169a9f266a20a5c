"""Snapshot storage: one file per (partition, generation, next offset), written atomically,
checksummed, and the partition's generation markers (``claim``; see ``fencing.py``).

A local directory gets write-to-temp + fsync + rename + fsync(dir): a reader sees either the
whole new snapshot or none of it. Any ``pyarrow.fs`` URI (s3://, gs://, hdfs://) is written
with a single object put, which those stores make atomic.

File layout: ``MAGIC``, an 8-byte big-endian header length, a JSON header (next offset,
generation, and per model group its size and sha256), then the group blobs. The loop adds
one more blob, ``#ledger`` (``stream/ledger.py``: the partition's outcome counts below the
next offset, JSON), which no model group can be named. A truncated or corrupted file fails
its checksum and the previous snapshot is used instead.

Names: ``snap-g<generation>-<next offset>.bin`` (``snap-<next offset>.bin`` from before
fencing reads as generation 0). The newest snapshot is the one of the highest generation,
then the highest offset: whatever a stale worker might still write under an older
generation never wins over its replacement's snapshots.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"SLSTMSNAP1\n"
TP = tuple[str, int]
SNAPSHOT_NAME = re.compile(r"^snap-(?:g(\d+)-)?(\d+)\.bin$")
MARKER_PREFIX = "generation-"
HISTORY_NAME = "history.jsonl"  # one JSON object a line: operator actions on the position


def snapshot_name(generation: int, next_offset: int) -> str:
    return f"snap-g{generation:010d}-{next_offset:020d}.bin"


def name_order(name: str) -> tuple[int, int] | None:
    """(generation, next offset) of a snapshot file name; None for any other file."""
    match = SNAPSHOT_NAME.match(name)
    if match is None:
        return None
    return int(match.group(1) or 0), int(match.group(2))


def encode_snapshot(blobs: dict[str, bytes], next_offset: int, generation: int = 0) -> bytes:
    groups = [
        {"name": g, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        for g, b in blobs.items()
    ]
    header = {"next_offset": next_offset, "generation": generation, "groups": groups}
    header = json.dumps(header).encode()
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

    def save(self, tp: TP, blobs: dict[str, bytes], next_offset: int, generation: int = 0) -> None:
        data = encode_snapshot(blobs, next_offset, generation)
        name = snapshot_name(generation, next_offset)
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
        _fsync_dir(folder)

    # --- generations (fencing.py) -------------------------------------------------------
    def generation(self, tp: TP) -> int:
        """The partition's newest claimed generation (0: never claimed)."""
        return max(self._markers(tp), default=0)

    def claim(self, tp: TP) -> int:
        """Take the partition's next generation and return it: every worker holding an older
        one is fenced from now on. On a local (or NFS) directory the marker is created with
        O_EXCL, so two claims at once get different generations; an object store has no
        exclusive create, and the later of two simultaneous claims wins."""
        folder = self._dir(tp)
        while True:
            generation = self.generation(tp) + 1
            while not self._create_marker(folder, generation):
                generation += 1  # claimed by someone else just now: take the next one
            # A newer claimant deletes older markers, so a number can be created twice; it is
            # ours only if nobody holds a newer one now (the newest marker never goes back).
            if self.generation(tp) == generation:
                break
        for older in self._markers(tp):
            if older < generation:
                self._delete(f"{folder}/{MARKER_PREFIX}{older:010d}")
        return generation

    def _create_marker(self, folder: str, generation: int) -> bool:
        """False when that generation's marker exists already (local directories only)."""
        marker = f"{folder}/{MARKER_PREFIX}{generation:010d}"
        if self._fs is not None:
            self._fs.create_dir(folder, recursive=True)
            with self._fs.open_output_stream(marker) as out:
                out.write(b"")
            return True
        Path(folder).mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False
        _fsync_dir(Path(folder))
        return True

    def _markers(self, tp: TP) -> list[int]:
        return [
            int(n[len(MARKER_PREFIX) :])
            for n in self._listing(tp)
            if n.startswith(MARKER_PREFIX) and n[len(MARKER_PREFIX) :].isdigit()
        ]

    def _listing(self, tp: TP) -> list[str]:
        folder = self._dir(tp)
        if self._fs is None:
            return os.listdir(folder) if os.path.isdir(folder) else []
        import pyarrow.fs as pafs

        infos = self._fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        return [info.base_name for info in infos]

    def _names(self, tp: TP) -> list[str]:
        """Snapshot file names of a partition, newest (generation, then offset) first."""
        ordered = sorted(
            (order, name) for name in self._listing(tp) if (order := name_order(name)) is not None
        )
        return [name for _, name in reversed(ordered)]

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

    # --- history: what operators did to a partition's position (``snapshots skip``) --------
    def history(self, tp: TP) -> list[dict]:
        """The partition's recorded operator actions, oldest first (``HISTORY_NAME``)."""
        path = f"{self._dir(tp)}/{HISTORY_NAME}"
        if HISTORY_NAME not in self._listing(tp):
            return []
        return [json.loads(line) for line in self._read(path).splitlines() if line.strip()]

    def record(self, tp: TP, entry: dict) -> None:
        """Append ``entry`` to the partition's history (never pruned with the snapshots)."""
        line = json.dumps(entry, sort_keys=True).encode() + b"\n"
        path = f"{self._dir(tp)}/{HISTORY_NAME}"
        if self._fs is None:
            Path(self._dir(tp)).mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            return
        # Object stores cannot append: rewrite the whole (small) file.
        before = self._read(path) if HISTORY_NAME in self._listing(tp) else b""
        with self._fs.open_output_stream(path) as out:
            out.write(before + line)

    def _prune(self, tp: TP) -> None:
        for name in self._names(tp)[self.keep :]:
            self._delete(f"{self._dir(tp)}/{name}")

    def _delete(self, path: str) -> None:
        try:
            if self._fs is None:
                os.remove(path)
            else:
                self._fs.delete_file(path)
        except OSError:
            log.debug("could not delete %s", path)


def _fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
