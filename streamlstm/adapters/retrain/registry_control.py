"""An operator's hold on the model registry: a group pinned to a version, and the scheduled
rounds paused. Both live in the registry beside the versions, so every supervisor sharing
it, and every ``streamlstm models`` call, sees the same state.

Files: ``<group>/pin.json`` and ``schedule.json``, each ``{"by", "at", ...}``; no file means
not pinned, not paused. ``.serving/<name>.json``: what a supervisor's workers serve.
"""

from __future__ import annotations

import json
import time
from typing import Any

SCHEDULE_FILE = "schedule.json"
SERVING_DIR = ".serving"  # what running supervisors report their workers serve


class RegistryControl:
    def __init__(self, files: Any) -> None:
        self.files = files

    # --- pins: a pinned group is not promoted by scheduled rounds ------------------------
    def pinned(self, group: str) -> dict[str, Any] | None:
        """``{"version", "by", "at", "reason"}`` while ``group`` is pinned, else None."""
        return self._read(_pin_file(group))

    def pin(self, group: str, version: str, by: str | None, reason: str) -> dict[str, Any]:
        record = {"version": version, "by": by, "at": time.time(), "reason": reason}
        self.files.write(_pin_file(group), _dumps(record))
        return record

    def unpin(self, group: str) -> dict[str, Any] | None:
        """Release the pin; returns what it was (None: there was none)."""
        was = self.pinned(group)
        if was is not None:
            self.files.remove(_pin_file(group))
        return was

    # --- the schedule's pause ------------------------------------------------------------
    def paused(self) -> dict[str, Any] | None:
        """``{"by", "at", "reason"}`` while scheduled rounds are paused, else None."""
        state = self._read(SCHEDULE_FILE)
        return state if state and state.get("paused") else None

    def pause(self, by: str | None, reason: str = "") -> dict[str, Any]:
        record = {"paused": True, "by": by, "at": time.time(), "reason": reason}
        self.files.write(SCHEDULE_FILE, _dumps(record))
        return record

    def resume(self) -> dict[str, Any] | None:
        """Scheduled rounds run again; returns the pause it ended (None: not paused)."""
        was = self.paused()
        if was is not None:
            self.files.remove(SCHEDULE_FILE)
        return was

    # --- what running workers serve (written by supervisors) -----------------------------
    def report_serving(self, name: str, record: dict[str, Any]) -> None:
        self.files.write(f"{SERVING_DIR}/{name}.json", _dumps(record))

    def serving(self) -> dict[str, dict[str, Any]]:
        """Every supervisor's latest report, by deployment name (``kafka.group_id``)."""
        if not self.files.exists(SERVING_DIR):
            return {}
        found = {}
        for path in self.files.list_files(SERVING_DIR):
            if path.endswith(".json") and not path.startswith("."):
                found[path.removesuffix(".json")] = self._read(f"{SERVING_DIR}/{path}")
        return found

    def _read(self, rel: str) -> dict[str, Any] | None:
        return json.loads(self.files.read(rel)) if self.files.exists(rel) else None


def _pin_file(group: str) -> str:
    return f"{group}/pin.json"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, indent=2, default=str).encode()
