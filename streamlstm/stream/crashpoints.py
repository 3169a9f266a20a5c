"""Fault injection for chaos tests: named points in the worker that end the process abruptly
or stall it. Read once from the environment at start; when unset, a hit is one string compare.

- ``STREAMLSTM_CRASHPOINT=name:nth``: ``os._exit`` at the nth pass of point ``name``.
- ``STREAMLSTM_CRASHPOINT_ONCE=path``: fire only if ``path`` does not exist, and create it
  first. A restarted actor gets the same environment, so without this the point would fire
  again in every new process: an endless restart loop instead of one crash.
- ``STREAMLSTM_DELAY=name:seconds``: sleep at every pass of ``name`` (a slow worker).
- ``STREAMLSTM_DISK_FULL_FLAG=path``: snapshot writes fail with ENOSPC while ``path`` exists.
- ``STREAMLSTM_CRASH_ON_VALUE=text``: ``os._exit`` while decoding a poll holding a record
  whose value contains ``text``, in every process (a record that kills its worker: the
  stand-in for a segfault in a native decoder, or the OOM killer).
"""

from __future__ import annotations

import errno
import logging
import os
import time

log = logging.getLogger(__name__)


class CrashPoints:
    """``hit(name)`` at each named point; see the module docstring for the settings."""

    def __init__(
        self,
        spec: str | None,
        once: str | None = None,
        delay: str | None = None,
        on_value: str | None = None,
    ):
        self.name, self.nth, self.seen = "", 0, 0
        self.once = once
        self.on_value = on_value.encode() if on_value else None
        self.delay_name, self.delay_s = "", 0.0
        if spec:
            self.name, _, nth = spec.partition(":")
            self.nth = int(nth or 1)
        if delay:
            self.delay_name, _, seconds = delay.partition(":")
            self.delay_s = float(seconds or 1.0)

    @classmethod
    def from_env(cls) -> CrashPoints:
        env = os.environ
        return cls(
            env.get("STREAMLSTM_CRASHPOINT"),
            env.get("STREAMLSTM_CRASHPOINT_ONCE"),
            env.get("STREAMLSTM_DELAY"),
            env.get("STREAMLSTM_CRASH_ON_VALUE"),
        )

    def on_records(self, records) -> None:
        """Exit abruptly if a record's value holds the ``on_value`` text."""
        if self.on_value is None:
            return
        if any(r.value and self.on_value in r.value for r in records):
            log.warning("crash point on_value reached: exiting abruptly")
            os._exit(77)

    def hit(self, name: str) -> None:
        if name == self.delay_name:
            time.sleep(self.delay_s)
        if name != self.name:
            return
        self.seen += 1
        if self.seen < self.nth:
            return
        if self.once is not None:
            if os.path.exists(self.once):
                return
            with open(self.once, "w") as fh:
                fh.write(f"{name}:{self.seen} pid {os.getpid()}\n")
        log.warning("crash point %s reached: exiting abruptly", name)
        os._exit(77)


class FullDisk:
    """A snapshot store whose writes fail with ENOSPC while a flag file exists.

    ``STREAMLSTM_DISK_FULL_FLAG=path`` wraps the worker's store in it (``wrap_store``): a
    test fills and frees the "disk" by creating and removing the file, from outside the actor.
    """

    def __init__(self, store, flag: str):
        self.store, self.flag = store, flag

    def save(self, tp, blobs: dict[str, bytes], next_offset: int) -> None:
        if os.path.exists(self.flag):
            raise OSError(errno.ENOSPC, "No space left on device (injected)", self.flag)
        self.store.save(tp, blobs, next_offset)

    def load(self, tp):
        return self.store.load(tp)


def wrap_store(store):
    """The store itself, or a ``FullDisk`` around it when the environment asks for one."""
    flag = os.environ.get("STREAMLSTM_DISK_FULL_FLAG")
    return FullDisk(store, flag) if flag else store
