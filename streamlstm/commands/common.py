"""Arguments and steps several commands share."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from streamlstm import config as config_mod
from streamlstm.config import Config, ConfigError
from streamlstm.datafiles import FileData, to_series
from streamlstm.detector import ScoringModel
from streamlstm.training import Series, fit


def add_config_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "-c",
        "--config",
        required=required,
        metavar="FILE",
        help="YAML config (default: the embedded vitals config)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set alerts.enter=5 (repeatable)",
    )


def load_config(args: argparse.Namespace) -> Config:
    overrides = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError([f"--set {item}: expected KEY=VALUE"])
        overrides[key.strip()] = yaml.safe_load(raw)
    return config_mod.load(args.config, overrides)


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (cuda when present), cpu, cuda, cuda:1 ...",
    )


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def model_version(group: str, model_net: torch.nn.Module) -> str:
    """Deterministic: the same training run gives the same version string."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model_net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return f"{group}-{digest.hexdigest()[:8]}"


def train_models(
    config: Config, data: FileData, fraction: float, device: torch.device, quiet: bool = False
) -> tuple[dict[str, ScoringModel], dict[str, dict]]:
    """Train each group on the first ``fraction`` of each of its streams."""
    from tqdm import tqdm

    models, metrics = {}, {}
    for group in config.groups:
        idx = {
            s: rows[: max(1, int(len(rows) * fraction))]
            for s, rows in data.by_stream().items()
            if data.readings[rows[0]].group == group.name
        }
        series = to_series(data, idx)
        if not series:
            continue
        bar = tqdm(
            total=config.training.epochs,
            desc=f"train {group.name}",
            unit="epoch",
            disable=quiet,
            file=sys.stderr,
        )

        def on_epoch(epoch: int, loss: float, bar=bar) -> None:
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(1)

        models[group.name], fit_metrics = fit_model(config, group.name, series, device, on_epoch)
        bar.close()
        metrics[group.name] = {**fit_metrics, "streams": len(series), "train_fraction": fraction}
    return models, metrics


def fit_model(
    config: Config,
    group_name: str,
    series: list[Series],
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[ScoringModel, dict]:
    """In-process training of one group (``training.fit``, the loop Ray Train runs too)."""
    group = config.group(group_name)
    result = fit(
        series, group.features, group.model, config.training, config.detector, device, on_epoch
    )
    version = model_version(group.name, result.net)
    model = ScoringModel(group.name, version, group.features, result.net, result.prior)
    return model, result.metrics


def ensure_parent(path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p
