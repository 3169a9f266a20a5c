"""Typed configuration: one YAML file, validated on load, errors name the key path.

Every section is a frozen pydantic model with ``extra="forbid"`` so a typo is an error, not a
silently ignored key. ``load(path, overrides)`` is the only entry point; ``ConfigError``
carries messages like ``model.hidden_size: must be > 0``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from streamlstm.config_detect import AlertConfig, DetectorConfig
from streamlstm.config_runtime import (
    CheckpointConfig,
    InputConfig,
    KafkaConfig,
    MetricsConfig,
    RayConfig,
    RetrainConfig,
    StateConfig,
)
from streamlstm.config_runtime import Section as _Section


class ConfigError(ValueError):
    """A config file that cannot be used; ``problems`` are ``path: message`` lines."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid config:\n  " + "\n  ".join(problems))


class ModelConfig(_Section):
    """Shape of the LSTM autoencoder; stored inside every model checkpoint."""

    hidden_size: int = Field(128, gt=0, le=4096)
    bottleneck: int = Field(16, gt=0, le=4096)
    window_len: int = Field(8, gt=0, le=512)


class TrainingConfig(_Section):
    epochs: int = Field(8, gt=0, le=10_000)
    chunk_len: int = Field(64, gt=1, le=10_000)  # truncated-BPTT length
    lanes: int = Field(8, gt=0, le=1024)  # parallel segments a long series is split into
    batch_streams: int = Field(64, gt=0)
    learning_rate: float = Field(3e-3, gt=0, le=1.0)
    input_noise: float = Field(0.05, ge=0, le=1.0)  # denoising: std of noise added to inputs
    feature_dropout: float = Field(0.05, ge=0, lt=1.0)  # share of inputs masked in training
    seed: int = 0


class GroupConfig(_Section):
    """A model group: one set of weights shared by every stream routed to it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    features: list[str] = Field(min_length=1)
    topics: list[str] = Field(default_factory=list)  # empty: any topic
    stream_pattern: str = ".*"  # regex on the stream id
    feature_ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    model: ModelConfig = ModelConfig()

    @model_validator(mode="after")
    def _check(self) -> GroupConfig:
        if len(set(self.features)) != len(self.features):
            raise ValueError("features: duplicate names")
        try:
            re.compile(self.stream_pattern)
        except re.error as exc:
            raise ValueError(f"stream_pattern: not a regex ({exc})") from exc
        unknown = set(self.feature_ranges) - set(self.features)
        if unknown:
            raise ValueError(f"feature_ranges: unknown features {sorted(unknown)}")
        for name, (low, high) in self.feature_ranges.items():
            if not low < high:
                raise ValueError(f"feature_ranges.{name}: low must be < high")
        return self


class Config(_Section):
    groups: list[GroupConfig] = Field(min_length=1)
    input: InputConfig = InputConfig()
    model_dir: str | None = None  # a trained model directory to serve
    training: TrainingConfig = TrainingConfig()
    detector: DetectorConfig = DetectorConfig()
    alerts: AlertConfig = AlertConfig()
    kafka: KafkaConfig = KafkaConfig()
    ray: RayConfig = RayConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    state: StateConfig = StateConfig()
    metrics: MetricsConfig = MetricsConfig()
    retrain: RetrainConfig = RetrainConfig()

    @model_validator(mode="after")
    def _unique_groups(self) -> Config:
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError("groups: duplicate group names")
        return self

    def group(self, name: str) -> GroupConfig:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(f"no model group named {name!r}")


ENV_PREFIX = "STREAMLSTM__"  # STREAMLSTM__KAFKA__BOOTSTRAP=host:9092 sets kafka.bootstrap


def _format_error(err: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in err["loc"])
    kind, ctx, msg = err["type"], err.get("ctx") or {}, err["msg"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key"
    if kind == "missing":
        return f"{path}: required key missing"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}
    bounds["less_than_equal"] = "<="
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"{path}: must be {bounds[kind]} {limit}"
    if kind == "value_error":  # our validators prefix the field they check: "exit: ..."
        text = msg.removeprefix("Value error, ")
        head, sep, rest = text.partition(": ")
        if sep and " " not in head:
            path = f"{path}.{head}" if path else head
            text = rest
        return f"{path}: {text}" if path else text
    return f"{path}: {msg.lower()}"


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.0.c`` in nested dicts/lists (a number indexes a list, e.g. ``groups.0``).

    A mapping set where the file has a mapping is merged into it, key by key (``--set
    'training={seed: 1}'`` is ``--set training.seed=1``): replacing the section would drop
    every other key the file sets there, silently (the shipped ``epochs: 20`` fell back
    to the default 8 that way)."""
    keys = dotted.split(".")
    node: Any = tree
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            if last:
                node[int(key)] = _merged(node[int(key)], value)
            node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = _merged(node.get(key), value)
            node = node.setdefault(key, {})
        else:
            raise ConfigError([f"{dotted}: no such key to override"])


def _merged(old: Any, new: Any) -> Any:
    """``new`` over ``old``: mappings key by key (recursively), anything else replaced."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    out = dict(old)
    for key, value in new.items():
        out[key] = _merged(old.get(key), value)
    return out


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    found = {}
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX):
            dotted = name.removeprefix(ENV_PREFIX).lower().replace("__", ".")
            found[dotted] = yaml.safe_load(raw)  # "4" -> 4, "true" -> True, "a" -> "a"
    return found


def from_dict(tree: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError([_format_error(e) for e in exc.errors()]) from None


def load(
    path: str | Path | None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Read YAML at ``path`` (or an embedded default when None), apply env then CLI overrides."""
    if path is None:
        text = default_config_text("vitals")
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    try:
        tree = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML ({exc})"]) from None
    if not isinstance(tree, dict):
        raise ConfigError([f"{path}: top level must be a mapping"])
    merged = dict(_env_overrides(dict(os.environ) if environ is None else environ))
    merged.update(overrides or {})
    for dotted, value in merged.items():
        _set_path(tree, dotted, value)
    return from_dict(tree)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: plain
    YAML keeps the last one silently, so the first setting a user reads would not apply."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def default_config_text(name: str) -> str:
    """The shipped config ``configs/<name>.yaml``, also embedded as package data."""
    from importlib.resources import files

    return files("streamlstm").joinpath(f"defaults/{name}.yaml").read_text(encoding="utf-8")


def effective(config: Config) -> dict[str, Any]:
    """The config as plain data with secrets masked (for printing and for Ray)."""
    return config.model_dump(mode="json")
