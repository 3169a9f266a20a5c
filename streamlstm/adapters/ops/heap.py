"""The worker process's garbage collector: its long-lived objects frozen out of reach, and
its pauses timed for ``bench e2e --profile``.

Why: a started worker holds about 250,000 long-lived Python objects (the imported modules,
the model, the restored state). Each full (generation 2) collection scanned them all: a
pause of 144 to 192 ms of the poll loop, seen in 4 of 8 worker runs of `bench e2e`, which
every reading queued behind it waits out. ``gc.freeze`` moves the objects alive at that
point to a permanent generation that no collection scans; what the loop allocates from then
on is collected as before, and reference counting still frees everything that is not in a
cycle.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def freeze_long_lived() -> int:
    """Collect what is garbage now, then freeze everything left; returns the objects
    frozen in all (``gc.get_freeze_count``). Call it once the process holds its long-lived
    state (a worker: after its models are loaded and its partitions restored)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses:
    """Counts and times the collector's runs in this process, from ``gc.callbacks``:
    collections, full ones (generation 2), their total and longest pause in seconds."""

    def __init__(self, timer: Callable[[], float] = time.perf_counter):
        self.timer = timer
        self.collections = self.full = 0
        self.pause_s = self.max_pause_s = 0.0
        self._started = 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = self.timer()
            return
        pause = self.timer() - self._started
        self.collections += 1
        self.full += info.get("generation") == 2
        self.pause_s += pause
        self.max_pause_s = max(self.max_pause_s, pause)

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def remove(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def totals(self) -> dict[str, float]:
        return {
            "collections": self.collections,
            "full": self.full,
            "pause_s": self.pause_s,
            "max_pause_s": self.max_pause_s,
        }
