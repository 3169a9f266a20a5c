"""Training through Ray Train: the core's one training loop (``train.fit.fit``) inside
``TorchTrainer`` workers.

Each worker gets every series and trains on its shard of lanes (DDP when there are several);
the loss of every epoch goes out with ``ray.train.report``; rank 0 writes the model directory
(``checkpoint.save_model``) and reports it as the run's checkpoint. ``streamlstm train`` runs
the same ``fit`` in-process: there is one training code path.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamlstm.config import Config, DetectorConfig, GroupConfig, TrainingConfig
from streamlstm.datafiles import Series
from streamlstm.detect.detector import ScoringModel
from streamlstm.train.checkpoint import save_model
from streamlstm.train.fit import fit
from streamlstm.train.models import model_version


@dataclass
class TrainOutcome:
    model_dir: Path  # the checkpoint's model directory (copied out of Ray's storage)
    losses: list[float]  # per epoch, as reported
    wall_s: float  # trainer.fit() from call to return
    first_report_s: float | None  # time to the first epoch report: start-up + one epoch


def train_group(
    config: Config,
    group_name: str,
    series: list[Series],
    out_dir: Path,
    storage: Path | str,
    on_epoch: Callable[[int, float], None] | None = None,
    run_prefix: str = "train",
) -> TrainOutcome:
    """Train one group with Ray Train (Ray must be initialised); the model lands in out_dir.

    ``storage`` is Ray Train's run storage: a local directory or a pyarrow.fs URI. On a
    cluster with workers on other nodes it must be storage they all reach. The run's folder
    there is ``<run_prefix>-<group>-<start epoch s>-<id>``: the start time lets the next round
    sweep a killed run's folder (``registry.sweep_train_runs``).
    """
    import ray
    from ray.train import RunConfig, ScalingConfig

    group = config.group(group_name)
    progress = _new_progress()
    loop_config = {
        "group": group.model_dump(),
        "training": config.training.model_dump(),
        "detector": config.detector.model_dump(),
        "series": [(s.stream, s.ts, s.values) for s in series],
        "progress": progress,
    }
    trainer = _trainer_class()(
        _train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=config.retrain.workers, use_gpu=config.retrain.use_gpu
        ),
        run_config=RunConfig(
            name=f"{run_prefix}-{group_name}-{int(time.time())}-{uuid.uuid4().hex[:8]}",
            storage_path=storage if isinstance(storage, str) else str(storage.resolve()),
        ),
    )
    started, started_wall = time.perf_counter(), time.time()
    watcher = _Watcher(progress, on_epoch) if on_epoch else None
    try:
        result = trainer.fit()
    finally:
        if watcher:
            watcher.stop()
    wall_s = time.perf_counter() - started
    if result.error is not None:
        raise RuntimeError(f"training {group_name} failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError(f"training {group_name} returned no checkpoint")
    target = out_dir / group_name
    result.checkpoint.to_directory(str(target))
    _remove_run(result)
    losses = ray.get(progress.losses.remote())
    first = ray.get(progress.first_at.remote())
    return TrainOutcome(target, losses, wall_s, None if first is None else first - started_wall)


def _trainer_class() -> type:
    """``TorchTrainer`` without Ray Train's detached placement-group cleaner.

    Every caller is a driver process whose Ray job ends with it, and Ray removes a job's
    placement groups when the job ends, so the cleaner adds nothing here. It also outlives a
    killed run: it asks the state API whether the controller is alive, and without the
    dashboard (``init_ray``'s default) it never learns, so it polls forever in a process of its
    own (seen with Ray 2.60 after every killed retrain).
    """
    from ray.train.torch import TorchTrainer

    try:
        from ray.train.v2._internal.callbacks.placement_group_callback import (
            PlacementGroupCleanerCallback,
        )
    except ImportError:  # another Ray version: keep its defaults
        return TorchTrainer

    class Trainer(TorchTrainer):
        def _create_default_callbacks(self) -> list:
            return [
                cb
                for cb in super()._create_default_callbacks()
                if not isinstance(cb, PlacementGroupCleanerCallback)
            ]

    return Trainer


def _remove_run(result: Any) -> None:
    """The run's folder in Ray Train's storage: its checkpoint is copied out, so it goes (a
    killed run's folder stays; it holds one model's files)."""
    # Best effort: storage that refuses a delete costs a little space, nothing more.
    with contextlib.suppress(OSError):
        result.filesystem.delete_dir(result.path)


def _train_loop(loop_config: dict[str, Any]) -> None:
    """Runs inside each Ray Train worker."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    group = GroupConfig(**loop_config["group"])
    series = [Series(stream, ts, values) for stream, ts, values in loop_config["series"]]
    progress = loop_config["progress"]

    def on_epoch(epoch: int, loss: float) -> None:
        if rank == 0 and progress is not None:
            progress.add.remote(epoch, loss, time.time())
        ray.train.report({"epoch": epoch, "loss": loss})

    result = fit(
        series,
        group.features,
        group.model,
        TrainingConfig(**loop_config["training"]),
        DetectorConfig(**loop_config["detector"]),
        ray.train.torch.get_device(),
        on_epoch,
        shard=(rank, world),
        wrap=ray.train.torch.prepare_model if world > 1 else None,
    )
    final = {"epoch": len(result.metrics["train_loss"]), "loss": result.metrics["train_loss"][-1]}
    if rank != 0:
        ray.train.report(final)
        return
    model = ScoringModel(
        group.name, model_version(group.name, result.net), group.features, result.net, result.prior
    )
    with tempfile.TemporaryDirectory() as tmp:
        save_model(Path(tmp), model, {**result.metrics, "train_workers": world})
        ray.train.report(final, checkpoint=ray.train.Checkpoint.from_directory(tmp))


class _ProgressImpl:
    """Relays epoch losses from the rank-0 training worker to the driver, as they happen."""

    def __init__(self) -> None:
        self.epochs: list[tuple[int, float, float]] = []

    def add(self, epoch: int, loss: float, at: float) -> None:
        self.epochs.append((epoch, loss, at))

    def since(self, n: int) -> list[tuple[int, float, float]]:
        return self.epochs[n:]

    def losses(self) -> list[float]:
        return [loss for _, loss, _ in self.epochs]

    def first_at(self) -> float | None:
        return self.epochs[0][2] if self.epochs else None


class _Watcher:
    """A driver thread that forwards new epochs to ``on_epoch`` (e.g. a progress bar)."""

    def __init__(self, progress: Any, on_epoch: Callable[[int, float], None]) -> None:
        import threading

        self.progress, self.on_epoch = progress, on_epoch
        self.seen = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.5):
            self._forward()

    def _forward(self) -> None:
        import ray

        for epoch, loss, _ in ray.get(self.progress.since.remote(self.seen)):
            self.on_epoch(epoch, loss)
            self.seen += 1

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self._forward()  # whatever arrived after the last poll


def _new_progress() -> Any:
    import ray

    return ray.remote(num_cpus=0)(_ProgressImpl).remote()
