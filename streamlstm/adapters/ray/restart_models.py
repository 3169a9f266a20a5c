"""Which models a restarted worker serves when it died in the middle of a hot-swap.

State belongs to its model: a snapshot written under version A is noise to version B, so a
worker that restores under B drops it and its streams start cold (a warm-up gap with no
alerts). The supervisor ships the new files with every restart once a swap was staged, so
a worker killed while B was still warming in shadow used to come back on B with its A
snapshots skipped. Instead, per group, it serves the version its snapshots were written
under and stages the new one again, as the running workers did.
"""

from __future__ import annotations

import json

from streamlstm.detect.state import read_meta

Files = dict[str, dict[str, bytes]]


def version_of(blobs: dict[str, bytes]) -> str:
    return json.loads(blobs["model.json"])["version"]


def snapshot_versions(store, partitions: list, group: str) -> set[str]:
    """Model versions that ``group``'s state was saved under, over these partitions."""
    out = set()
    for tp in partitions:
        saved = store.load(tuple(tp))
        if saved is not None and group in saved[0]:
            version = read_meta(saved[0][group]).get("model_version")
            if version:
                out.add(version)
    return out


def pick_models(files: Files, previous: Files, store, partitions: list) -> tuple[Files, Files]:
    """(files to serve, files to stage in shadow) for a worker taking ``partitions``.

    ``previous``: per group, the files served before the latest staged ones.
    """
    serve, stage = dict(files), {}
    for group, blobs in files.items():
        old = previous.get(group)
        if old is None or version_of(old) == version_of(blobs):
            continue
        saved = snapshot_versions(store, partitions, group)
        if version_of(old) in saved and version_of(blobs) not in saved:
            serve[group], stage[group] = old, blobs  # the swap had not happened here yet
    return serve, stage
