"""The detached local broker shared by CLI invocations (``streamlstm kafka up|down|status``
and ``streamlstm run`` without a configured Kafka): one DevKafka under the cache, found
again through a small state file."""

from __future__ import annotations

import json
from pathlib import Path

from streamlstm.adapters.devkafka import (
    MAIN_CLASS,
    DevKafka,
    _pid_alive,
    broker_answers,
    cache_root,
)


def _state_path() -> Path:
    return cache_root() / "devkafka/state.json"


def _read_state() -> dict | None:
    try:
        return json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return None


def _is_our_broker(pid: int, data_dir: str) -> bool:
    # The pid in the state file may have been reused by an unrelated process since.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return MAIN_CLASS in cmdline and data_dir in cmdline and _pid_alive(pid)


def _attached() -> DevKafka | None:
    state = _read_state()
    if not state or not _is_our_broker(state["pid"], state["data_dir"]):
        return None
    broker = DevKafka(Path(state["data_dir"]))
    broker.attach(state["pid"])
    return broker


def up(timeout_s: float = 60) -> str:
    """Return the bootstrap of the shared local broker, starting it if none is alive."""
    broker = _attached()
    if broker is not None:
        broker._wait_ready(timeout_s)  # it may still be starting (another `up` in flight)
        return broker.bootstrap
    broker = DevKafka(cache_root() / "devkafka/data")
    bootstrap = broker.start(timeout_s)
    state = {"pid": broker.pid, "bootstrap": bootstrap, "data_dir": str(broker.data_dir)}
    _state_path().write_text(json.dumps(state))
    return bootstrap


def down() -> bool:
    """Stop the shared broker; False when none was running."""
    broker = _attached()
    _state_path().unlink(missing_ok=True)
    if broker is None:
        return False
    broker.stop()
    return True


def status() -> dict:
    state = _read_state() or {}
    broker = _attached()
    running = broker is not None
    return {"running": running, "answers": running and broker_answers(state["bootstrap"]), **state}
