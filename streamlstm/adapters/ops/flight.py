"""The flight recorder's file (``stream/flight.py``): one small file per worker, written with
``os.pwrite`` into a descriptor opened once, so a poll costs a few system calls into the page
cache and no fsync. It must outlive a *process* (the page cache does), not a node: a node
that dies takes the worker's process with it, and its records are re-read elsewhere.

Layout (fixed offsets, so every write is one ``pwrite`` in place):

- ``0``: the poll slot: ``MAGIC``, state (``P`` in a poll, ``I`` idle), the last stage
  finished (8 bytes, NUL-padded), the writer's pid, the payload's length and crc32, then the
  payload: ``{"n": records, "spans": [[topic, partition, first, last], ...]}``;
- ``LEDGER_AT``: the poison ledger's state: ``MAGIC``, length, crc32, JSON (on changes only).

A torn or foreign file (a node death mid-write, an old format) fails its magic or checksum
and reads as nothing left: the worst case is one death not counted.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import tempfile
import zlib
from pathlib import Path

import orjson

from streamlstm.stream.flight import LeftBehind, take_over
from streamlstm.stream.poison import PoisonLedger, Poll

log = logging.getLogger(__name__)

MAGIC = b"SLFR1"
POLL_HEAD = struct.Struct(">5sc8sIII")  # magic, state, stage, pid, length, crc32
STATE_AT, STAGE_AT = 5, 6  # offsets of the state byte and the stage field
LEDGER_HEAD = struct.Struct(">5sII")  # magic, length, crc32
LEDGER_AT = 1 << 20  # the poll slot holds a poll of up to ~1 MiB of spans (sparse file)
POLLING, IDLE = b"P", b"I"


def flight_path(checkpoint_dir: str, group_id: str, index: int) -> Path:
    """Beside the snapshots when they are a local directory (the worker's durable storage);
    for an object store (s3://...), which has no pwrite, the node's temporary directory."""
    name = f"flight-{re.sub(r'[^A-Za-z0-9_.-]', '_', group_id)}-{index}.bin"
    if "://" in checkpoint_dir:
        return Path(tempfile.gettempdir()) / "streamlstm-flight" / name
    return Path(checkpoint_dir) / "_flight" / name


class FlightFile:
    """The ``FlightRecorder`` port over one file; ``open`` it once per process."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path
        self.pid = os.getpid()
        self.polling = False  # skips the stage writes of laps outside a poll (checkpoints)

    @classmethod
    def open(cls, path: Path) -> FlightFile:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), path)

    # --- the loop's port -----------------------------------------------------------------
    def took(self, poll: Poll) -> None:
        spans = [[t, p, first, last] for (t, p), (first, last) in poll.spans.items()]
        payload = orjson.dumps({"n": poll.records, "spans": spans})
        if POLL_HEAD.size + len(payload) > LEDGER_AT:
            log.warning("flight recorder: a poll of %d partitions does not fit", len(spans))
            return
        head = POLL_HEAD.pack(MAGIC, POLLING, b"fetch", self.pid, len(payload), zlib.crc32(payload))
        os.pwrite(self.fd, head + payload, 0)
        self.polling = True

    def lap(self, stage: str) -> None:
        if self.polling:
            os.pwrite(self.fd, stage.encode()[:8].ljust(8, b"\0"), STAGE_AT)

    def landed(self) -> None:
        if self.polling:
            os.pwrite(self.fd, IDLE, STATE_AT)
            self.polling = False

    def clear(self) -> None:
        """No poll in flight, whatever a previous process left (it has been counted)."""
        os.pwrite(self.fd, IDLE, STATE_AT)
        self.polling = False

    def keep(self, ledger: dict) -> None:
        payload = orjson.dumps(ledger)
        head = LEDGER_HEAD.pack(MAGIC, len(payload), zlib.crc32(payload))
        os.pwrite(self.fd, head + payload, LEDGER_AT)  # one write: no half-kept ledger

    # --- what a previous process left ----------------------------------------------------
    def left(self) -> LeftBehind:
        """The poll a dead process was in (not one a live process is in now), the stage it
        finished last, and the ledger it kept."""
        return LeftBehind(*self._poll(), self._ledger())

    def _poll(self) -> tuple[Poll | None, str | None]:
        head = os.pread(self.fd, POLL_HEAD.size, 0)
        if len(head) < POLL_HEAD.size:
            return None, None
        magic, state, stage, pid, length, crc = POLL_HEAD.unpack(head)
        if magic != MAGIC or state != POLLING:
            return None, None
        payload = os.pread(self.fd, length, POLL_HEAD.size)
        if zlib.crc32(payload) != crc:
            log.warning("flight recorder %s: torn poll record, ignored", self.path)
            return None, None
        if _alive(pid):  # this process too: two worker bodies in one (in-process tests)
            log.warning("flight recorder %s: process %d is alive and in a poll", self.path, pid)
            return None, None
        data = orjson.loads(payload)
        spans = {(t, p): (first, last) for t, p, first, last in data["spans"]}
        return Poll(data["n"], spans), stage.rstrip(b"\0").decode()

    def _ledger(self) -> dict | None:
        head = os.pread(self.fd, LEDGER_HEAD.size, LEDGER_AT)
        if len(head) < LEDGER_HEAD.size:
            return None
        magic, length, crc = LEDGER_HEAD.unpack(head)
        payload = os.pread(self.fd, length, LEDGER_AT + LEDGER_HEAD.size)
        if magic != MAGIC or zlib.crc32(payload) != crc:
            log.warning("flight recorder %s: torn ledger, ignored", self.path)
            return None
        return orjson.loads(payload)

    def close(self) -> None:
        os.close(self.fd)


def resume_flight(path: Path, ledger: PoisonLedger, who: str) -> FlightFile:
    """Open ``who``'s flight recorder once per process: its previous process's ledger is
    taken over, and a poll that process took and never landed (it died in it) counts as a
    failure of that poll (``stream/flight.py``)."""
    flight = FlightFile.open(path)
    left = flight.left()
    if left.poll is not None:
        spans = ", ".join(f"{t}:{p}@{a}-{b}" for (t, p), (a, b) in left.poll.spans.items())
        log.warning(
            "%s: its previous process died in a poll of %d record(s) (%s) after finishing %s",
            who,
            left.poll.records,
            spans,
            left.stage,
        )
    take_over(ledger, flight, left)
    return flight


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an exited child not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill's answer
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
