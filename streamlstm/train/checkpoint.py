"""Self-describing model directories: config + weights + prior + metrics, nothing pickled.

Layout of one group's model::

    <dir>/model.json       group, version, features, model config, creation time, data range
    <dir>/weights.safetensors
    <dir>/prior.json       normalisation and calibration priors (calibration.GroupPrior)
    <dir>/metrics.json     loss curve and validation numbers

A *model set* is a directory holding one such directory per group (``<set>/<group>/``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from streamlstm.config import ModelConfig
from streamlstm.detect.calibration import GroupPrior
from streamlstm.detect.detector import ScoringModel
from streamlstm.detect.model import LSTMAutoencoder

FORMAT = 1


def save_model(
    path: str | Path,
    model: ScoringModel,
    metrics: dict[str, Any],
    info: dict[str, Any] | None = None,
) -> Path:
    """Write atomically: a temp dir renamed into place, so readers never see half a model."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    card = {
        "format": FORMAT,
        "group": model.group,
        "version": model.version,
        "features": model.features,
        "model": model.net.cfg.model_dump(),
        **(info or {}),
    }
    (tmp / "model.json").write_text(json.dumps(card, indent=2))
    (tmp / "prior.json").write_text(json.dumps(asdict(model.prior), indent=2))
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    save_file(state, str(tmp / "weights.safetensors"))
    if target.exists():
        _replace_dir(tmp, target)
    else:
        os.replace(tmp, target)
    return target


def _replace_dir(tmp: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old")
    os.replace(target, old)
    os.replace(tmp, target)
    for child in old.iterdir():
        child.unlink()
    old.rmdir()


def load_model(path: str | Path) -> ScoringModel:
    root = Path(path)
    card = json.loads((root / "model.json").read_text())
    if card.get("format") != FORMAT:
        raise ValueError(f"{root}: model format {card.get('format')} is not supported")
    net = LSTMAutoencoder(len(card["features"]), ModelConfig(**card["model"]))
    net.load_state_dict(load_file(str(root / "weights.safetensors")))
    prior_raw = json.loads((root / "prior.json").read_text())
    prior = GroupPrior(**{k: tuple(v) if isinstance(v, list) else v for k, v in prior_raw.items()})
    return ScoringModel(card["group"], card["version"], list(card["features"]), net.eval(), prior)


def load_model_set(path: str | Path) -> dict[str, ScoringModel]:
    """A model set directory (one subdirectory per group) or a single model directory."""
    root = Path(path)
    if (root / "model.json").exists():
        model = load_model(root)
        return {model.group: model}
    models = {}
    for child in sorted(root.iterdir()):
        if (child / "model.json").exists():
            model = load_model(child)
            models[model.group] = model
    if not models:
        raise FileNotFoundError(f"{root}: no model.json found (not a model directory)")
    return models
