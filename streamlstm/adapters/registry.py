"""The model registry: every trained version of every group, with its evidence and status.

Layout (a local directory)::

    <root>/<group>/<version>/      a model directory (checkpoint.save_model) plus entry.json
    <root>/<group>/history.json    promoted versions, oldest first (rollback walks it back)

``entry.json`` holds status (candidate | promoted | rejected | retired), parent version,
creation time, the data range trained on, train metrics and the gate's validation numbers.
A version appears only complete: it is written under a dot-named temporary directory and
renamed into place, so a training run killed mid-way leaves no half-written version (the
dot-directory is ignored and swept on the next add).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from streamlstm.checkpoint import load_model, save_model
from streamlstm.detector import ScoringModel

STATUSES = ("candidate", "promoted", "rejected", "retired")


class RegistryError(RuntimeError):
    pass


class ModelRegistry:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # --- reading ------------------------------------------------------------------------
    def groups(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name[0] != ".")

    def entries(self, group: str) -> list[dict[str, Any]]:
        """Every complete version of ``group``, oldest first."""
        folder = self.root / group
        if not folder.exists():
            return []
        found = [
            json.loads((p / "entry.json").read_text())
            for p in folder.iterdir()
            if p.is_dir() and p.name[0] != "." and (p / "entry.json").exists()
        ]
        return sorted(found, key=lambda e: (e["created_at"], e["version"]))

    def entry(self, group: str, version: str) -> dict[str, Any]:
        path = self.root / group / version / "entry.json"
        if not path.exists():
            raise RegistryError(f"no version {version!r} of group {group!r} in {self.root}")
        return json.loads(path.read_text())

    def current(self, group: str) -> str | None:
        history = self._history(group)
        return history[-1] if history else None

    def load(self, group: str, version: str | None = None) -> ScoringModel:
        version = version or self.current(group)
        if version is None:
            raise RegistryError(f"group {group!r} has no promoted version in {self.root}")
        return load_model(self.root / group / version)

    def path(self, group: str, version: str) -> Path:
        return self.root / group / version

    def current_files(self, groups: list[str]) -> dict[str, dict[str, bytes]]:
        """The promoted version of each group, as the bytes the workers load."""
        from streamlstm.adapters.ray_workers import model_files

        out: dict[str, dict[str, bytes]] = {}
        for group in groups:
            version = self.current(group)
            if version:
                out.update(model_files(self.path(group, version)))
        return out

    # --- writing ------------------------------------------------------------------------
    def add(self, model: ScoringModel, metrics: dict[str, Any], entry: dict[str, Any]) -> dict:
        """Store a new version as a candidate (atomically); returns its entry."""
        folder = self.root / model.group
        folder.mkdir(parents=True, exist_ok=True)
        self._sweep(folder)
        final = folder / model.version
        if final.exists():
            return self.entry(model.group, model.version)  # the same weights: already here
        full = {
            "group": model.group,
            "version": model.version,
            "status": "candidate",
            "parent": self.current(model.group),
            "created_at": time.time(),
            **entry,
        }
        tmp = folder / f".incoming-{uuid.uuid4().hex[:8]}"
        save_model(tmp, model, metrics)
        _write_json(tmp / "entry.json", full)
        os.replace(tmp, final)
        return full

    def set_status(self, group: str, version: str, status: str, **fields: Any) -> dict:
        if status not in STATUSES:
            raise RegistryError(f"status must be one of {', '.join(STATUSES)}")
        entry = self.entry(group, version) | fields | {"status": status}
        _write_json(self.root / group / version / "entry.json", entry)
        return entry

    def promote(self, group: str, version: str) -> dict:
        """Make ``version`` current; the version it replaces is retired."""
        self.entry(group, version)  # exists?
        previous = self.current(group)
        if previous == version:
            return self.entry(group, version)
        if previous is not None:
            self.set_status(group, previous, "retired", retired_at=time.time())
        self._write_history(group, [*self._history(group), version])
        return self.set_status(group, version, "promoted", promoted_at=time.time())

    def rollback(self, group: str) -> dict:
        """Back to the version promoted before the current one; the current one is retired."""
        history = self._history(group)
        if len(history) < 2:
            raise RegistryError(f"group {group!r} has no earlier promoted version to roll back to")
        current, previous = history[-1], history[-2]
        self.set_status(group, current, "retired", retired_at=time.time(), rolled_back=True)
        self._write_history(group, history[:-1])
        return self.set_status(group, previous, "promoted", promoted_at=time.time())

    # --- internals ----------------------------------------------------------------------
    def _history(self, group: str) -> list[str]:
        path = self.root / group / "history.json"
        return json.loads(path.read_text()) if path.exists() else []

    def _write_history(self, group: str, versions: list[str]) -> None:
        _write_json(self.root / group / "history.json", versions)

    @staticmethod
    def _sweep(folder: Path) -> None:
        """Remove what runs that died mid-write left behind."""
        for leftover in folder.glob(".incoming-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    os.replace(tmp, path)
