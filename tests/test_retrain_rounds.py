"""What a retrain round decides (pure core, plain values), and how a round records it in a
real registry directory: skipped when nothing changed, held when the group is pinned."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamlstm.adapters.ray.retrain_schedule import RetrainSchedule, describe
from streamlstm.adapters.retrain.registry import ModelRegistry
from streamlstm.adapters.retrain.round import (
    RetrainData,
    record_candidate,
    retrain_group,
    training_settings,
)
from streamlstm.config import Config
from streamlstm.datafiles import FileData, Series, to_series
from streamlstm.records import Reading
from streamlstm.train.gate import GateDecision, GateStats
from streamlstm.train.rounds import (
    carry_out,
    skip_before_training,
    skip_nothing_newer,
    skip_reproduced,
    stale_runs,
    training_digest,
)
from streamlstm.train.select import HOLDOUT, split_held_out
from tests.helpers import tiny_config, tiny_model

PASS = GateDecision(True, ["no worse than the current version"], GateStats(100, 0.5, 0.0))
FAIL = GateDecision(False, ["reconstruction error 0.9 > 0.5"], GateStats(100, 0.9, 0.0))


def _series(shift: float = 0.0) -> list[Series]:
    ts = np.arange(5, dtype=np.float64) * 60.0
    return [
        Series("b", ts, np.ones((5, 3)) + shift),
        Series("a", ts, np.zeros((5, 3))),
    ]


def test_the_digest_changes_with_any_reading_or_setting_and_not_with_stream_order() -> None:
    base = training_digest(_series(), {"epochs": 5})
    assert training_digest(_series()[::-1], {"epochs": 5}) == base
    assert training_digest(_series(0.001), {"epochs": 5}) != base
    assert training_digest(_series(), {"epochs": 6}) != base
    longer = [*_series(), Series("c", np.array([0.0]), np.zeros((1, 3)))]
    assert training_digest(longer, {"epochs": 5}) != base


def test_a_round_on_data_already_trained_on_is_skipped_before_training() -> None:
    digest = training_digest(_series(), {})
    entries = [
        {"version": "g-1", "data_digest": "other"},
        {"version": "g-2", "data_digest": digest},
    ]
    skipped = skip_before_training(digest, entries)
    assert skipped is not None and skipped.outcome == "skipped"
    assert "g-2" in skipped.reasons[0]
    assert skip_before_training(digest, entries[:1]) is None
    assert skip_before_training(digest, [{"version": "g-0"}]) is None  # entries from before


def test_a_scheduled_round_with_nothing_newer_than_the_current_version_is_skipped() -> None:
    current = {"version": "g-1", "newest_reading_at": 1000.0}
    same = skip_nothing_newer(1000.0, current)
    assert same is not None and same.outcome == "skipped" and "g-1" in same.reasons[0]
    assert skip_nothing_newer(990.0, current) is not None  # old readings only: still nothing
    assert skip_nothing_newer(1000.5, current) is None
    assert skip_nothing_newer(1000.0, {"version": "g-0"}) is None  # an entry from before
    assert skip_nothing_newer(1000.0, None) is None


def test_a_candidate_the_registry_already_holds_is_skipped_not_promoted() -> None:
    same = skip_reproduced("g-1", "promoted", current="g-1")
    assert same is not None and same.outcome == "skipped" and not same.promote
    assert "the current version" in same.reasons[0]
    retired = skip_reproduced("g-1", "retired", current="g-2")
    assert retired is not None and "already retired" in retired.reasons[0]
    assert skip_reproduced("g-3", None, current="g-2") is None


def test_a_pin_holds_a_candidate_that_passes_the_gate_and_not_one_that_fails() -> None:
    assert carry_out(PASS, None).outcome == "promoted"
    held = carry_out(PASS, "g-1")
    assert held.outcome == "held" and not held.promote
    assert "pinned to g-1" in held.reasons[-1]
    rejected = carry_out(FAIL, "g-1")
    assert rejected.outcome == "rejected" and rejected.reasons == FAIL.reasons
    assert carry_out(FAIL, None).outcome == "rejected"


def test_stale_runs_are_the_prefixs_runs_older_than_the_longest_round() -> None:
    names = [
        "scheduled-vitals-1000-aaaa",  # started 900 s before now: stale at 600
        "scheduled-vitals-1500-bbbb",  # 400 s: may still run
        "scheduled-icu-beds-1000-cccc",  # a group name with a dash
        "train-vitals-1000-dddd",  # a manual run: not the schedule's to sweep
        "scheduled-odd",
        "scheduled-vitals-x-eeee",
    ]
    assert stale_runs(names, "scheduled", now=1900.0, max_age_s=600.0) == [
        "scheduled-icu-beds-1000-cccc",
        "scheduled-vitals-1000-aaaa",
    ]
    assert stale_runs(names, "scheduled", now=1900.0, max_age_s=1000.0) == []


def test_the_schedule_counts_outcomes_and_only_a_promotion_is_a_success(tmp_path: Path) -> None:
    schedule = RetrainSchedule(tiny_config(), "unused:9092", ModelRegistry(tmp_path))
    schedule.record({"g": {"outcome": "skipped", "reasons": ["no new data"]}})
    schedule.record({"g": {"outcome": "held", "version": "g-2", "reasons": ["pinned"]}})
    assert schedule.outcomes == {"skipped": 1, "held": 1}
    assert schedule.last_success_at is None
    schedule.record({"g": {"outcome": "promoted", "version": "g-3"}})
    assert schedule.last_success_at is not None


def test_the_run_log_line_carries_the_version_and_the_gates_reasons() -> None:
    line = describe(
        {
            "outcome": "rejected",
            "version": "g-2",
            "previous": "g-1",
            "reasons": ["reconstruction error 0.9 > 0.5", "alerts on normal data 3/10k > 1/10k"],
        }
    )
    assert line == (
        "rejected g-2 (current g-1): reconstruction error 0.9 > 0.5; "
        "alerts on normal data 3/10k > 1/10k"
    )
    assert describe({"outcome": "failed", "error": "no CPU"}) == "failed: no CPU"


def test_a_paused_schedule_starts_no_round(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.control.pause("ops", "maintenance")
    now = [0.0]
    cfg = tiny_config()
    schedule = RetrainSchedule(cfg, "unused:9092", registry, clock=lambda: now[0])
    now[0] = cfg.retrain.interval_s * 3
    schedule.poll()  # due: a round would start (and need Ray) were it not paused
    assert not schedule.running and schedule.paused
    assert schedule.outcomes == {}


def test_the_paused_gauge_follows_pause_and_resume_between_rounds(tmp_path: Path) -> None:
    """``models pause`` shows on /metrics within PAUSE_READ_EVERY_S, not only once the next
    round is due (an hour by default), and ``models resume`` clears it."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from streamlstm.adapters.ops.prometheus import MetricsHub
    from streamlstm.adapters.ray.retrain_schedule import PAUSE_READ_EVERY_S

    registry = ModelRegistry(tmp_path)
    now = [0.0]
    cfg = tiny_config()
    schedule = RetrainSchedule(cfg, "unused:9092", registry, clock=lambda: now[0])
    hub = MetricsHub()
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(hub)

    def paused_series() -> dict[str, float]:
        hub.set_retrain(True, schedule.outcomes, None, schedule.paused_groups())
        text = generate_latest(scrape).decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return {s.labels["group"]: s.value for s in families["streamlstm_retrain_paused"].samples}

    schedule.poll()
    groups = [g.name for g in cfg.groups]
    assert paused_series() == dict.fromkeys(groups, 0.0)
    registry.control.pause("ops", "sensor recalibration")
    now[0] = PAUSE_READ_EVERY_S
    schedule.poll()
    assert now[0] < cfg.retrain.interval_s  # no round due: read between rounds
    assert paused_series() == dict.fromkeys(groups, 1.0)
    registry.control.resume()
    now[0] += PAUSE_READ_EVERY_S / 2
    schedule.poll()
    assert paused_series() == dict.fromkeys(groups, 1.0)  # not read again yet
    now[0] += PAUSE_READ_EVERY_S / 2
    schedule.poll()
    assert paused_series() == dict.fromkeys(groups, 0.0)
    assert not schedule.running and schedule.outcomes == {}


