"""The Prometheus exporter: one endpoint, served by the supervisor, for all workers.

Workers keep plain counts (``metric_counts.MetricCounts``) and the supervisor pulls their
deltas (``Supervisor.metrics``) into a ``MetricsHub``, a custom collector that turns the
totals into metric families at scrape time. The outcome counters (records, readings, dead
letters, alert events) come instead from each partition's cumulative ledger as of its last
durable snapshot (``stream/ledger.py``): they advance at checkpoints, once per record across
worker restarts and partition moves. Names and labels are the contract in
docs/metrics.md; every label value comes from a closed set, never from a stream id.
Nothing is registered or served at import: ``metrics_feed.serve`` does that.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from streamlstm.adapters.ops.health import (
    PartitionHealth,
    from_report,
    partition_families,
    unready,
)
from streamlstm.adapters.ops.prometheus_names import COUNTERS, HISTOGRAMS, RETRAIN_OUTCOMES, P
from streamlstm.detect.alerts import SEVERITY
from streamlstm.records import parse_ts
from streamlstm.stream.ledger import Ledger, advance
from streamlstm.stream.metric_counts import BUCKETS, Histogram


class MetricsHub:
    """Totals across workers plus supervisor-side gauges; a prometheus_client collector."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[str, ...]], float] = {}
        for key, (_, _, _, zeros) in COUNTERS.items():
            for labels in zeros:
                self.counters[(key, labels)] = 0.0
        self.histograms = {name: Histogram(b) for name, b in BUCKETS.items()}
        # per partition, the ledger counts exported so far (a high-water mark per counter)
        self.ledger_seen: dict[tuple[str, int], Ledger] = {}
        self.workers: dict[int, dict[str, Any]] = {}  # latest gauges per worker
        self.lag: dict[tuple[str, int], int] = {}
        self.workers_desired = self.workers_up = self.restarts = 0
        self.workers_requested = self.handoffs = 0  # `streamlstm scale`; partitions moved
        self.last_commit_at = 0.0
        self.expected: list[tuple[str, int]] = []  # the input partitions the workers own
        self.partitions: dict[tuple[str, int], PartitionHealth] = {}  # newest report of each
        self.created_at: dict[str, float] = {}  # model version -> training time (epoch s)
        self.retrain_enabled = False
        self.retrain_outcomes: dict[str, int] = {}
        self.last_retrain_at = 0.0
        self.retrain_paused: dict[str, bool] = {}  # per group: `streamlstm models pause`
        self.model_pinned: dict[str, bool] = {}  # per group: `streamlstm models pin|rollback`

    # --- updates (supervisor thread) ----------------------------------------------------
    def add_reports(self, reports: list[dict[str, Any] | None]) -> None:
        with self._lock:
            self.workers_desired = len(reports)
            # Up = its scoring loop runs (a recent heartbeat), not merely that the actor
            # answered: after a failed run, or with a hung loop, it still answers.
            self.workers_up = sum(r is not None and r.get("loop_alive") is True for r in reports)
            for report in reports:
                if report is not None:
                    self._add(report)

    def _add(self, report: dict[str, Any]) -> None:
        counts = report["counts"]
        for name, labels, value in counts["counters"]:
            key = (name, tuple(labels))
            self.counters[key] = self.counters.get(key, 0.0) + value
        for name, (bucket_counts, total) in counts["histograms"].items():
            self.histograms[name].add(bucket_counts, total)
        if counts["last_commit_at"]:
            self.last_commit_at = max(self.last_commit_at, counts["last_commit_at"])
        for topic, partition, baseline, durable in report.get("ledgers", []):
            self._add_ledger((topic, partition), baseline, durable)
        if "streams" in report:
            self.workers[report["worker"]] = report
        for tp, health in from_report(report.get("partitions_health", [])).items():
            older = self.partitions.get(tp)
            if older is None or health.polled_at >= older.polled_at:  # moved: the newest
                self.partitions[tp] = health.merged(older)

    def know_baselines(self, baselines: dict[tuple[str, int], list]) -> None:
        """Each partition's ledger as its first start restored it (the supervisor's record):
        a partition's counters begin there, not at the first report, so the counts of a
        worker that checkpointed and died before its first report are not lost."""
        with self._lock:
            for tp, rows in baselines.items():
                self.ledger_seen.setdefault(tp, Ledger.from_rows(rows))

    def _add_ledger(self, tp: tuple[str, int], baseline: list, durable: list) -> None:
        """A partition first seen starts from the ledger its worker restored (a new
        exporter does not count what was done before it); then only what passes the mark."""
        seen = self.ledger_seen.setdefault(tp, Ledger.from_rows(baseline))
        for key, delta in advance(seen, Ledger.from_rows(durable)).items():
            self.counters[key] = self.counters.get(key, 0.0) + delta

    def set_lag(self, lag: dict[tuple[str, int], int]) -> None:
        with self._lock:
            self.lag = dict(lag)

    def why_unready(self, now: float, poll_deadline_s: float, commit_deadline_s: float):
        """``/readyz``: the partitions at fault (``health.unready``); empty when ready."""
        with self._lock:
            health = dict(self.partitions)
        return unready(self.expected, health, now, poll_deadline_s, commit_deadline_s)

    def set_restarts(self, restarts: int) -> None:
        self.restarts = restarts

    def set_scale(self, requested: int, handoffs: int) -> None:
        self.workers_requested, self.handoffs = requested, handoffs

    def know_models(self, files: dict[str, dict[str, bytes]]) -> None:
        """Training times of the model versions being served (from their model files)."""
        for blobs in files.values():
            card = json.loads(blobs["model.json"])
            entry = json.loads(blobs["entry.json"]) if "entry.json" in blobs else {}
            created = entry.get("created_at") or parse_ts(card.get("created")) or 0.0
            self.created_at[card["version"]] = float(created)

    def set_retrain(
        self,
        enabled: bool,
        outcomes: dict[str, int],
        last_success: float | None,
        paused: dict[str, bool] | None = None,
        pinned: dict[str, bool] | None = None,
    ) -> None:
        self.retrain_enabled = enabled
        self.retrain_outcomes = dict(outcomes)
        self.last_retrain_at = last_success or 0.0
        self.retrain_paused = dict(paused or {})
        self.model_pinned = dict(pinned or {})

    def positions(self) -> dict[tuple[str, int], int]:
        """Next offset to process per partition, as the workers last reported."""
        with self._lock:
            return {(t, p): o for w in self.workers.values() for t, p, o in w.get("positions", [])}

    # --- scrape (HTTP thread) -----------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        with self._lock:
            yield from self._counter_families()
            yield from self._histogram_families()
            yield from self._worker_gauges()
            yield from self._model_and_retrain()

    def _counter_families(self) -> Iterator[Any]:
        for key, (name, help_text, label_names, _) in COUNTERS.items():
            family = CounterMetricFamily(P + name, help_text, labels=label_names)
            for (k, labels), value in sorted(self.counters.items()):
                if k == key:
                    family.add_metric(list(labels), value)
            yield family
        restarts = CounterMetricFamily(P + "worker_restarts", "Worker actors restarted")
        restarts.add_metric([], self.restarts)
        yield restarts
        handoffs = CounterMetricFamily(
            P + "partition_handoffs",
            "Partitions moved between workers by snapshot hand-off (streamlstm scale)",
        )
        handoffs.add_metric([], self.handoffs)
        yield handoffs
        runs = CounterMetricFamily(
            P + "retrain_runs", "Retrain rounds by outcome", labels=["outcome"]
        )
        for outcome in RETRAIN_OUTCOMES:
            runs.add_metric([outcome], self.retrain_outcomes.get(outcome, 0))
        yield runs

    def _histogram_families(self) -> Iterator[Any]:
        for key, (name, help_text) in HISTOGRAMS.items():
            h = self.histograms[key]
            family = HistogramMetricFamily(P + name, help_text)
            family.add_metric([], h.cumulative(), sum_value=h.sum)
            yield family

    def _worker_gauges(self) -> Iterator[Any]:
        live = list(self.workers.values())
        open_alerts = GaugeMetricFamily(P + "open_alerts", "Alerts open now", labels=["severity"])
        for severity in SEVERITY.values():
            open_alerts.add_metric([severity], sum(w["open_alerts"][severity] for w in live))
        yield open_alerts
        yield _gauge(
            "active_streams", "Streams with state on the workers", sum(w["streams"] for w in live)
        )
        lag = GaugeMetricFamily(
            P + "consumer_lag_records",
            "Log end offset minus next offset",
            labels=["topic", "partition"],
        )
        for (topic, partition), value in sorted(self.lag.items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        yield _gauge("last_commit_timestamp_seconds", "Newest offset commit", self.last_commit_at)
        yield from partition_families(self.partitions, P)
        yield _gauge("workers", "Worker actors the supervisor runs", self.workers_desired)
        yield _gauge(
            "workers_requested",
            "Workers asked for (ray.workers or streamlstm scale; at most one per partition runs)",
            self.workers_requested,
        )
        yield _gauge("workers_up", "Workers whose scoring loop is running", self.workers_up)

    def _model_and_retrain(self) -> Iterator[Any]:
        served: dict[str, str] = {}
        for w in self.workers.values():
            served.update(w.get("models", {}))
        info = GaugeMetricFamily(
            P + "model_info", "Model version served", labels=["group", "version"]
        )
        created = GaugeMetricFamily(
            P + "model_created_timestamp_seconds",
            "When the served version was trained",
            labels=["group"],
        )
        for group, version in sorted(served.items()):
            info.add_metric([group, version], 1)
            created.add_metric([group], self.created_at.get(version, 0.0))
        yield info
        yield created
        yield _gauge(
            "last_successful_retrain_timestamp_seconds",
            "Newest promoting retrain",
            self.last_retrain_at,
        )
        yield _gauge(
            "retrain_enabled", "Scheduled retraining runs here", float(self.retrain_enabled)
        )
        paused = GaugeMetricFamily(
            P + "retrain_paused",
            "1 while scheduled retrain rounds of the group are paused (streamlstm models pause)",
            labels=["group"],
        )
        for group, is_paused in sorted(self.retrain_paused.items()):
            paused.add_metric([group], float(is_paused))
        yield paused
        pinned = GaugeMetricFamily(
            P + "model_pinned",
            "1 while the group is pinned to its version (streamlstm models rollback|pin)",
            labels=["group"],
        )
        for group, is_pinned in sorted(self.model_pinned.items()):
            pinned.add_metric([group], float(is_pinned))
        yield pinned


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, help_text, value=value)
