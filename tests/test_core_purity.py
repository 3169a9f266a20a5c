"""The core never imports Kafka, Ray or Prometheus (DESIGN §2), checked in a clean process."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = [
    "config",
    "records",
    "model",
    "state",
    "calibration",
    "detector",
    "alerts",
    "training",
    "pipeline",
    "checkpoint",
    "datafiles",
    "simulate",
    "evaluate",
    "retrain_select",
    "retrain_replay",
]


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_edge_library(module: str) -> None:
    code = (
        f"import sys, importlib; importlib.import_module('streamlstm.{module}'); "
        "bad = [m for m in ('kafka', 'ray', 'prometheus_client') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""
