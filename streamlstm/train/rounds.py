"""What a retrain round decides, as plain values: skip it, reject the candidate, hold it
(a pinned group), or promote it. The caller (``adapters/retrain/round``) carries it out.

A round that changes nothing must not look like a promotion: with no new data, training
reproduces a version the registry already holds, and a gate that compares a model with
itself always passes. Such a round is ``skipped``, so the freshness metrics and the
ModelStale / RetrainFailing alerts see it for what it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamlstm.datafiles import Series
from streamlstm.records import format_ts
from streamlstm.train.gate import GateDecision

# Outcomes of one group's round. ``held``: the gate passed but an operator pinned the group.
OUTCOMES = ("promoted", "rejected", "held", "skipped")


@dataclass(frozen=True)
class RoundOutcome:
    outcome: str  # one of OUTCOMES
    reasons: list[str] = field(default_factory=list)

    @property
    def promote(self) -> bool:
        return self.outcome == "promoted"


def training_digest(series: Iterable[Series], settings: Mapping[str, Any]) -> str:
    """A fingerprint of what a round would train on: every reading and every setting that
    shapes the weights. Equal digests mean training would reproduce the same model."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for s in sorted(series, key=lambda s: s.stream):
        h.update(s.stream.encode() + b"\0")
        h.update(np.ascontiguousarray(s.ts, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(s.values, dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


def same_data_version(digest: str, entries: Iterable[Mapping[str, Any]]) -> str | None:
    """The version already trained on exactly this data and these settings, if any."""
    for entry in entries:
        if entry.get("data_digest") == digest:
            return str(entry["version"])
    return None


def skip_before_training(digest: str, entries: list[Mapping[str, Any]]) -> RoundOutcome | None:
    """Skip the round without training when its data was trained on before."""
    known = same_data_version(digest, entries)
    if known is None:
        return None
    return RoundOutcome("skipped", [f"no new data: {known} was trained on the same readings"])


def skip_nothing_newer(newest: float, current: Mapping[str, Any] | None) -> RoundOutcome | None:
    """Skip a scheduled round whose newest reading is no newer than the newest one the
    current version's round saw (``newest_reading_at``): nothing arrived since, and the
    look-back window only lost old readings."""
    if current is None or current.get("newest_reading_at") is None:
        return None
    if newest > float(current["newest_reading_at"]):
        return None
    return RoundOutcome(
        "skipped",
        [
            f"no new data: the newest reading ({format_ts(newest)}) is no newer than what "
            f"{current['version']} was trained and gated on"
        ],
    )


def skip_reproduced(
    version: str, known_status: str | None, current: str | None
) -> RoundOutcome | None:
    """Skip a trained candidate the registry already holds (``known_status``: its status
    there, None when it is new): the same weights, so nothing to gate or promote."""
    if known_status is None:
        return None
    which = "the current version" if version == current else f"already {known_status}"
    return RoundOutcome("skipped", [f"no new model: training reproduced {version} ({which})"])


def carry_out(gate: GateDecision, pinned: str | None) -> RoundOutcome:
    """The gate's decision, unless an operator pinned the group (``pinned``: the version it
    is pinned to, by a rollback or ``models pin``): then a passing candidate is held."""
    if not gate.promote:
        return RoundOutcome("rejected", list(gate.reasons))
    if pinned is not None:
        note = f"not promoted: the group is pinned to {pinned} (streamlstm models unpin)"
        return RoundOutcome("held", [*gate.reasons, note])
    return RoundOutcome("promoted", list(gate.reasons))


def stale_runs(names: Iterable[str], prefix: str, now: float, max_age_s: float) -> list[str]:
    """Ray Train run folders named ``<prefix>-<group>-<epoch s>-<id>`` that started more than
    ``max_age_s`` ago: no round of that kind lives that long, so their round was killed."""
    stale = []
    for name in names:
        parts = name.split("-")
        if not name.startswith(prefix + "-") or len(parts) < 4 or not parts[-2].isdigit():
            continue
        if now - int(parts[-2]) > max_age_s:
            stale.append(name)
    return sorted(stale)
