"""Chaos-test support beyond the oracle: the report table (``make chaos`` ends with it), and
the process-level pieces of the supervisor-kill case (run ``streamlstm run``, kill its whole
process tree, read the final state and outcome counts back from its snapshots)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streamlstm.config import Config
from tests import chaos_oracle as co
from tests import live_helpers as lh


@pytest.fixture(scope="module")
def scenario():
    """The oracle's scenario, shared by every case of a chaos module."""
    return co.build_scenario()


@pytest.fixture(scope="module")
def model(kafka_bootstrap, scenario, tmp_path_factory):
    """A tiny model trained on the scenario, once per chaos module."""
    cfg = co.chaos_config(kafka_bootstrap, tmp_path_factory.mktemp("m"))
    return lh.train_tiny(cfg, scenario[1], tmp_path_factory.mktemp("model"))


RECOVERY: dict[str, float | None] = {}  # test name -> seconds, for the chaos report
NOTES: dict[str, list[str]] = {}  # test name -> remarks, for the chaos report


def report_table(rows: list[tuple[str, str, float]], root: Path) -> str:
    """The chaos report (case, result, recovery time), written to runs/chaos-report.md."""
    lines = [
        "| case | result | recovery (s) | test time (s) | notes |",
        "|---|---|---|---|---|",
    ]
    for name, outcome, duration in rows:
        rec = RECOVERY.get(name)
        shown = f"{rec:.1f}" if rec is not None else "—"
        notes = "; ".join(NOTES.get(name, []))
        lines.append(f"| `{name}` | {outcome} | {shown} | {duration:.1f} | {notes} |")
    text = "\n".join(lines) + "\n"
    out = root / "runs" / "chaos-report.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        f"# Chaos report ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n{text}"
    )
    return text


def state_from_snapshots(cfg: Config, files: dict) -> dict:
    """``capture_state`` for a run in another process: its newest snapshots, restored here."""
    import torch

    from streamlstm.adapters.ops.storage import SnapshotStore
    from streamlstm.adapters.ray.workers import _load_models
    from streamlstm.detect.state import table_rows
    from streamlstm.stream.engine import Engine
    from streamlstm.stream.ledger import LEDGER_BLOB, Ledger, total

    engine = Engine.build(cfg, _load_models(files), torch.device("cpu"))
    store = SnapshotStore(cfg.checkpoint.dir, cfg.checkpoint.keep)
    offsets, ledgers = {}, []
    for topic, part in co.input_tps(cfg):
        blobs, offsets[part] = store.load((topic, part))
        ledgers.append(Ledger.from_blob(blobs.pop(LEDGER_BLOB)))
        for group, blob in blobs.items():
            engine.tables[group].restore(blob)
    rows = {}
    for table in engine.tables.values():
        rows.update({s: r for s, r in table_rows(table).items() if s != co.PROBE_STREAM})
    digests, rounded = {}, {}
    for stream, cols in rows.items():
        digests[stream], rounded[stream] = co.digest(cols)
    return {
        "digests": digests,
        "rows": rounded,
        "last_offsets": {s: int(r["last_offset"]) for s, r in rows.items()},
        "partition_offsets": offsets,
        "counted": co.counted([total(ledgers).summary()]),
    }


def run_command(cfg, model_dir: Path, tmp_path: Path):
    """`streamlstm run` in its own session (its local Ray lives and dies with it)."""
    import os
    import subprocess
    import sys

    import yaml

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    args = ["run", "-c", str(tmp_path / "cfg.yaml"), "--model", str(model_dir)]
    return subprocess.Popen(
        [sys.executable, "-m", "streamlstm", *args],
        cwd=lh.ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RAY_ADDRESS": ""},
        start_new_session=True,
    )


def wait_committed(cfg, proc, timeout_s: float = 120.0) -> float:
    """Until the group's committed offsets reach the end of every partition; returns when."""
    from streamlstm.adapters.kafka.client import KafkaSource

    source = KafkaSource(cfg.kafka.bootstrap, cfg.kafka.group_id)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"streamlstm run exited with {proc.returncode}"
            ends = source.end_offsets(co.input_tps(cfg))
            if all((source.committed(*tp) or 0) >= end for tp, end in ends.items()):
                return time.time()
            time.sleep(0.3)
    finally:
        source.close()
    raise AssertionError(f"offsets not committed to the end within {timeout_s} s")


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once: the machine running it died.

    Not killpg: Ray starts its raylet and GCS in sessions of their own, so a process-group
    kill leaves the worker actors running on as orphans (still consuming and committing).
    """
    import contextlib
    import os
    import signal

    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    for victim in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


@contextmanager
def stop_on_failure(sup, then: Callable[[], object] | None = None) -> Iterator[None]:
    """Run a chaos case's body: if it fails, stop the supervisor (and its Ray actors) before
    the error propagates, so the next case starts clean; ``then`` runs whatever happened."""
    try:
        yield
    except BaseException:
        sup.stop()
        raise
    finally:
        if then is not None:
            then()
