"""The supervisor: starts or joins Ray, places ``PartitionWorker`` actors, assigns input
partitions to them, restarts dead ones, and drains them on shutdown.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray

from streamlstm.adapters.ops.logs import VERBOSE_ENV
from streamlstm.adapters.ray.handoff import resize
from streamlstm.adapters.ray.rebalance import HandOff
from streamlstm.adapters.ray.workers import PartitionWorker, plan_assignment
from streamlstm.config import Config

log = logging.getLogger(__name__)

TP = tuple[str, int]


# Ray Train's controller takes one reported result per health check (2 s by default) and a
# worker's report blocks until it is taken: every ray.train.report cost ~2 s, so epochs of a
# small model took 2 s instead of 0.1 s. Measured: 5 reports 8.1 s at 2 s, 0.8 s at 0.2 s.
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}
# Run in every Ray worker process: the actors' third-party loggers as quiet as the driver's.
QUIET_HOOK = "streamlstm.adapters.ops.logs.quiet_third_party"


def init_ray(config: Config) -> dict[str, Any]:
    """Join ``ray.address`` (or $RAY_ADDRESS), else start a local Ray sized for the workers."""
    import os

    if ray.is_initialized():
        return ray.cluster_resources()
    address = config.ray.address or os.environ.get("RAY_ADDRESS")
    env_vars = dict(RAY_ENV)
    if os.environ.get(VERBOSE_ENV):
        env_vars[VERBOSE_ENV] = os.environ[VERBOSE_ENV]
    common = {
        "namespace": "streamlstm",
        "log_to_driver": True,
        "logging_level": logging.WARNING,
        "runtime_env": {"env_vars": env_vars, "worker_process_setup_hook": QUIET_HOOK},
    }
    if address:
        ray.init(address=address, **common)
    else:
        # Scoring workers, Ray Train workers for retraining, and one spare (the trainer's
        # controller and small actors).
        cpus = max(2, int(config.ray.workers * config.ray.num_cpus) + config.retrain.workers + 1)
        ray.init(num_cpus=cpus, include_dashboard=config.ray.dashboard, **common)
    return ray.cluster_resources()


def restart_delay(deaths_in_a_row: int, base_s: float, max_s: float) -> float:
    """Seconds to wait before restarting a worker that died ``deaths_in_a_row`` times
    (1 = its first death): ``base_s``, doubled each time, at most ``max_s``."""
    return min(max_s, base_s * 2.0 ** min(max(deaths_in_a_row - 1, 0), 60))


def death_reason(exc: BaseException) -> str:
    """Class and message of the error behind an actor's death (a RayTaskError wraps the
    loop's own error in ``cause``), cut short: the log line, not a traceback."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    message = text[-1][:300] if text else ""
    return f"{type(cause).__name__}: {message}" if message else type(cause).__name__


