"""Config: shipped files validate; bad keys, types and ranges exit 2 naming the key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamlstm import config as config_mod
from streamlstm.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["vitals", "sensors", "test", "univariate"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = config_mod.load(ROOT / "configs" / f"{name}.yaml", environ={})
    assert cfg.groups[0].features


def test_embedded_default_is_the_vitals_config() -> None:
    assert config_mod.load(None, environ={}) == config_mod.load(
        ROOT / "configs/vitals.yaml", environ={}
    )


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("model:\n      hidden_size: 0", "groups.0.model.hidden_size: must be > 0"),
        ("model:\n      hidden_sise: 8", "groups.0.model.hidden_sise: unknown key"),
        ("model:\n      hidden_size: lots", "groups.0.model.hidden_size: input should be a valid"),
    ],
)
def test_group_errors_name_the_key_path(tmp_path: Path, patch: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"groups:\n  - name: g\n    features: [a]\n    {patch}\n")
    with pytest.raises(ConfigError) as err:
        config_mod.load(path, environ={})
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems


def test_cross_field_and_override_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("groups: [{name: g, features: [a]}]\nalerts: {enter: 2, exit: 3}\n")
    with pytest.raises(ConfigError, match=r"alerts\.exit: must be <= alerts.enter"):
        config_mod.load(path, environ={})
    path.write_text("groups: [{name: g, features: [a]}]\n")
    with pytest.raises(ConfigError, match=r"detector\.max_gap_s: must be > 0"):
        config_mod.load(path, {"detector.max_gap_s": -1}, environ={})
    cfg = config_mod.load(path, environ={"STREAMLSTM__KAFKA__BOOTSTRAP": "h:1"})
    assert cfg.kafka.bootstrap == "h:1"


def test_a_mapping_override_sets_only_the_keys_it_names(tmp_path: Path) -> None:
    """``--set 'training={seed: 1}'`` (or the same in the environment) changes the seed and
    keeps the file's other training keys; it used to replace the section with defaults."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "groups: [{name: g, features: [a], model: {hidden_size: 8, window_len: 4}}]\n"
        "training: {epochs: 20, chunk_len: 64}\n"
        "alerts: {enter: 6, exit: 2, cooldown: 30}\n"
    )
    cfg = config_mod.load(path, {"training": {"seed": 3}}, environ={})
    assert (cfg.training.seed, cfg.training.epochs, cfg.training.chunk_len) == (3, 20, 64)
    cfg = config_mod.load(path, environ={"STREAMLSTM__ALERTS": "{enter: 7}"})
    assert (cfg.alerts.enter, cfg.alerts.exit, cfg.alerts.cooldown) == (7.0, 2.0, 30)
    # nested mappings merge all the way down; a list is replaced, not merged
    cfg = config_mod.load(path, {"groups.0": {"model": {"hidden_size": 12}}}, environ={})
    group = cfg.groups[0]
    assert (group.name, group.features, group.model.hidden_size, group.model.window_len) == (
        "g",
        ["a"],
        12,
        4,
    )
    cfg = config_mod.load(path, {"groups.0.features": ["b", "c"]}, environ={})
    assert cfg.groups[0].features == ["b", "c"]
    # a key the section does not have is still named as unknown
    with pytest.raises(ConfigError, match=r"training\.sead: unknown key"):
        config_mod.load(path, {"training": {"sead": 3}}, environ={})


def test_min_insync_replicas_above_the_replication_factor_is_an_error(tmp_path: Path) -> None:
    """The broker would create such a topic and then refuse every acks=all write to it."""
    path = tmp_path / "c.yaml"
    path.write_text("groups: [{name: g, features: [a]}]\n")
    wanted = r"kafka\.min_insync_replicas: must be <= kafka.replication_factor"
    with pytest.raises(ConfigError, match=wanted):
        config_mod.load(path, {"kafka.min_insync_replicas": 2}, environ={})
    cfg = config_mod.load(
        path, {"kafka.replication_factor": 3, "kafka.min_insync_replicas": 2}, environ={}
    )
    assert (cfg.kafka.replication_factor, cfg.kafka.min_insync_replicas) == (3, 2)
    assert config_mod.load(path, environ={}).kafka.replication_factor == 1


def test_secrets_are_masked_in_the_effective_config(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("groups: [{name: g, features: [a]}]\nkafka: {sasl_password: hunter2-secret}\n")
    text = str(config_mod.effective(config_mod.load(path, environ={})))
    assert "hunter2-secret" not in text


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamlstm", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_validate_config_command(tmp_path: Path) -> None:
    ok = _cli("validate-config", "-c", "configs/vitals.yaml")
    assert ok.returncode == 0 and "hidden_size: 128" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups: [{name: g, features: [a], model: {hidden_size: -3}}]\n")
    res = _cli("validate-config", "-c", str(bad))
    assert res.returncode == 2
    assert "groups.0.model.hidden_size: must be > 0" in res.stderr
    missing = _cli("validate-config", "-c", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def _key_paths(model: type, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    paths = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if name == "groups":
            paths += _key_paths(config_mod.GroupConfig, "groups[].")
        elif isinstance(sub, type) and issubclass(sub, BaseModel):
            paths += _key_paths(sub, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def test_every_config_key_is_in_the_configuration_reference() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    paths = _key_paths(config_mod.Config)
    assert len(paths) > 60
    missing = [p for p in paths if f"`{p}`" not in doc]
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_a_key_given_twice_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("detector:\n  warmup_readings: 10\n  warmup_readings: 20\n")
    with pytest.raises(ConfigError) as err:
        config_mod.load(path)
    assert "'warmup_readings' is given twice" in str(err.value)
    assert "line 3" in str(err.value)
