"""Ray actors: ``PartitionWorker`` runs a ``StreamWorker`` over its assigned partitions with
its own Kafka consumer and producer (records never pass through the supervisor).

Actors are named (``streamlstm-worker-<generation>-<i>``) and restartable: when one dies Ray
starts it again and the supervisor re-issues its assignment, so it restores each partition's
newest snapshot and seeks past it. Each start claims the partitions' next fencing generation
(``ops/fencing.py``): a worker that finds its generation stale stops and writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import ray

from streamlstm.adapters.kafka.client import KafkaSink, KafkaSource
from streamlstm.adapters.kafka.options import client_options, producer_options
from streamlstm.adapters.kafka.topics import topic_record_limit
from streamlstm.adapters.ops.fencing import Fence, FencedSource, FencedStore, StaleGeneration
from streamlstm.adapters.ops.flight import FlightFile, flight_path, resume_flight
from streamlstm.adapters.ops.health import PartitionProgress
from streamlstm.adapters.ops.heap import GcPauses, freeze_long_lived
from streamlstm.adapters.ops.storage import SnapshotStore
from streamlstm.adapters.ray.model_bytes import load_models as _load_models
from streamlstm.adapters.ray.model_bytes import model_files
from streamlstm.adapters.ray.restart_models import pick_models
from streamlstm.config import Config, from_dict
from streamlstm.detect.alerts import OPEN, SEVERITY
from streamlstm.detect.columns import Col
from streamlstm.detect.state import table_rows
from streamlstm.record_parser import RecordParser
from streamlstm.stream.crashpoints import wrap_store
from streamlstm.stream.engine import Engine
from streamlstm.stream.loop import CrashPoints, StreamWorker
from streamlstm.stream.metric_counts import MetricCounts
from streamlstm.stream.poison import PoisonLedger
from streamlstm.stream.ports import Counters
from streamlstm.threads import set_threads

# model_files (from model_bytes.py) stays importable from here, where callers found it.
__all__ = ["PartitionWorker", "PartitionWorkerImpl", "loop_alive", "model_files", "plan_assignment"]

log = logging.getLogger(__name__)

TP = tuple[str, int]


def plan_assignment(partitions: list[TP], n_workers: int) -> list[list[TP]]:
    """Spread partitions evenly (round-robin over a sorted list): a pure, stable decision."""
    plan: list[list[TP]] = [[] for _ in range(n_workers)]
    for i, tp in enumerate(sorted(partitions)):
        plan[i % n_workers].append(tp)
    return plan


def _node_id() -> str | None:
    """The Ray node this worker runs on (None outside Ray: an in-process test)."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def loop_alive(running: bool, heartbeat: float, now: float, timeout_s: float) -> bool:
    """Up = its loop runs and finished a poll within ``timeout_s`` (monotonic seconds)."""
    return running and now - heartbeat <= timeout_s


class _TopicSink:
    """Binds the alert and DLQ topics to the Kafka producer (the loop's ``Sink``)."""

    def __init__(self, producer, alerts_topic: str, dlq_topic: str):
        self.producer, self.alerts_topic, self.dlq_topic = producer, alerts_topic, dlq_topic

    def send_alert(self, key: bytes, value: bytes) -> None:
        self.producer.send_alert(self.alerts_topic, key, value)

    def send_dlq(self, record, stage: str, reason: str) -> None:
        self.producer.send_dlq(self.dlq_topic, record, stage, reason)

    def flush(self, timeout_s: float) -> None:
        self.producer.flush(timeout_s)


