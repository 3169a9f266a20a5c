"""Run the ``streamlstm`` CLI as a user would: a subprocess from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, check: bool = True, timeout_s: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "streamlstm", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout_s,
    )
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res
