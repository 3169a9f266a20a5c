"""``streamlstm models`` as an operator drives it, on a real registry directory: a rollback
pins the group so a passing scheduled candidate is held, not promoted; ``unpin`` releases it;
``pause`` stops the schedule; a gate-rejected version needs ``--force``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from streamlstm.adapters.ray.retrain_schedule import RetrainSchedule
from streamlstm.adapters.ray.serving_report import serving_record, worker_models
from streamlstm.adapters.retrain.registry import ModelRegistry
from streamlstm.adapters.retrain.round import record_candidate
from streamlstm.config import Config
from streamlstm.datafiles import FileData, to_series
from streamlstm.records import Reading
from tests.cli_helpers import run_cli
from tests.helpers import tiny_config, tiny_model


def _models(registry: Path, *args: str, check: bool = True):
    return run_cli("models", args[0], "--registry", str(registry), *args[1:], check=check)


def _held_out() -> list:
    rows = [
        Reading(s, 1_767_225_600.0 + 60 * k, (70.0 + k % 3, 97.0, 16.0 + k % 2), "g", "t", 0, 0)
        for k in range(40)
        for s in ("s1", "s2")
    ]
    return to_series(FileData(rows))


def test_rollback_pins_until_unpin_and_a_rejected_version_needs_force(tmp_path: Path) -> None:
    root = tmp_path / "models"
    registry = ModelRegistry(root)
    for seed, version in enumerate(("g-aaaa", "g-bbbb")):
        registry.add(tiny_model(seed, version), {}, {})
        registry.promote("g", version)
    registry.add(tiny_model(2, "g-cccc"), {}, {"validation": {"reasons": ["error 0.9 > 0.5"]}})
    registry.set_status("g", "g-cccc", "rejected")

    rolled = _models(root, "rollback", "g").stdout
    assert "rolled back to g-aaaa, pinned there" in rolled
    listing = _models(root, "list").stdout
    assert re.search(r"^g: pinned to g-aaaa by \S+ at 20\d\d-", listing, flags=re.M), listing

    # A scheduled round's candidate that passes the gate is held while the pin stands.
    cfg = tiny_config().model_dump()
    cfg["retrain"]["gate_margin"] = 10.0
    cfg = Config.model_validate(cfg)
    held = record_candidate(cfg, tiny_model(3, "g-dddd"), {}, {}, _held_out(), registry, "test")
    assert held["outcome"] == "held" and registry.current("g") == "g-aaaa"

    refused = _models(root, "promote", "g", "g-cccc", check=False)
    assert refused.returncode == 2 and "--force" in refused.stdout
    assert "error 0.9 > 0.5" in refused.stdout
    forced = _models(root, "promote", "g", "g-cccc", "--force").stdout
    assert "g-cccc promoted (forced over the gate's rejection)" in forced
    shown = json.loads(_models(root, "show", "g", "g-cccc").stdout.split("\nloss by epoch")[0])
    assert shown["forced"] is True and shown["promoted_by"]
    assert re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", shown["created_at"])
    assert all(isinstance(t["at"], str) for t in shown["transitions"])
    assert registry.control.pinned("g") is None  # the explicit promote released the pin

    _models(root, "rollback", "g")
    assert "unpinned (was g-aaaa)" in _models(root, "unpin", "g").stdout
    promoted = record_candidate(cfg, tiny_model(4, "g-eeee"), {}, {}, _held_out(), registry, "t")
    assert promoted["outcome"] == "promoted" and registry.current("g") == "g-eeee"
    assert "g: pinned to g-eeee" in _models(root, "pin", "g", "--reason", "audit").stdout
    assert registry.control.pinned("g")["reason"] == "audit"
    nothing = _models(tmp_path / "empty", "pin", "g", check=False)
    assert nothing.returncode == 2 and "no promoted version to pin" in nothing.stdout


def test_pause_stops_scheduled_rounds_until_resume(tmp_path: Path) -> None:
    root = tmp_path / "models"
    assert "paused" in _models(root, "pause", "--reason", "recalibration").stdout
    assert "scheduled retraining paused by" in _models(root, "list").stdout
    cfg = tiny_config()
    now = [0.0]
    schedule = RetrainSchedule(cfg, "unused:9092", ModelRegistry(root), clock=lambda: now[0])
    now[0] = cfg.retrain.interval_s
    schedule.poll()
    assert schedule.paused and not schedule.running
    assert "resumed" in _models(root, "resume").stdout
    assert ModelRegistry(root).control.paused() is None
    assert "not paused" in _models(root, "resume").stdout


def test_list_shows_what_each_worker_serves_and_warms_in_shadow(tmp_path: Path) -> None:
    record = serving_record(
        [{"g": "g-aaaa"}, {"g": "g-bbbb"}, None], targets={"g": "g-bbbb", "h": None}
    )
    assert [w["staged"] for w in record["workers"]] == [{"g": "g-bbbb"}, {}, {}]
    assert record["workers"][2]["serves"] is None
    root = tmp_path / "models"
    registry = ModelRegistry(root)
    registry.add(tiny_model(0, "g-aaaa"), {}, {})
    registry.control.report_serving("icu-scoring", record)
    listing = _models(root, "list").stdout
    assert "served by icu-scoring (supervisor pid" in listing, listing
    assert "worker 0: g g-aaaa; warming g g-bbbb in shadow" in listing
    assert "worker 1: g g-bbbb\n" in listing
    assert "worker 2: did not answer" in listing


class _Answers:
    """A Ray actor in a worker's place: ``models`` answers, fails, or never returns."""

    def __init__(self, how: str) -> None:
        self.how = how

    def models(self) -> dict[str, str]:
        if self.how == "fails":
            raise RuntimeError("no worker loop yet")
        if self.how == "hangs":
            import time

            time.sleep(60)
        return {"g": "g-aaaa"}


@pytest.mark.ray
def test_worker_models_waits_once_and_a_silent_or_failing_worker_is_none(ray_local) -> None:
    import ray

    actor = ray.remote(num_cpus=0)(_Answers)
    actors = [actor.remote(how) for how in ("answers", "fails", "hangs")]
    try:
        # Started first (a process each), so the one wait below measures answers only.
        ray.wait([a.models.remote() for a in actors[:2]], num_returns=2, timeout=120)
        assert worker_models(actors, timeout_s=5.0) == [{"g": "g-aaaa"}, None, None]
    finally:
        for a in actors:
            ray.kill(a)
