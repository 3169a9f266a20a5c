"""The validation gate: is a candidate model at least as good as the current one?

Both models replay the same held-out recent normal readings through the serving path (a
fresh ``Detector`` and state table each, exactly as the live worker would score them), and
are compared on the mean reconstruction error (normalised units) and on how many alerts
they would open on that normal data. A policy returns a decision; the caller carries it
out (registers, promotes or not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamlstm.config import AlertConfig, DetectorConfig
from streamlstm.datafiles import Series
from streamlstm.detect.detector import Detector, ScoringModel
from streamlstm.records import Reading

# Alerts on normal data are rare events: allow this many extra per 10k readings before a
# candidate counts as noisier (a relative margin alone would reject 1 alert against 0).
ALERT_SLACK_PER_10K = 1.0


@dataclass(frozen=True)
class GateStats:
    readings: int  # scored (not warming) readings
    mean_error: float  # mean RMS reconstruction error over them, normalised units
    alerts_per_10k: float  # alerts opened per 10 000 scored readings

    def to_dict(self) -> dict:
        return {
            "readings": self.readings,
            "mean_error": round(self.mean_error, 6),
            "alerts_per_10k": round(self.alerts_per_10k, 3),
        }


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    candidate: GateStats | None = None
    current: GateStats | None = None

    def to_dict(self) -> dict:
        return {
            "promote": self.promote,
            "reasons": self.reasons,
            "candidate": self.candidate.to_dict() if self.candidate else None,
            "current": self.current.to_dict() if self.current else None,
        }


def gate_stats(
    model: ScoringModel,
    series: list[Series],
    det_cfg: DetectorConfig,
    alert_cfg: AlertConfig,
    batch: int = 1024,
) -> GateStats:
    """Replay ``series`` (time-ordered across streams) through a fresh detector."""
    detector = Detector(model, det_cfg, alert_cfg, "cpu")
    table = detector.new_table()
    errors: list[float] = []
    opened = 0
    readings = _time_ordered(series, model.group)
    for start in range(0, len(readings), batch):
        scored = detector.score(table, readings[start : start + batch])
        errors.extend(e for e, w in zip(scored.raw_error, scored.warming, strict=True) if not w)
        opened += sum(1 for e in scored.events if e.event == "open")
    n = len(errors)
    mean_error = float(np.mean(errors)) if n else float("inf")
    return GateStats(n, mean_error, 1e4 * opened / max(n, 1))


def decide(candidate: GateStats, current: GateStats | None, margin: float) -> GateDecision:
    """Promote when no worse than ``current`` by ``margin`` (relative) on both numbers."""
    if candidate.readings == 0:
        return GateDecision(False, ["no held-out readings were scored"], candidate, current)
    if current is None:
        return GateDecision(True, ["no current version: the first model"], candidate, None)
    reasons = []
    error_limit = current.mean_error * (1.0 + margin)
    if candidate.mean_error > error_limit:
        reasons.append(
            f"reconstruction error {candidate.mean_error:.4f} > {error_limit:.4f} "
            f"(current {current.mean_error:.4f} + {margin:.0%})"
        )
    alert_limit = current.alerts_per_10k * (1.0 + margin) + ALERT_SLACK_PER_10K
    if candidate.alerts_per_10k > alert_limit:
        reasons.append(
            f"alerts on normal data {candidate.alerts_per_10k:.2f}/10k > {alert_limit:.2f}/10k "
            f"(current {current.alerts_per_10k:.2f}/10k)"
        )
    if reasons:
        return GateDecision(False, reasons, candidate, current)
    return GateDecision(True, ["no worse than the current version"], candidate, current)


def _time_ordered(series: list[Series], group: str) -> list[Reading]:
    rows = [
        (float(ts), k, s.stream, tuple(float(v) for v in values))
        for s in series
        for k, (ts, values) in enumerate(zip(s.ts, s.values, strict=True))
    ]
    rows.sort(key=lambda r: (r[0], r[2]))
    return [
        Reading(stream, ts, values, group, "held-out", 0, offset)
        for offset, (ts, _, stream, values) in enumerate(rows)
    ]