def test_the_pinned_gauge_follows_pin_rollback_unpin_and_promote(tmp_path: Path) -> None:
    """``streamlstm_model_pinned{group}`` is fed as the paused gauge is: read from the
    registry every PAUSE_READ_EVERY_S between rounds, one series per configured group."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from streamlstm.adapters.ops.prometheus import MetricsHub
    from streamlstm.adapters.ray.retrain_schedule import PAUSE_READ_EVERY_S

    tree = tiny_config().model_dump()
    tree["groups"].append({**tree["groups"][0], "name": "h"})  # never pinned here
    cfg = Config.model_validate(tree)
    registry = ModelRegistry(tmp_path)
    for seed, version in enumerate(("g-aaaa", "g-bbbb")):
        registry.add(tiny_model(seed, version), {}, {})
        registry.promote("g", version, "setup")
    now = [0.0]
    schedule = RetrainSchedule(cfg, "unused:9092", registry, clock=lambda: now[0])
    hub = MetricsHub()
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(hub)

    def pinned_after_a_read() -> dict[str, float]:
        now[0] += PAUSE_READ_EVERY_S
        schedule.poll()
        hub.set_retrain(True, {}, None, schedule.paused_groups(), schedule.pinned_groups())
        text = generate_latest(scrape).decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return {s.labels["group"]: s.value for s in families["streamlstm_model_pinned"].samples}

    assert pinned_after_a_read() == {"g": 0.0, "h": 0.0}
    registry.rollback("g", "ops")
    assert pinned_after_a_read() == {"g": 1.0, "h": 0.0}
    registry.control.unpin("g")
    assert pinned_after_a_read() == {"g": 0.0, "h": 0.0}
    registry.pin("g", "ops", "audit")
    assert pinned_after_a_read() == {"g": 1.0, "h": 0.0}
    registry.promote("g", "g-bbbb", "ops")  # an operator's promote releases the pin
    assert pinned_after_a_read() == {"g": 0.0, "h": 0.0}
    assert now[0] < cfg.retrain.interval_s and not schedule.running  # read between rounds


def _readings(n: int, group: str = "g") -> list[Reading]:
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        for stream in ("s1", "s2"):
            values = (70 + rng.normal(0, 2), 97 + rng.normal(0, 0.5), 16 + rng.normal(0, 1))
            rows.append(Reading(stream, 1_767_225_600.0 + 60 * k, values, group))
    return [
        Reading(r.stream, r.ts, r.values, r.group, "t", 0, i)
        for i, r in enumerate(sorted(rows, key=lambda r: (r.ts, r.stream)))
    ]


def _config(**retrain) -> Config:
    tree = tiny_config().model_dump()
    tree["retrain"].update(retrain)
    return Config.model_validate(tree)


def _digest(cfg: Config, data: FileData) -> str:
    train_idx, _ = split_held_out(data, "g", HOLDOUT)
    return training_digest(to_series(data, train_idx), training_settings(cfg, "g"))


def test_a_round_with_no_new_data_is_skipped_without_training(tmp_path: Path) -> None:
    """A version trained on the same readings with the same settings is in the registry:
    the round returns ``skipped`` before Ray Train is touched (no Ray runs in this test)."""
    cfg = _config(min_readings=10)
    data = FileData(_readings(60))
    registry = ModelRegistry(tmp_path)
    registry.add(tiny_model(0, "g-aaaa"), {}, {"data_digest": _digest(cfg, data)})
    registry.promote("g", "g-aaaa")
    again = retrain_group(cfg, "g", RetrainData(data, "test"), registry, progress=False)
    assert again["outcome"] == "skipped", again
    assert "no new data: g-aaaa" in again["reasons"][0]
    assert registry.current("g") == "g-aaaa" and len(registry.entries("g")) == 1
    # One more reading per stream, or another setting: new data, so the round would train.
    assert _digest(cfg, FileData(_readings(61))) != _digest(cfg, data)
    assert _digest(_config(min_readings=10, workers=2), data) != _digest(cfg, data)


def test_a_scheduled_round_skips_when_the_window_only_lost_old_readings(tmp_path: Path) -> None:
    """The look-back window moved on and no reading arrived: the data differs (fewer old
    readings) but nothing is newer than what the current version saw."""
    cfg = _config(min_readings=10)
    data = FileData(_readings(60))
    registry = ModelRegistry(tmp_path)
    newest = max(r.ts for r in data.readings)
    registry.add(tiny_model(0, "g-aaaa"), {}, {"newest_reading_at": newest})
    registry.promote("g", "g-aaaa")
    shrunk = FileData([r for r in data.readings if r.ts > data.readings[0].ts])
    inputs = RetrainData(shrunk, "kafka", only_newer=True)
    skipped = retrain_group(cfg, "g", inputs, registry, progress=False)
    assert skipped["outcome"] == "skipped", skipped
    assert "no newer than what g-aaaa" in skipped["reasons"][0]


def _held() -> list[Series]:
    return to_series(FileData(_readings(40)))


def test_recording_a_candidate_skips_a_known_one_holds_for_a_pin_and_promotes_otherwise(
    tmp_path: Path,
) -> None:
    cfg = _config(gate_margin=10.0)  # the gate passes any sane candidate here
    registry = ModelRegistry(tmp_path)
    entry = {"source": "test"}
    first = record_candidate(cfg, tiny_model(0, "g-aaaa"), {}, entry, _held(), registry, "t")
    assert first["outcome"] == "promoted" and registry.current("g") == "g-aaaa"
    same = record_candidate(cfg, tiny_model(0, "g-aaaa"), {}, entry, _held(), registry, "t")
    assert same["outcome"] == "skipped" and registry.current("g") == "g-aaaa"

    registry.control.pin("g", "g-aaaa", "ops", "test")
    held = record_candidate(cfg, tiny_model(1, "g-bbbb"), {}, entry, _held(), registry, "t")
    assert held["outcome"] == "held", held
    assert registry.current("g") == "g-aaaa"
    kept = registry.entry("g", "g-bbbb")
    assert kept["status"] == "candidate" and kept["held_by_pin"]["version"] == "g-aaaa"

    registry.control.unpin("g")
    promoted = record_candidate(cfg, tiny_model(2, "g-cccc"), {}, entry, _held(), registry, "t")
    assert promoted["outcome"] == "promoted" and registry.current("g") == "g-cccc"
    assert registry.entry("g", "g-cccc")["promoted_by"] == "t"