class Supervisor:
    def __init__(
        self,
        config: Config,
        bootstrap: str,
        files: dict[str, dict[str, bytes]],
        partitions: list[TP],
        generation: int = 0,
        actor_options: dict[str, Any] | None = None,
    ):
        self.config, self.bootstrap, self.files = config, bootstrap, files
        self.partitions = sorted(partitions)
        self.generation = generation  # a re-plan gets fresh actor names
        self.actors: list[Any] = []
        self.runs: dict[int, Any] = {}
        self.plan: list[list[TP]] = []
        self.restarts = 0
        # per partition, the outcome ledger restored by its first start under this
        # supervisor: where its exported counters begin (MetricsHub.know_baselines)
        self.ledger_baselines: dict[tuple[str, int], list] = {}
        self.deaths: dict[int, int] = {}  # worker -> deaths in a row (backoff exponent)
        self.started_at: dict[int, float] = {}  # worker -> monotonic time of its last start
        self.restart_due: dict[int, float] = {}  # worker -> when a dead one restarts
        self.undrained: list[int] = []  # workers whose last drain failed (stop())
        self.previous: dict[str, dict[str, bytes]] = {}  # files served before the last stage
        self.actor_options = actor_options or {}  # extra Ray options (chaos tests: runtime_env)
        self.workers = config.ray.workers  # desired count; `streamlstm scale` changes it
        self.scales = 0  # scale changes done (new actors' names carry it: names stay unique)
        self.handoffs = 0  # partitions moved between workers by scale changes
        self.pauses: list[float] = []  # seconds each scale change paused the moved partitions
        self.retired: list[dict[str, Any]] = []  # final stats of workers removed by scale-in

    def _gpus_per_worker(self) -> float:
        wanted = self.config.ray.num_gpus
        have = ray.cluster_resources().get("GPU", 0.0)
        if wanted and have < wanted * self.workers:
            log.warning(
                "ray.num_gpus=%s per worker but the cluster has %s GPUs: using CPU", wanted, have
            )
            return 0.0
        return wanted

    def start(self) -> list[dict[str, Any]]:
        n = min(self.workers, max(1, len(self.partitions)))
        self.actors = [self.new_actor(i) for i in range(n)]
        self.plan = plan_assignment(self.partitions, n)
        # The model files go with start(), as on every restart, not with the constructor:
        # constructor arguments that large live in the object store, and a restart whose
        # arguments were lost there would fail (Ray warns about it at every start).
        started = ray.get(
            [a.start.remote(self.plan[i], self.files) for i, a in enumerate(self.actors)]
        )
        for info in started:
            self.note_start(info)
        self.runs = {i: a.run.remote() for i, a in enumerate(self.actors)}
        self.started_at = dict.fromkeys(self.runs, time.monotonic())
        return started

    def note_start(self, info: dict[str, Any]) -> None:
        """A worker started: the ledgers it restored, for partitions not started before."""
        for topic, partition, rows in info.get("ledgers", []):
            self.ledger_baselines.setdefault((topic, partition), rows)

    def new_actor(self, i: int) -> Any:
        """Worker actor ``i`` (not started: ``start`` gives it its partitions)."""
        cfg = self.config
        plain = cfg.model_dump()  # secrets stay SecretStr objects: pickled, never printed
        placement = {"scheduling_strategy": "SPREAD"} if cfg.ray.scheduling == "spread" else {}
        # A worker added by a later scale change may reuse an index whose killed actor's
        # name Ray has not released yet: the scale count keeps the name unique.
        suffix = f".{self.scales}" if self.scales else ""
        return PartitionWorker.options(
            name=f"streamlstm-worker-{self.generation}-{i}{suffix}",
            num_cpus=cfg.ray.num_cpus,
            num_gpus=self._gpus_per_worker(),
            get_if_exists=False,
            **placement,
            **self.actor_options,
        ).remote(plain, {}, self.bootstrap, i)

    def watch(self) -> list[str]:
        """Check the workers once; restart any that died, after their backoff delay.
        Returns what happened."""
        notes = []
        ready, _ = ray.wait(list(self.runs.values()), num_returns=len(self.runs), timeout=0)
        for i, ref in list(self.runs.items()):
            if ref not in ready:
                continue
            try:
                final = ray.get(ref)
                fenced = final.get("fenced") if isinstance(final, dict) else None
                # A fenced worker is not restarted: its partitions belong to a newer one.
                notes.append(f"worker {i} fenced ({fenced})" if fenced else f"worker {i} stopped")
                del self.runs[i]
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
                note = self._restart(i, exc)
                if note:
                    notes.append(note)
        return notes

    def _restart(self, i: int, exc: BaseException) -> str | None:
        """Restart dead worker ``i`` once its backoff delay has passed (None while waiting)."""
        now = time.monotonic()
        why = death_reason(exc)
        if i not in self.restart_due:  # a new death: schedule its restart
            rcfg = self.config.ray
            healthy = now - self.started_at.get(i, now) >= rcfg.restart_backoff_max_s
            self.deaths[i] = 1 if healthy else self.deaths.get(i, 0) + 1
            delay = restart_delay(
                self.deaths[i], rcfg.restart_backoff_s, rcfg.restart_backoff_max_s
            )
            self.restart_due[i] = now + delay
            return f"worker {i} died ({why}); restarting it in {delay:.1f} s"
        if now < self.restart_due[i]:
            return None
        try:
            self.note_start(
                ray.get(self.actors[i].start.remote(self.plan[i], self.files, self.previous))
            )
        except ray.exceptions.ActorUnavailableError:
            # Ray is still restarting the actor process: the dead run stays in ``runs``, so
            # the next check tries again instead of the supervisor dying.
            return f"worker {i} died ({why}); still restarting, retrying"
        del self.restart_due[i]
        self.restarts += 1
        self.started_at[i] = time.monotonic()
        self.runs[i] = self.actors[i].run.remote()
        return f"worker {i} restarted (death {self.deaths[i]} in a row)"

    def resize(self, n_workers: int) -> HandOff:
        """Scale to ``n_workers`` by snapshot hand-off (``handoff.py``); untouched workers
        keep running."""
        return resize(self, n_workers)

    def stage(self, files: dict[str, dict[str, bytes]]) -> None:
        """Hot-swap: every worker warms these models in shadow, then switches by itself."""
        self.previous.update({g: self.files[g] for g in files if g in self.files})
        self.files = {**self.files, **files}
        ray.get([a.stage.remote(files) for a in self.actors])

    def models(self) -> list[dict[str, str]]:
        return ray.get([a.models.remote() for a in self.actors])

    def stats(self) -> list[dict[str, Any]]:
        refs = [a.stats.remote() for a in self.actors]
        out = []
        for ref in refs:
            try:
                out.append(ray.get(ref, timeout=10))
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                out.append({"started": False})
        return out

    def metrics(self, timeout_s: float = 5.0) -> list[dict[str, Any] | None]:
        """Each worker's metric report (None for a worker that did not answer in time)."""
        refs = [a.metrics.remote() for a in self.actors]
        out: list[dict[str, Any] | None] = []
        for ref in refs:
            try:
                out.append(ray.get(ref, timeout=timeout_s))
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                out.append(None)
        return out

    def state_rows(self) -> dict[str, dict[str, Any]]:
        """Every stream's state row across all workers (for tests)."""
        merged: dict[str, dict[str, Any]] = {}
        for part in ray.get([a.state_rows.remote() for a in self.actors]):
            merged.update(part)
        return merged

    def stop(self, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Drain: each worker finishes its poll, flushes, snapshots, commits, and returns."""
        for actor in self.actors:
            actor.stop.remote()
        final = []
        deadline = time.monotonic() + timeout_s
        for i, ref in self.runs.items():
            try:
                final.append(ray.get(ref, timeout=max(1.0, deadline - time.monotonic())))
            except Exception as exc:  # a worker that cannot drain must not block shutdown
                log.error("worker %d did not drain cleanly: %s", i, death_reason(exc))
                self.undrained.append(i)
        for actor in self.actors:
            try:
                ray.get(actor.close.remote(), timeout=10)
            except Exception:
                log.debug("close failed", exc_info=True)
            ray.kill(actor)
        self.runs = {}
        return final
