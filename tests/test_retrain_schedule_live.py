"""Scheduled rounds an operator can trust, on real Kafka topics, real Ray and real Ray Train
(the schedule's clock is a fake one so the test decides when a round is due): a round with
no new data is skipped and does not count as a success; a rollback pins the group, so the
next passing candidate is held; a paused schedule starts nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from streamlstm.adapters.ray.retrain_schedule import RetrainSchedule
from streamlstm.adapters.retrain.registry import ModelRegistry
from streamlstm.config import Config
from tests import live_helpers as lh
from tests.test_retrain_timeout import _until

pytestmark = [pytest.mark.kafka, pytest.mark.ray]

INTERVAL_S = 10.0


def _config(cfg: Config, registry: Path) -> Config:
    tree = cfg.model_dump()
    tree["retrain"].update(
        registry=str(registry),
        interval_s=INTERVAL_S,
        timeout_s=600.0,
        min_readings=200,
        gate_margin=10.0,  # any sane candidate passes: the test is about what happens next
    )
    tree["training"]["epochs"] = 2
    return Config.model_validate(tree)


@pytest.mark.timeout(600)
def test_no_new_data_is_skipped_and_a_rollback_holds_the_next_candidate(
    kafka_bootstrap, ray_local, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="streamlstm.retrain")
    cfg = lh.live_config(kafka_bootstrap, tmp_path, workers=1)
    lh.setup_topics(cfg)
    topic = cfg.kafka.input_topics[0]
    records = lh.records_of(lh.simulated(6, 400, rate=0.0))  # 6 streams, step by step
    lh.produce(kafka_bootstrap, topic, records[: 6 * 250])
    registry = ModelRegistry(tmp_path / "registry")
    now = [0.0]
    schedule = RetrainSchedule(
        _config(cfg, registry.root), kafka_bootstrap, registry, lambda: now[0]
    )

    def round_(outcomes: dict[str, int]) -> None:
        now[0] += INTERVAL_S
        schedule.poll()
        assert schedule.running
        _until(lambda: not schedule.running, 300, "the round finishing", schedule.poll)
        assert schedule.outcomes == outcomes, (schedule.outcomes, caplog.text[-3000:])

    round_({"promoted": 1})
    first, promoted_at = registry.current("vitals"), schedule.last_success_at
    assert first is not None and promoted_at is not None

    round_({"promoted": 1, "skipped": 1})  # nothing new on the topic
    assert schedule.last_success_at == promoted_at  # a skipped round is no success
    assert [e["version"] for e in registry.entries("vitals")] == [first]
    assert "retrain vitals: skipped: no new data" in caplog.text

    lh.produce(kafka_bootstrap, topic, records[6 * 250 : 6 * 325])
    round_({"promoted": 2, "skipped": 1})
    second = registry.current("vitals")
    assert second != first

    registry.rollback("vitals", "test operator")  # as `streamlstm models rollback vitals`
    lh.produce(kafka_bootstrap, topic, records[6 * 325 :])
    round_({"promoted": 2, "skipped": 1, "held": 1})
    assert registry.current("vitals") == first  # the rollback stands
    held = [e for e in registry.entries("vitals") if e["version"] not in (first, second)]
    assert len(held) == 1 and held[0]["status"] == "candidate"
    assert held[0]["held_by_pin"]["version"] == first
    assert f"pinned to {first}" in caplog.text

    registry.control.pause("test operator", "test")
    now[0] += INTERVAL_S
    schedule.poll()
    assert not schedule.running and schedule.paused
    assert "scheduled rounds paused by test operator" in caplog.text