class PartitionWorkerImpl:
    """The actor's body (plain class, so it can also run in-process in tests)."""

    def __init__(
        self, config: dict[str, Any], files: dict[str, dict[str, bytes]], bootstrap: str, index: int
    ):
        self.config: Config = from_dict(config)
        self.files, self.bootstrap, self.index = files, bootstrap, index
        self.worker = None
        self.source = None
        self.sink = None
        self.fence: Fence | None = None
        self.partitions: list[TP] = []
        self._stop = threading.Event()
        self._running = threading.Lock()
        self.heartbeat = 0.0  # monotonic time the loop last finished a poll
        self.progress = PartitionProgress({}, 0)  # per partition: last poll, last commit
        self.gc_pauses = GcPauses()
        # Both kept across restarts of the loop in this process: metric deltas since the
        # last drain, and the loop's telemetry. Outcome counts live in the partitions'
        # ledgers, restored from the snapshots at every start (stream/ledger.py).
        self.counts = MetricCounts()
        self.counters = Counters()
        self.poison = PoisonLedger(self.config.input.poison_after)  # failures per record
        self.flight: FlightFile | None = None  # opened by the first start of this process

    def start(
        self,
        partitions: list[TP],
        files: dict[str, dict[str, bytes]] | None = None,
        previous: dict[str, dict[str, bytes]] | None = None,
    ) -> dict[str, Any]:
        """Build the loop for ``partitions``: restore snapshots and seek past them.

        ``files`` replaces the models given at construction (a restart after a hot-swap);
        ``previous`` are the models served before it (see ``restart_models``).
        """
        if files is not None:
            self.files = files
        if self.source is not None:  # a restart in this process (its run task failed)
            self.close()
        import torch

        cfg = self.config
        if self.flight is None:  # this process's first start: what a dead one left
            where = flight_path(cfg.checkpoint.dir, cfg.kafka.group_id, self.index)
            self.flight = resume_flight(where, self.poison, f"worker {self.index}")
        # The actor's CPU share (ray.num_cpus, at least 1) sizes torch's thread pool: workers
        # sharing a machine must not each spin a thread per core.
        set_threads(share=cfg.ray.num_cpus)
        gpu = bool(ray.get_gpu_ids()) if ray.is_initialized() else False
        device = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
        crash = CrashPoints.from_env()
        snapshots = SnapshotStore(cfg.checkpoint.dir, cfg.checkpoint.keep, crash.hit)
        # Claimed before anything is restored: from here on, whoever held these partitions
        # before this start writes nothing more.
        self.fence = Fence.claim(snapshots, [tuple(tp) for tp in partitions])
        store = wrap_store(FencedStore(snapshots, self.fence))
        serve, staged = pick_models(self.files, previous or {}, store, partitions)
        engine = Engine.build(cfg, _load_models(serve), device)
        options = client_options(cfg.kafka)
        self.source = KafkaSource(
            self.bootstrap, cfg.kafka.group_id, options, max_poll_records=cfg.kafka.max_poll_records
        )
        self.source.assign([tuple(tp) for tp in partitions])
        self.sink = _TopicSink(
            KafkaSink(
                self.bootstrap,
                options | producer_options(cfg.kafka.producer),
                dlq_limit=topic_record_limit(self.bootstrap, cfg.kafka.dlq_topic, options),
            ),
            cfg.kafka.alerts_topic,
            cfg.kafka.dlq_topic,
        )
        self.worker = StreamWorker(
            engine,
            RecordParser(cfg.input, cfg.groups),
            FencedSource(self.source, self.fence),
            self.sink,
            store,
            time.monotonic,
            cfg.checkpoint.interval_s,
            metrics=self.counts,
            crash=crash,
            wall_clock=time.time,
            counters=self.counters,
            timer=time.perf_counter,  # seconds per loop stage (bench e2e --profile)
            max_streams=cfg.state.max_streams,
            poison=self.poison,
            flight=self.flight,
        )
        self.partitions = [tuple(tp) for tp in partitions]
        starts = self.worker.assign(self.partitions)
        self.progress = PartitionProgress(starts, self.counters.checkpoints)
        for model in _load_models(staged).values():
            log.warning(
                "%s: restarted mid-swap: %s warms in shadow again", model.group, model.version
            )
            self.worker.request_stage(model, cfg.retrain.shadow_readings)
        # The models, the restored state and the imports are here to stay: no full
        # collection scans them again (ops/heap.py: 144-192 ms pauses of the loop before).
        freeze_long_lived()
        self.gc_pauses.install()
        self._stop.clear()
        return {
            "worker": self.index,
            "node": _node_id(),
            "device": str(device),
            "starts": {f"{t}:{p}": o for (t, p), o in starts.items()},
            # what this start restored: the exporter's first mark for a partition it has not
            # seen yet, even if this process dies before its first metrics report
            "ledgers": self.worker.ledgers.restored_rows(),
        }

    def run(self) -> dict[str, Any]:
        """Poll until ``stop``; then drain: a final checkpoint (flush, snapshot, commit).
        A stale fencing generation ends the loop at once, with nothing written."""
        try:
            with self._running:
                self._loop()
                self.worker.crash.hit("before_drain")
                self.worker.checkpoint()
        except StaleGeneration as exc:
            log.error(
                "worker %d fenced: %s. Another worker owns the partition now: this one stops "
                "without writing a snapshot or a commit",
                self.index,
                exc,
            )
            self.counts.fenced()
            return self.stats() | {"fenced": str(exc)}
        return self.stats()

    def _loop(self) -> None:
        kcfg, scfg = self.config.kafka, self.config.state
        last_evict = last_fence = self.heartbeat = time.monotonic()
        while not self._stop.is_set():
            self.worker.run_once(kcfg.poll_timeout_s, kcfg.max_poll_records)
            self.heartbeat = time.monotonic()
            self.progress.polled(time.time(), self.worker.next_offset, self.counters.checkpoints)
            if scfg.evict_idle_s and time.monotonic() - last_evict >= scfg.evict_check_s:
                last_evict = time.monotonic()
                self.worker.evict_idle(scfg.evict_idle_s)
            if time.monotonic() - last_fence >= self.config.checkpoint.interval_s:
                # Also when there is nothing to checkpoint: an idle stale worker stops too.
                last_fence = time.monotonic()
                self.fence.check()

    def stop(self) -> None:
        self._stop.set()

    def stage(self, files: dict[str, dict[str, bytes]]) -> list[str]:
        """Warm these models in shadow; each takes over when warm. Returns their versions
        once the loop has them (or after 30 s if it is stuck in a long batch)."""
        models = _load_models(files)
        self.files = {**self.files, **files}
        for model in models.values():
            self.worker.request_stage(model, self.config.retrain.shadow_readings)
        # Return once the loop warms them: readings arriving after this see the shadow.
        deadline = time.monotonic() + 30.0
        while self.worker.stage_pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        return [m.version for m in models.values()]

    def models(self) -> dict[str, str]:
        """The version each group is scored with now."""
        return {g: d.model.version for g, d in self.worker.engine.detectors.items()}

    def stats(self) -> dict[str, Any]:
        if self.worker is None:
            return {"worker": self.index, "started": False}
        c = self.worker.counters
        # records/scored/warming/dlq/alerts/by_reason: every record of the assigned
        # partitions below their positions, each counted once whatever restarts happened
        # (live); "durable": the same as of each partition's last snapshot.
        return {
            "worker": self.index,
            "node": _node_id(),
            "started": True,
            **self.worker.totals().summary(),
            "durable": self.worker.totals(durable=True).summary(),
            "replayed": c.replayed,
            "swaps": c.swaps,
            "evicted": c.evicted,
            "checkpoints": c.checkpoints,
            "polls": c.polls,
            "stage_s": dict(c.stage_s),
            "stage_max_s": dict(c.stage_max_s),
            "gc": self.gc_pauses.totals(),
            "partitions": [f"{t}:{p}" for t, p in self.partitions],
            "positions": {f"{t}:{p}": o for (t, p), o in self.worker.next_offset.items()},
            "streams": sum(len(t) for t in self.worker.engine.tables.values()),
        }

    def metrics(self) -> dict[str, Any]:
        """Metric deltas since the last call, and gauges (for the supervisor's exporter)."""
        running = self._running.locked()
        alive = loop_alive(
            running, self.heartbeat, time.monotonic(), self.config.ray.heartbeat_timeout_s
        )
        report: dict[str, Any] = {
            "worker": self.index,
            "counts": self.counts.drain(),
            "loop_alive": alive,
            "partitions_health": self.progress.report() if running else [],
        }
        if self.worker is None:
            return report

        open_alerts = dict.fromkeys(SEVERITY.values(), 0)
        for table in self.worker.engine.tables.values():
            is_open = table.host[Col.A_STATE] == OPEN
            for code, name in SEVERITY.items():
                open_alerts[name] += int(
                    np.count_nonzero(is_open & (table.host[Col.A_SEVERITY] == code))
                )
        return report | {
            "open_alerts": open_alerts,
            "streams": sum(len(t) for t in self.worker.engine.tables.values()),
            "positions": [[t, p, o] for (t, p), o in self.worker.next_offset.items()],
            "models": self.models(),
            "ledgers": self.worker.ledgers.report(),  # the outcome counters (ledger.advance)
        }

    def latency(self, reset: bool = False) -> dict[str, float]:
        """p50/p99 seconds from broker append time to score, over recent records."""
        if self.worker is None:
            return {}
        out = self.worker.latency.quantiles()
        if reset:
            self.worker.latency.reset()
        return out

    def state_rows(self) -> dict[str, dict[str, np.ndarray]]:
        """Every stream's state row (h, c, statistics, alert state), for tests."""

        out: dict[str, dict[str, np.ndarray]] = {}
        for table in self.worker.engine.tables.values():
            out.update(table_rows(table))
        return out

    def close(self) -> None:
        self.gc_pauses.remove()
        if self.source is not None:
            self.source.close()
        if self.sink is not None:  # flushed by the drain: nothing left to lose
            self.sink.producer.close()


PartitionWorker = ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=4)(
    PartitionWorkerImpl
)
