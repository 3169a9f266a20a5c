"""A scheduled retrain round that hangs is really stopped: real Kafka topics, real local Ray,
real Ray Train. The schedule's clock is a fake one, so the test decides when the round is
overdue; everything else runs for real."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streamlstm.adapters.ray.retrain_schedule import RetrainSchedule
from streamlstm.adapters.retrain.registry import ModelRegistry
from streamlstm.config import Config
from tests import live_helpers as lh

pytestmark = [pytest.mark.kafka, pytest.mark.ray]

TIMEOUT_S, INTERVAL_S = 3.0, 10.0
# Ray's cluster-wide autoscaling coordinator: started by the first Train run, kept for all.
SINGLETONS = {"_AutoscalingCoordinatorActor"}


def _alive_actors() -> dict[str, str]:
    """Actor id -> class of every live actor, from the GCS actor table (``ray.util.state``
    needs the dashboard, which the test Ray runs without)."""
    import ray

    alive = ray._private.state.actors(actor_state_name="ALIVE")
    return {actor_id: info["ActorClassName"] for actor_id, info in alive.items()}


def _new_actors(before: dict[str, str]) -> list[str]:
    return sorted(name for actor_id, name in _alive_actors().items() if actor_id not in before)


def _free_cpus() -> float:
    import ray

    return ray.available_resources().get("CPU", 0.0)


def _until(check, timeout_s: float, what: str, tick=None) -> float:
    """Seconds until ``check()`` holds (calling ``tick`` between tries), or fail."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        if tick:
            tick()
        time.sleep(0.25)
    return time.monotonic() - started


def _config(cfg: Config, registry: Path, epochs: int) -> Config:
    tree = cfg.model_dump()
    tree["retrain"].update(
        registry=str(registry), interval_s=INTERVAL_S, timeout_s=TIMEOUT_S, min_readings=200
    )
    tree["training"]["epochs"] = epochs
    return Config.model_validate(tree)


@pytest.mark.timeout(240)
def test_a_hung_round_is_stopped_with_its_train_run_and_the_next_round_completes(
    kafka_bootstrap, ray_local, tmp_path: Path
) -> None:
    cfg = lh.live_config(kafka_bootstrap, tmp_path, workers=1)
    lh.setup_topics(cfg)
    readings = lh.records_of(lh.simulated(6, 300, rate=0.0))
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], readings)
    registry = ModelRegistry(tmp_path / "registry")
    hung = _config(cfg, registry.root, epochs=10_000)  # far longer than the test
    now = [0.0]
    schedule = RetrainSchedule(hung, kafka_bootstrap, registry, clock=lambda: now[0])
    slowest = [0.0]

    def poll() -> None:
        started = time.monotonic()
        schedule.poll()
        slowest[0] = max(slowest[0], time.monotonic() - started)

    free, before = _free_cpus(), {**_alive_actors()}
    poll()
    assert not schedule.running  # not due yet
    now[0] = INTERVAL_S
    poll()
    assert schedule.running
    folder = schedule._round.dir  # the round's inputs and scratch
    # Training is under way: its worker holds a CPU, the round's Train actors are up.
    _until(lambda: _free_cpus() <= free - 1, 90, "a Train worker holding a CPU", poll)
    _until(lambda: "RayTrainWorker" in _new_actors(before), 30, "Train actors alive", poll)
    running = _new_actors(before)
    assert "TrainController" in running, running
    assert schedule.outcomes == {} and schedule.running  # the fake clock has not moved

    now[0] += TIMEOUT_S + 0.5
    poll()
    assert schedule.outcomes == {"timeout": 1} and not schedule.running
    gone_s = _until(lambda: set(_new_actors(before)) <= SINGLETONS, 30, "the round's actors gone")
    freed_s = _until(lambda: _free_cpus() >= free, 30, "the Train worker's CPU released")
    print(f"\nactors during the round: {running}")
    print(f"after the kill: actors gone in {gone_s:.1f} s, CPUs released in {freed_s:.1f} s")
    assert registry.entries("vitals") == []  # a killed round leaves no version
    versions = registry.root / "vitals"
    assert not versions.exists() or all(p.name.startswith(".") for p in versions.iterdir())
    assert not folder.exists()
    runs = Path(registry.train_storage())
    killed = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
    assert [name.split("-")[0] for name in killed] == ["scheduled"], killed  # the killed run's

    # The same schedule runs its next round on time; this one is short enough to finish.
    schedule.config = _config(cfg, registry.root, epochs=2)
    poll()
    assert not schedule.running  # due one interval after the last start
    now[0] = INTERVAL_S * 2
    poll()
    assert schedule.running
    took = _until(lambda: not schedule.running, 120, "the next round finishing", poll)
    print(f"the next round took {took:.1f} s; slowest poll {slowest[0] * 1000:.0f} ms")
    assert schedule.outcomes == {"timeout": 1, "promoted": 1}, schedule.outcomes
    # The next round swept the killed run's folder (older than retrain.timeout_s) and
    # removed its own run's after copying the model out.
    assert sorted(p.name for p in runs.iterdir()) == [], list(runs.iterdir())
    assert schedule.last_success_at is not None
    assert [e["status"] for e in registry.entries("vitals")] == ["promoted"]
    assert registry.current("vitals") == registry.entries("vitals")[0]["version"]
    assert slowest[0] < 1.0, slowest  # poll never waits on a round
    assert set(_new_actors(before)) <= SINGLETONS  # a finished round leaves nothing either


@pytest.mark.timeout(120)
def test_a_round_that_fails_is_counted_and_the_schedule_goes_on(ray_local, tmp_path: Path) -> None:
    cfg = lh.live_config("127.0.0.1:1", tmp_path)  # nothing listens there: reading fails
    now = [0.0]
    registry = ModelRegistry(tmp_path / "models")
    schedule = RetrainSchedule(_config(cfg, tmp_path, 2), "127.0.0.1:1", registry, lambda: now[0])
    now[0] = INTERVAL_S
    schedule.poll()
    assert schedule.running
    _until(lambda: not schedule.running, 60, "the round failing", schedule.poll)
    assert schedule.outcomes == {"failed": 1} and schedule.last_success_at is None
    now[0] = INTERVAL_S * 2
    schedule.poll()
    assert schedule.running  # the next round starts on time
