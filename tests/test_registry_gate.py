"""The validation gate (pure core, real trained models) and the model registry (a real
directory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamlstm import config as config_mod
from streamlstm.adapters.retrain.registry import ModelRegistry, RegistryError
from streamlstm.datafiles import Series
from streamlstm.detect.detector import ScoringModel
from streamlstm.simulate.generate import generate
from streamlstm.train.fit import fit
from streamlstm.train.gate import GateStats, decide, gate_stats
from tests.cli_helpers import ROOT
from tests.helpers import tiny_model


def test_decide_promotes_the_first_model_and_only_no_worse_candidates() -> None:
    base = GateStats(1000, 0.50, 2.0)
    assert decide(base, None, 0.05).promote
    assert decide(GateStats(1000, 0.52, 2.0), base, 0.05).promote  # within the margin
    worse = decide(GateStats(1000, 0.60, 2.0), base, 0.05)
    assert not worse.promote and "reconstruction error" in worse.reasons[0]
    noisy = decide(GateStats(1000, 0.50, 9.0), base, 0.05)
    assert not noisy.promote and "alerts on normal data" in noisy.reasons[0]
    assert decide(GateStats(1000, 0.50, 2.9), base, 0.05).promote  # within the slack
    assert not decide(GateStats(0, float("inf"), 0.0), None, 0.05).promote


def _permuted(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each feature shuffled in time: the same values, no temporal or joint structure."""
    out = values.copy()
    for f in range(values.shape[1]):
        out[:, f] = rng.permutation(values[:, f])
    return out


def test_gate_rejects_a_model_trained_on_noise_and_keeps_a_sound_one() -> None:
    cfg = config_mod.load(
        ROOT / "configs/test.yaml", {"training.epochs": 25, "retrain.gate_margin": 0.02}, {}
    )
    group = cfg.groups[0]
    data = generate("vitals", 6, 600, 5, anomaly_rate=0.0)
    cut = 420
    train = [Series(s, data.ts[i][:cut], data.values[i][:cut]) for i, s in enumerate(data.streams)]
    held = [Series(s, data.ts[i][cut:], data.values[i][cut:]) for i, s in enumerate(data.streams)]
    rng = np.random.default_rng(0)
    noise = [Series(s.stream, s.ts, _permuted(s.values, rng)) for s in train]

    def trained(series: list[Series], version: str) -> ScoringModel:
        result = fit(series, group.features, group.model, cfg.training, cfg.detector)
        return ScoringModel(group.name, version, group.features, result.net, result.prior)

    current = gate_stats(trained(train, "v1"), held, cfg.detector, cfg.alerts)
    twin = gate_stats(trained(train[::-1], "v2"), held, cfg.detector, cfg.alerts)
    corrupt = gate_stats(trained(noise, "v3"), held, cfg.detector, cfg.alerts)
    assert current.readings == twin.readings == corrupt.readings > 0
    assert decide(twin, current, cfg.retrain.gate_margin).promote
    rejected = decide(corrupt, current, cfg.retrain.gate_margin)
    assert not rejected.promote, rejected
    assert corrupt.mean_error > current.mean_error


def registry_root(tmp_path: Path, kind: str) -> str | Path:
    """A local directory, or the same place as a pyarrow.fs URI (the object-store path)."""
    return tmp_path if kind == "local" else f"file://{tmp_path}"


@pytest.mark.parametrize("kind", ["local", "pyarrow-uri"])
def test_registry_keeps_every_version_with_status_and_rolls_back(tmp_path: Path, kind) -> None:
    registry = ModelRegistry(registry_root(tmp_path / "models", kind))
    assert registry.groups() == [] and registry.current("g") is None
    first = registry.add(tiny_model(0, "g-aaaa"), {"train_loss": [1.0, 0.5]}, {"source": "f1"})
    assert first["status"] == "candidate" and first["parent"] is None
    registry.promote("g", "g-aaaa")
    second = registry.add(tiny_model(1, "g-bbbb"), {"train_loss": [0.9]}, {"source": "f2"})
    assert second["parent"] == "g-aaaa"
    registry.set_status("g", "g-bbbb", "rejected", note="worse")
    registry.add(tiny_model(2, "g-cccc"), {}, {})
    registry.promote("g", "g-cccc")
    statuses = {e["version"]: e["status"] for e in registry.entries("g")}
    assert statuses == {"g-aaaa": "retired", "g-bbbb": "rejected", "g-cccc": "promoted"}
    assert registry.current("g") == "g-cccc"
    assert registry.load("g").version == "g-cccc"
    assert registry.rollback("g")["version"] == "g-aaaa"
    assert registry.current("g") == "g-aaaa"
    assert registry.entry("g", "g-cccc")["status"] == "retired"
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        registry.rollback("g")
    with pytest.raises(RegistryError, match="no version"):
        registry.promote("g", "g-zzzz")
    files = registry.current_files(["g"])["g"]
    assert {"model.json", "weights.safetensors", "entry.json"} <= set(files)
    assert registry.version_json("g", "g-bbbb", "metrics.json") == {"train_loss": [0.9]}


