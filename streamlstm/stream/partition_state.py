"""A partition's snapshot, both ways: the blobs saved for it and what restoring them gives.

A snapshot holds, per model group, the state of the partition's streams under the model
that made it (``model_version`` in its meta), and the partition's outcome ledger
(``ledger.LEDGER_BLOB``). State made under another model than the one serving is left out:
under another model it would be noise, so those streams start cold.
"""

from __future__ import annotations

import logging

from streamlstm.detect.state import read_meta
from streamlstm.stream.engine import Engine
from streamlstm.stream.ledger import LEDGER_BLOB, Ledger
from streamlstm.stream.ports import TP, Metrics

log = logging.getLogger(__name__)


def restore_partition(
    engine: Engine, metrics: Metrics, tp: TP, blobs: dict[str, bytes]
) -> tuple[set[tuple[str, str]], Ledger]:
    """Restore ``tp``'s snapshot ``blobs`` into the engine's tables; returns its (group,
    stream) pairs and its ledger (empty for a snapshot from before ledgers)."""
    blobs = dict(blobs)
    ledger = Ledger.from_blob(blobs.pop(LEDGER_BLOB)) if LEDGER_BLOB in blobs else Ledger()
    streams: set[tuple[str, str]] = set()
    for group, blob in blobs.items():
        saved_version = read_meta(blob).get("model_version")
        serving = engine.detectors[group].model.version
        if saved_version not in (None, serving):
            log.warning(
                "%s: snapshot of %s holds model %s state, serving %s: its streams start cold",
                group,
                tp,
                saved_version,
                serving,
            )
            metrics.restored("skipped")
            continue
        names, _ = engine.tables[group].restore(blob)
        metrics.restored("restored")
        streams.update((group, s) for s in names)
    return streams, ledger


def partition_blobs(
    engine: Engine, streams: set[tuple[str, str]], ledger_blob: bytes
) -> dict[str, bytes]:
    """The snapshot of one partition: its ``streams``' state per group, and its ledger."""
    by_group: dict[str, list[str]] = {}
    for group, stream in streams:
        by_group.setdefault(group, []).append(stream)
    blobs = {
        group: engine.tables[group].snapshot(
            sorted(names), {"model_version": engine.detectors[group].model.version}
        )
        for group, names in by_group.items()
    }
    return blobs | {LEDGER_BLOB: ledger_blob}
