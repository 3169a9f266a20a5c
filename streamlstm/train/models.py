"""Training steps every entry point shares: fit each model group on a file's streams, give the
result a deterministic version, and the cold-start first model."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from streamlstm.config import Config
from streamlstm.datafiles import FileData, Series, to_series
from streamlstm.detect.detector import ScoringModel
from streamlstm.records import format_ts
from streamlstm.train.checkpoint import save_model
from streamlstm.train.fit import fit


def model_version(group: str, model_net: torch.nn.Module) -> str:
    """Deterministic: the same training run gives the same version string."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model_net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return f"{group}-{digest.hexdigest()[:8]}"


def train_models(
    config: Config,
    data: FileData,
    fraction: float,
    device: torch.device,
    quiet: bool = False,
    first: int | None = None,
) -> tuple[dict[str, ScoringModel], dict[str, dict]]:
    """Train each group on the first ``fraction`` of each of its streams, or on the first
    ``first`` readings of each when given (a benchmark protocol's fixed training part)."""
    from tqdm import tqdm

    models, metrics = {}, {}
    for group in config.groups:
        idx = {
            s: rows[: first if first is not None else max(1, int(len(rows) * fraction))]
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
    """In-process training of one group (``train.fit.fit``, the loop Ray Train runs too)."""
    group = config.group(group_name)
    result = fit(
        series, group.features, group.model, config.training, config.detector, device, on_epoch
    )
    version = model_version(group.name, result.net)
    model = ScoringModel(group.name, version, group.features, result.net, result.prior)
    return model, result.metrics


def train_first_model(config: Config, readings: list, out_dir: Path, device: str) -> Path:
    """Cold start: fit every group on the readings seen so far and write a model set."""

    models, metrics = train_models(config, FileData(readings), 1.0, torch.device(device))
    if not models:
        raise RuntimeError("no readings for any model group: cannot train a first model")
    for group, model in models.items():
        info = {
            "created": format_ts(time.time()),
            "source": "kafka bootstrap",
            "data_range": [format_ts(readings[0].ts), format_ts(readings[-1].ts)],
        }
        save_model(out_dir / group, model, metrics[group], info)
    return out_dir
