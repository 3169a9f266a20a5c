"""The exported metric families' names, help texts and label sets: docs/metrics.md's
contract as data (``prometheus.MetricsHub`` turns the workers' counts into these)."""

from __future__ import annotations

from streamlstm.detect.alerts import SEVERITY
from streamlstm.records import REASONS

P = "streamlstm_"
RETRAIN_OUTCOMES = ("promoted", "rejected", "held", "skipped", "failed", "timeout")

# name in MetricCounts -> (exported name, help, label names, label values to show at zero)
COUNTERS: dict[str, tuple[str, str, tuple[str, ...], list[tuple[str, ...]]]] = {
    "records": (
        "records",
        "Input records whose outcome is durable (in a snapshot); = readings when unbatched",
        (),
        [()],
    ),
    "skipped": (
        "skipped_records",
        "Input records passed over by an operator (streamlstm snapshots skip), never scored",
        (),
        [()],
    ),
    "readings": (
        "readings",
        "Readings consumed, by outcome",
        ("outcome",),
        [("scored",), ("warming",), ("dlq",)],
    ),
    "dlq": (
        "dlq_records",
        "Records sent to the DLQ, by reason",
        ("reason",),
        [(r,) for r in REASONS],
    ),
    "alert_events": (
        "alert_events",
        "Alert events written to the alerts topic",
        ("event", "severity"),
        [(e, s) for e in ("open", "update", "resolve", "rebaseline") for s in SEVERITY.values()],
    ),
    "restores": (
        "state_restores",
        "Partition state at worker start, by result",
        ("result",),
        [("restored",), ("cold",), ("skipped",)],
    ),
    "snapshot_failures": (
        "snapshot_failures",
        "Checkpoints whose snapshot write failed (nothing committed)",
        (),
        [()],
    ),
    "evicted_streams": (
        "evicted_streams",
        "Idle streams dropped from the state tables (state.evict_idle_s)",
        (),
        [()],
    ),
    "fenced": (
        "fenced_workers",
        "Worker loops stopped because another worker claimed their partition (stale generation)",
        (),
        [()],
    ),
    "dlq_failures": (
        "dlq_write_failures",
        "Rejected records the producer refused to write to the DLQ (skipped, logged)",
        ("reason",),
        [(r,) for r in REASONS],
    ),
}
HISTOGRAMS = {
    "score": ("score", "Calibrated anomaly score of scored readings"),
    "latency": ("processing_latency_seconds", "Broker append time to reading scored"),
    "snapshot": ("snapshot_duration_seconds", "One checkpoint: flush, snapshot, commit"),
}
