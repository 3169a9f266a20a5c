"""The desired number of workers, as an operator set it with ``streamlstm scale``.

A file on the checkpoint storage (``checkpoint.dir``, a directory or a ``pyarrow.fs`` URI),
not a signal: every node of a cluster reaches that storage, so the command works from any
of them, and a supervisor that restarts still finds the operator's count there. The
supervisor polls it (``supervise.SCALE_CHECK_S``). The file: ``{"workers", "by", "at"}``,
one per consumer group (``.streamlstm/scale-<group_id>.json``); no file means
``ray.workers`` from the config.
"""

from __future__ import annotations

import json
import time
from typing import Any

from streamlstm.adapters.retrain.registry_files import open_files

CONTROL_DIR = ".streamlstm"  # beside the <topic>/<partition> snapshot folders


class ScaleControl:
    def __init__(self, checkpoint_dir: str, group_id: str) -> None:
        self.files = open_files(checkpoint_dir)
        self.rel = f"{CONTROL_DIR}/scale-{group_id}.json"

    @property
    def where(self) -> str:
        return f"{self.files.where.rstrip('/')}/{self.rel}"

    def request(self, workers: int, by: str | None) -> dict[str, Any]:
        """Ask the running supervisor for ``workers`` workers (>= 1)."""
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        record = {"workers": workers, "by": by, "at": time.time()}
        self.files.write(self.rel, json.dumps(record, indent=1).encode())
        return record

    def requested(self) -> dict[str, Any] | None:
        """The operator's request, or None (not set, or unreadable: half-written)."""
        if not self.files.exists(self.rel):
            return None
        try:
            record = json.loads(self.files.read(self.rel))
        except (OSError, ValueError):
            return None
        workers = record.get("workers") if isinstance(record, dict) else None
        return record if isinstance(workers, int) and workers >= 1 else None

    def clear(self) -> dict[str, Any] | None:
        """Back to ``ray.workers``; returns the request it removed (None: there was none)."""
        was = self.requested()
        self.files.remove(self.rel)
        return was
