"""The flight recorder's port: what the loop tells it, so that a record that kills the
worker's *process* (a segfault in a native library, the OOM killer) is still counted by the
poison rule (``poison.py``), which otherwise lives and dies with that process.

Per poll the loop says ``took`` (which offsets of which partitions, before any record is
handled), ``lap`` at each
stage it finishes, and ``landed`` once the poll is handled or its failure counted; the
ledger's state is ``keep``-ed on every change (failures: rare). A process that dies mid-poll
leaves a poll ``took`` and not ``landed``: the next process reads it (``LeftBehind``) and
``take_over`` counts it as a failure of that poll in the stage after its last ``lap``.

The adapter (``adapters/ops/flight.py``) writes a small file; ``MemoryFlight`` is the
in-memory one for tests of the core, ``NoFlight`` the default (records nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from streamlstm.stream.poison import PoisonLedger, Poll


class FlightRecorder(Protocol):
    def took(self, poll: Poll) -> None: ...
    def lap(self, stage: str) -> None: ...
    def landed(self) -> None: ...
    def clear(self) -> None: ...
    def keep(self, ledger: dict) -> None: ...


@dataclass(frozen=True)
class LeftBehind:
    """What a previous process left: the poll it died in (None: it landed every poll it
    took), the last stage it finished of that poll, and its poison ledger's state."""

    poll: Poll | None = None
    stage: str | None = None
    ledger: dict | None = None


def take_over(ledger: PoisonLedger, flight: FlightRecorder, left: LeftBehind) -> bool:
    """A new process continues its predecessor's ledger and counts the poll it died in as
    that poll's failure (kept in ``flight``); True when the death counted."""
    if left.ledger:
        ledger.restore(left.ledger)
    if left.poll is None:
        return False
    flight.clear()  # first: a death before the keep loses this count, never doubles it
    counted = ledger.failed_poll(left.poll, left.stage)
    if counted:
        flight.keep(ledger.state())
    return counted


class NoFlight:
    def took(self, poll: Poll) -> None:
        pass

    def lap(self, stage: str) -> None:
        pass

    def landed(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def keep(self, ledger: dict) -> None:
        pass


class MemoryFlight:
    """Outlives a loop in memory as the file outlives a process (tests of the core)."""

    def __init__(self) -> None:
        self.poll: Poll | None = None
        self.stage: str | None = None
        self.ledger: dict | None = None

    def took(self, poll: Poll) -> None:
        self.poll, self.stage = poll, "fetch"

    def lap(self, stage: str) -> None:
        if self.poll is not None:
            self.stage = stage

    def landed(self) -> None:
        self.poll = self.stage = None

    def clear(self) -> None:
        self.landed()

    def keep(self, ledger: dict) -> None:
        self.ledger = ledger

    def left(self) -> LeftBehind:
        return LeftBehind(self.poll, self.stage, self.ledger)
