"""The detached local broker shared by CLI invocations (``streamlstm kafka up|down|status``
and ``streamlstm run`` without a configured Kafka): one DevKafka under the cache, found
again through a small state file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamlstm.adapters.devkafka.broker import (
    MAIN_CLASS,
    DevKafka,
    _pid_alive,
    broker_answers,
    resolve_bootstrap,
)
from streamlstm.adapters.devkafka.jars import cache_root
from streamlstm.config import Config


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


def kafka_bootstrap(config: Config, local_dir: Path | None = None) -> tuple[str, Any]:
    """$KAFKA_BOOTSTRAP or ``kafka.bootstrap`` if set; else a local broker (returned to stop)."""

    found = resolve_bootstrap(config.kafka.bootstrap)
    if found:
        return found, None
    if local_dir is None:
        return up(), None  # the shared dev broker of `streamlstm kafka up`
    broker = DevKafka(local_dir)
    return broker.start(), broker
