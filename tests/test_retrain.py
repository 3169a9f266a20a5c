"""Retraining through real Ray Train (CPU), the validation gate and the registry, driven the
way a user drives them: ``streamlstm retrain`` and ``streamlstm models``."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from streamlstm.adapters.retrain.registry import ModelRegistry
from streamlstm.simulate.generate import SimulatedData, generate, write_csv
from tests.cli_helpers import run_cli

pytestmark = pytest.mark.ray

CUT = 420  # readings per stream for training; the rest is the recent normal data for the gate
SETTINGS = ["training.epochs=25", "retrain.gate_margin=0.02", "retrain.min_readings=100"]


def _part(data: SimulatedData, cols: slice, values: np.ndarray | None = None) -> SimulatedData:
    return dataclasses.replace(
        data,
        ts=data.ts[:, cols],
        values=(data.values if values is None else values)[:, cols],
        label=data.label[:, cols],
        anomaly_kind=data.anomaly_kind[:, cols],
    )


def _time_shuffled(values: np.ndarray, seed: int) -> np.ndarray:
    """Each stream's features shuffled in time independently: noise with the same values."""
    rng = np.random.default_rng(seed)
    out = values.copy()
    for i in range(out.shape[0]):
        for f in range(out.shape[2]):
            out[i, :, f] = rng.permutation(out[i, :, f])
    return out


def _retrain(registry: Path, train: Path, validate: Path) -> dict:
    sets = [arg for s in SETTINGS for arg in ("--set", s)]
    out = run_cli(
        "retrain",
        "-c",
        "configs/test.yaml",
        "--input",
        str(train),
        "--validate-on",
        str(validate),
        "--registry",
        str(registry),
        *sets,
    ).stdout
    start = [m.start() for m in re.finditer(r"^\{$", out, flags=re.M)][-1]
    return json.loads(out[start:])["vitals"]


def test_retrain_promotes_a_sound_model_and_the_gate_rejects_one_trained_on_noise(
    tmp_path: Path,
) -> None:
    data = generate("vitals", 6, 600, 5, anomaly_rate=0.0)
    train, noise, validate = (tmp_path / n for n in ("train.csv", "noise.csv", "recent.csv"))
    write_csv(_part(data, slice(0, CUT)), train)
    write_csv(_part(data, slice(0, CUT), _time_shuffled(data.values, 1)), noise)
    write_csv(_part(data, slice(CUT, None)), validate)
    registry_dir = tmp_path / "models"

    first = _retrain(registry_dir, train, validate)
    assert first["outcome"] == "promoted", first
    assert first["previous"] is None
    corrupt = _retrain(registry_dir, noise, validate)
    assert corrupt["outcome"] == "rejected", corrupt
    assert corrupt["previous"] == first["version"]
    assert "reconstruction error" in " ".join(corrupt["reasons"])

    registry = ModelRegistry(registry_dir)
    assert registry.current("vitals") == first["version"]  # the running version stays
    kept = registry.entry("vitals", corrupt["version"])
    assert kept["status"] == "rejected" and kept["parent"] == first["version"]
    assert kept["trainer"]["kind"] == "ray-train" and kept["trainer"]["wall_s"] > 0
    validation = kept["validation"]
    assert validation["candidate"]["mean_error"] > validation["current"]["mean_error"]

    listing = run_cli("models", "list", "--registry", str(registry_dir)).stdout
    assert re.search(rf"vitals\s+{first['version']}\s+promoted", listing), listing
    assert re.search(rf"vitals\s+{corrupt['version']}\s+rejected", listing), listing
    shown = run_cli("models", "show", "--registry", str(registry_dir), "vitals", first["version"])
    curve = re.search(r"^loss by epoch: (.*)$", shown.stdout, flags=re.M)
    assert curve and len(curve.group(1).split()) == 25


@pytest.mark.timeout(300)
def test_ray_train_with_two_data_parallel_workers_reports_every_epoch(
    ray_local, tmp_path: Path
) -> None:
    from streamlstm import config as config_mod
    from streamlstm.adapters.retrain.ray_train import train_group
    from streamlstm.datafiles import Series
    from streamlstm.train.checkpoint import load_model
    from tests.cli_helpers import ROOT

    cfg = config_mod.load(
        ROOT / "configs/test.yaml", {"retrain.workers": 2, "training.epochs": 3}, {}
    )
    data = generate("vitals", 4, 300, 2, anomaly_rate=0.0)
    series = [Series(s, data.ts[i], data.values[i]) for i, s in enumerate(data.streams)]
    seen: list[tuple[int, float]] = []
    out = train_group(
        cfg,
        "vitals",
        series,
        tmp_path / "out",
        tmp_path / "ray",
        lambda epoch, loss: seen.append((epoch, loss)),
    )
    assert [e for e, _ in seen] == [0, 1, 2] and len(out.losses) == 3
    assert all(np.isfinite(loss) for loss in out.losses)
    model = load_model(out.model_dir)
    assert model.group == "vitals" and model.version.startswith("vitals-")
    metrics = json.loads((out.model_dir / "metrics.json").read_text())
    assert metrics["train_workers"] == 2 and metrics["train_loss"] == out.losses


@pytest.mark.timeout(300)
def test_killing_a_retrain_mid_training_leaves_no_version_behind(ray_local, tmp_path: Path) -> None:
    """The retrain driver joins this session's Ray and is SIGKILLed after its first epoch:
    Ray cleans up its job, the registry holds no version, and the next retrain works."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    import ray

    from tests.cli_helpers import ROOT

    data = generate("vitals", 6, 600, 5, anomaly_rate=0.0)
    train = tmp_path / "train.csv"
    write_csv(_part(data, slice(0, CUT)), train)
    registry_dir = tmp_path / "models"
    args = [
        sys.executable, "-m", "streamlstm", "retrain", "-c", "configs/test.yaml",
        "--input", str(train), "--registry", str(registry_dir),
        "--set", "training.epochs=200", "--set", "retrain.min_readings=100",
    ]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    proc = subprocess.Popen(
        args, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env
    )
    seen = bytearray()

    def pump() -> None:  # tqdm redraws with \r, so read raw chunks, not lines
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            seen.extend(chunk)

    reader = threading.Thread(target=pump)
    reader.start()
    deadline = time.monotonic() + 120
    while b"loss=" not in seen and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert b"loss=" in seen, seen[-2000:].decode(errors="replace")  # training had started
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(timeout=30)

    registry = ModelRegistry(registry_dir)
    assert registry.current("vitals") is None
    assert registry.entries("vitals") == []
    assert ray.get(ray.remote(lambda: 42).remote(), timeout=60) == 42  # the cluster is fine
    again = run_cli(
        "retrain", "-c", "configs/test.yaml", "--input", str(train),
        "--registry", str(registry_dir), "--set", "retrain.min_readings=100",
    )  # fmt: skip
    assert '"outcome": "promoted"' in again.stdout
