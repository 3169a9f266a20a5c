"""Where the model registry keeps its files: a local directory or any ``pyarrow.fs`` URI
(``s3://``, ``gs://``, ``hdfs://``, ``file://``), behind the few operations it needs.

Paths are relative to the registry root, ``/``-separated. A whole version appears at once:
locally it is written under a dot-named directory and renamed into place; on a pyarrow
filesystem (where a directory rename is a copy) its files are put first and ``entry.json``
last, and a version without ``entry.json`` does not exist for readers.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

COMMIT_FILE = "entry.json"  # written last: a version is complete once it is there


class LocalFiles:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.where = str(self.root)

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def location(self, rel: str) -> Path:
        return (self.root / rel).resolve()

    def list_dirs(self, rel: str = "") -> list[str]:
        folder = self.root / rel
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.exists() else []

    def list_files(self, rel: str) -> list[str]:
        folder = self.root / rel
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.exists() else []

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def write(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def read_dir(self, rel: str) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (self.root / rel).iterdir() if p.is_file()}

    def put_dir(self, files: dict[str, bytes], rel: str) -> None:
        final = self.root / rel
        tmp = final.parent / f".incoming-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.replace(tmp, final)

    def remove(self, rel: str) -> None:
        """A file or a folder with everything in it; nothing when it is not there."""
        path = self.root / rel
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()

    def sweep(self, rel: str) -> None:
        """Remove what writers that died mid-way left behind."""
        for leftover in (self.root / rel).glob(".incoming-*"):
            shutil.rmtree(leftover, ignore_errors=True)


class ArrowFiles:
    def __init__(self, uri: str):
        import pyarrow.fs as pafs

        self.fs, self.base = pafs.FileSystem.from_uri(uri)
        self.where = uri
        self._pafs = pafs

    def _path(self, rel: str) -> str:
        return f"{self.base}/{rel}".rstrip("/")

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self._path(rel)).type != self._pafs.FileType.NotFound

    def location(self, rel: str) -> str:
        return f"{self.where.rstrip('/')}/{rel}"

    def list_dirs(self, rel: str = "") -> list[str]:
        if not self.exists(rel):
            return []
        infos = self.fs.get_file_info(self._pafs.FileSelector(self._path(rel)))
        return sorted(i.base_name for i in infos if i.type == self._pafs.FileType.Directory)

    def list_files(self, rel: str) -> list[str]:
        if not self.exists(rel):
            return []
        infos = self.fs.get_file_info(self._pafs.FileSelector(self._path(rel)))
        return sorted(i.base_name for i in infos if i.type == self._pafs.FileType.File)

    def read(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self._path(rel)) as stream:
            return stream.read()

    def write(self, rel: str, data: bytes) -> None:
        self.fs.create_dir(self._path(rel).rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(self._path(rel)) as stream:  # one put: atomic
            stream.write(data)

    def read_dir(self, rel: str) -> dict[str, bytes]:
        infos = self.fs.get_file_info(self._pafs.FileSelector(self._path(rel)))
        files = [i for i in infos if i.type == self._pafs.FileType.File]
        return {i.base_name: self.read(f"{rel}/{i.base_name}") for i in files}

    def put_dir(self, files: dict[str, bytes], rel: str) -> None:
        for name, data in sorted(files.items(), key=lambda kv: kv[0] == COMMIT_FILE):
            self.write(f"{rel}/{name}", data)  # COMMIT_FILE last

    def remove(self, rel: str) -> None:
        """A file or a folder with everything in it; nothing when it is not there."""
        kind = self.fs.get_file_info(self._path(rel)).type
        if kind == self._pafs.FileType.Directory:
            self.fs.delete_dir(self._path(rel))
        elif kind == self._pafs.FileType.File:
            self.fs.delete_file(self._path(rel))

    def sweep(self, rel: str) -> None:
        """Versions without their commit file are half-written: remove them."""
        for name in self.list_dirs(rel):
            if not self.exists(f"{rel}/{name}/{COMMIT_FILE}"):
                self.fs.delete_dir(self._path(f"{rel}/{name}"))


def open_files(root: str | Path) -> LocalFiles | ArrowFiles:
    return ArrowFiles(root) if "://" in str(root) else LocalFiles(root)