def test_a_half_written_version_is_never_listed_and_is_swept(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    leftover = tmp_path / "g" / ".incoming-dead"
    leftover.mkdir(parents=True)
    (leftover / "model.json").write_text("{")  # a run killed mid-write
    assert registry.entries("g") == [] and registry.groups() == ["g"]
    registry.add(tiny_model(0, "g-aaaa"), {}, {})
    assert not leftover.exists()
    assert [e["version"] for e in registry.entries("g")] == ["g-aaaa"]


def test_on_a_pyarrow_filesystem_a_version_without_its_entry_is_not_there(tmp_path: Path) -> None:
    """Where a directory rename is a copy, entry.json is put last: a writer killed before it
    leaves a version that readers never see and the next add sweeps."""
    registry = ModelRegistry(f"file://{tmp_path}")
    half = tmp_path / "g" / "g-dead"
    half.mkdir(parents=True)
    (half / "model.json").write_text("{")
    assert registry.entries("g") == []
    registry.add(tiny_model(0, "g-aaaa"), {}, {})
    assert not half.exists()
    assert [e["version"] for e in registry.entries("g")] == ["g-aaaa"]


@pytest.mark.parametrize("kind", ["local", "pyarrow-uri"])
def test_a_rollback_pins_a_forced_promotion_is_recorded_and_no_stale_retirement_stays(
    tmp_path: Path, kind
) -> None:
    registry = ModelRegistry(registry_root(tmp_path / "models", kind))
    for seed, version in enumerate(("g-aaaa", "g-bbbb", "g-cccc")):
        registry.add(tiny_model(seed, version), {}, {})
    registry.promote("g", "g-aaaa", "ops")
    registry.promote("g", "g-bbbb", "ops")
    back = registry.rollback("g", "alice")
    assert back["version"] == "g-aaaa" and back["status"] == "promoted"
    assert "retired_at" not in back and "rolled_back" not in back  # it was retired before
    assert [t["status"] for t in back["transitions"]] == ["promoted", "retired", "promoted"]
    assert back["transitions"][-1]["by"] == "alice"
    pin = registry.control.pinned("g")
    assert pin is not None and pin["version"] == "g-aaaa" and pin["by"] == "alice"
    assert "g-bbbb" in pin["reason"]

    registry.set_status("g", "g-cccc", "rejected", validation={"reasons": ["worse"]})
    with pytest.raises(RegistryError, match="--force"):
        registry.promote("g", "g-cccc", "bob")
    assert registry.current("g") == "g-aaaa" and registry.control.pinned("g") is not None
    forced = registry.promote("g", "g-cccc", "bob", force=True)
    assert forced["forced"] is True and forced["forced_over"] == ["worse"]
    assert forced["promoted_by"] == "bob" and forced["promoted_at"] > 0
    assert registry.current("g") == "g-cccc"
    assert registry.control.pinned("g") is None  # an explicit promotion releases the pin
    assert registry.control.unpin("g") is None
    registry.rollback("g", "dave")
    again = registry.promote("g", "g-cccc", "erin")  # no longer rejected: no force needed
    assert "forced" not in again and "retired_at" not in again
    assert again["promoted_by"] == "erin"
    steps = [(t["status"], t.get("forced", False)) for t in again["transitions"]]
    assert steps == [
        ("rejected", False),
        ("promoted", True),
        ("retired", False),
        ("promoted", False),
    ]

    assert registry.control.paused() is None
    registry.control.pause("carol", "maintenance")
    assert registry.control.paused()["by"] == "carol"
    assert registry.groups() == ["g"]  # the schedule's file is not a group
    assert registry.control.resume()["reason"] == "maintenance"
    assert registry.control.paused() is None


def test_train_run_folders_of_killed_scheduled_rounds_are_swept(tmp_path: Path) -> None:
    import time

    registry = ModelRegistry(tmp_path)
    runs = Path(registry.train_storage())
    old, young = int(time.time()) - 4000, int(time.time())
    for name in (f"scheduled-g-{old}-aaaa", f"scheduled-g-{young}-bbbb", f"train-g-{old}-cccc"):
        (runs / name / "checkpoint").mkdir(parents=True)
        (runs / name / "checkpoint" / "weights").write_bytes(b"x")
    assert registry.sweep_train_runs("scheduled", 1800.0) == [f"scheduled-g-{old}-aaaa"]
    assert sorted(p.name for p in runs.iterdir()) == [
        f"scheduled-g-{young}-bbbb",
        f"train-g-{old}-cccc",
    ]


def test_streamlstm_retrain_first_sweeps_the_folders_of_killed_retrains(tmp_path: Path) -> None:
    """The command's own runs (``train-``) older than retrain.timeout_s go, with a log line;
    a younger one (another retrain may be running it) and the schedule's stay. The input is
    missing, so the command stops right after the sweep, before Ray."""
    import time

    from tests.cli_helpers import run_cli

    registry = ModelRegistry(tmp_path / "models")
    runs = Path(registry.train_storage())
    old, young = int(time.time()) - 4000, int(time.time())
    names = (f"train-g-{old}-aaaa", f"train-g-{young}-bbbb", f"scheduled-g-{old}-cccc")
    for name in names:
        (runs / name / "checkpoint").mkdir(parents=True)
        (runs / name / "checkpoint" / "weights").write_bytes(b"x")
    res = run_cli(
        "retrain", "-c", "configs/test.yaml", "--registry", str(tmp_path / "models"),
        "--input", str(tmp_path / "absent.csv"), "--set", "retrain.timeout_s=1800",
        check=False,
    )  # fmt: skip
    assert res.returncode == 2 and "absent.csv: no such file" in res.stderr, res.stderr
    assert f"removed the Train run folders of killed rounds: ['{names[0]}']" in res.stderr
    assert sorted(p.name for p in runs.iterdir()) == sorted(names[1:])
