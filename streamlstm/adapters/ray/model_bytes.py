"""Model sets as bytes: shipped to the worker actors, so nodes need no shared filesystem
for the models, and loaded back on the other side."""

from __future__ import annotations

import tempfile
from pathlib import Path

from streamlstm.train.checkpoint import load_model, load_model_set


def model_files(model_dir: str | Path) -> dict[str, dict[str, bytes]]:
    """A model set as bytes, so actors on other nodes need no shared filesystem."""

    root = Path(model_dir)
    groups = load_model_set(root)  # validates before shipping
    out: dict[str, dict[str, bytes]] = {}
    for group in groups:
        folder = root / group if (root / group / "model.json").exists() else root
        out[group] = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    return out


def load_models(files: dict[str, dict[str, bytes]]) -> dict:
    """The models of ``model_files`` output, per group (via a temporary folder)."""
    models = {}
    with tempfile.TemporaryDirectory(prefix="streamlstm-model-") as tmp:
        for group, blobs in files.items():
            folder = Path(tmp) / group
            folder.mkdir()
            for name, data in blobs.items():
                (folder / name).write_bytes(data)
            models[group] = load_model(folder)
    return models
