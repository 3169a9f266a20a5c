"""Scheduled retraining beside scoring: every ``retrain.interval_s`` one round (read the input
topics, retrain, gate, record, promote) runs in a child process that joins the supervisor's
Ray cluster as a Ray job of its own.

Why a process and a job of its own: a round still running after ``retrain.timeout_s`` must
really stop, its Ray Train run included. Killing the round's process ends its job, and Ray then
kills the job's actors (the Train controller and workers) and removes the placement group that
reserves the workers' CPUs. A Ray task of the supervisor's own job is not enough: force-
cancelling it kills the Train actors too, but a placement group lives until its creating job
ends, and the supervisor's job does not end (measured with Ray 2.60: the CPUs stayed reserved).
The registry writes a version only after training, atomically, so a killed round leaves none.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamlstm.adapters.ray.supervisor import init_ray
from streamlstm.adapters.retrain.registry import ModelRegistry
from streamlstm.adapters.retrain.round import (
    RetrainData,
    from_topics,
    retrain_all,
    sweep_killed_runs,
)
from streamlstm.config import Config, from_dict
from streamlstm.records import format_ts

log = logging.getLogger("streamlstm.retrain")
RUN_PREFIX = "scheduled"  # Ray Train run names of scheduled rounds (swept when stale)
# The pause and the pins are read this often between rounds too, so the paused and pinned
# gauges follow a `models pause|pin` within a scrape or two, not only when the next round is
# due (an hour by default).
PAUSE_READ_EVERY_S = 15.0


class RetrainSchedule:
    """Start a round every ``retrain.interval_s``; stop it after ``retrain.timeout_s``.

    ``poll`` never blocks, so scoring never waits for a round. Failed and timed-out rounds are
    logged and counted, and the next round runs on schedule; per-group outcomes are counted as
    the round reports them. While the registry says paused (``models pause``) no round
    starts; a pinned group's rounds run but do not promote (``round``, outcome ``held``).
    """

    def __init__(
        self,
        config: Config,
        bootstrap: str,
        registry: Any,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config, self.bootstrap, self.registry = config, bootstrap, registry
        self.clock = clock or time.monotonic
        self.outcomes: dict[str, int] = {}
        self.last_success_at: float | None = None  # epoch seconds of the newest promotion
        self.paused = False  # by ``streamlstm models pause``, as last read from the registry
        self.pinned = {g.name: False for g in config.groups}  # `models pin|rollback`, likewise
        self._next = self.clock() + config.retrain.interval_s
        self._pause_read_at = -float("inf")
        self._round: _Round | None = None
        self._started = 0.0

    @property
    def running(self) -> bool:
        return self._round is not None

    def poll(self) -> None:
        """Called by the supervisor loop: look at the running round, start one when due."""
        now = self.clock()
        if self._round is not None:
            self._check(now)
        due = self._round is None and now >= self._next
        paused = self.paused
        if due or now - self._pause_read_at >= PAUSE_READ_EVERY_S:
            self._pause_read_at = now
            paused = self._paused()
            self._read_pins()
        if due:
            self._started, self._next = now, now + self.config.retrain.interval_s
            if paused:
                return
            try:
                self._round = _Round(self.config, self.bootstrap, self.registry)
            except OSError as exc:  # no disk space, no process: not a reason to stop scoring
                log.error("retrain: could not start a round: %s", exc)
                self._count("failed")

    def paused_groups(self) -> dict[str, bool]:
        """Per model group, whether its scheduled rounds are paused (the gauge). The pause is
        the registry's, for every group at once; per group so that the series match
        ``streamlstm_model_info``'s and alerts can join on ``group``."""
        return {group.name: self.paused for group in self.config.groups}

    def pinned_groups(self) -> dict[str, bool]:
        """Per model group, whether an operator pinned it (the gauge): its rounds hold."""
        return dict(self.pinned)

    def _read_pins(self) -> None:
        for group, was in self.pinned.items():
            try:
                pin = self.registry.control.pinned(group)
            except OSError as exc:  # keep the last value, as for the pause
                log.error("retrain %s: could not read its pin: %s", group, exc)
                continue
            if (pin is not None) != was:
                change = f"pinned to {pin['version']} by {pin.get('by')}" if pin else "unpinned"
                log.warning("retrain %s: %s", group, change)  # rounds hold while pinned
            self.pinned[group] = pin is not None

    def _paused(self) -> bool:
        """An operator's ``models pause`` (state in the registry): no round starts; logged
        when it begins and ends, not at every interval."""
        try:
            pause = self.registry.control.paused()
        except OSError as exc:  # an unreachable registry: the round would say more
            log.error("retrain: could not read the schedule's state: %s", exc)
            return False
        if (pause is not None) != self.paused:
            if pause is None:
                log.warning("retrain: scheduled rounds resumed")
            else:
                log.warning(
                    "retrain: scheduled rounds paused by %s at %s%s (streamlstm models resume)",
                    pause.get("by") or "an operator",
                    format_ts(float(pause["at"])),
                    f": {pause['reason']}" if pause.get("reason") else "",
                )
        self.paused = pause is not None
        return self.paused

    def _check(self, now: float) -> None:
        round_ = self._round
        assert round_ is not None
        if round_.exited():
            self._finish(round_)
        elif now - self._started > self.config.retrain.timeout_s:
            self._count("timeout")
            log.error(
                "retrain: round stopped after retrain.timeout_s=%.0f s; scoring continues on "
                "the current model, next round in %.0f s",
                self.config.retrain.timeout_s,
                max(0.0, self._next - now),
            )
        else:
            return
        round_.close()  # kills it if it still runs (its Ray job, Train run and all go too)
        self._round = None

    def _finish(self, round_: _Round) -> None:
        try:
            results = round_.results()
        except RuntimeError as exc:
            log.error("retrain: round failed (%s); scoring continues on the current model", exc)
            self._count("failed")
            return
        self.record(results)

    def record(self, results: dict[str, dict[str, Any]]) -> None:
        """Log and count a finished round's per-group results."""
        for group, result in results.items():
            log.warning("retrain %s: %s", group, describe(result))
            self._count(result["outcome"])
        # Only a promotion is a success for freshness: a skipped round (nothing new), a held
        # one (pinned) or a rejected one leaves the served model as old as it was.
        if any(r["outcome"] == "promoted" for r in results.values()):
            self.last_success_at = time.time()

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def describe(result: dict[str, Any]) -> str:
    """One log line for a group's round: outcome, version, and the gate's reasons."""
    text = result["outcome"]
    if result.get("version"):
        text += f" {result['version']}"
        if result.get("previous") and result["previous"] != result["version"]:
            text += f" (current {result['previous']})"
    reasons = result.get("reasons") or ([result["error"]] if result.get("error") else [])
    return text + (f": {'; '.join(reasons)}" if reasons else "")


class _Round:
    """One round's child process; its private folder holds the inputs, the results and the
    round's scratch files (Ray Train's storage). ``close`` kills the process if it still
    runs and removes the folder; so does the supervisor's exit, should it come first."""

    def __init__(self, config: Config, bootstrap: str, registry: Any) -> None:
        import ray

        self.dir = Path(tempfile.mkdtemp(prefix="streamlstm-retrain-"))  # mode 0700
        env = {**os.environ, "RAY_ADDRESS": _cluster_address(config, ray)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(self.dir)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,  # the supervisor's stdout carries its JSON
        )
        self.close = weakref.finalize(self, _end, self.proc, self.dir)
        # The inputs go through a pipe, never to disk: the config holds the SASL password.
        inputs = {
            "config": _revealed(config),
            "bootstrap": bootstrap,
            "registry": str(registry.root),
        }
        try:
            self.proc.stdin.write(json.dumps(inputs).encode())
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # the child died at once: reported as a failed round

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def results(self) -> dict[str, dict]:
        path = self.dir / "results.json"
        if self.proc.returncode != 0 or not path.exists():
            raise RuntimeError(f"its process exited with code {self.proc.returncode}")
        return json.loads(path.read_text())


def _revealed(config: Config) -> dict[str, Any]:
    """The config as plain JSON data, with the secret values themselves (for the pipe only)."""
    tree = config.model_dump(mode="json")
    for name in ("sasl_password", "ssl_password"):
        secret = getattr(config.kafka, name)
        if secret is not None:
            tree["kafka"][name] = secret.get_secret_value()
    return tree


def _cluster_address(config: Config, ray: Any) -> str:
    """Where the round's process joins: a Ray Client address as configured (a supervisor
    connected through ``ray://`` is not on a Ray node), else the supervisor's cluster."""
    configured = config.ray.address or os.environ.get("RAY_ADDRESS") or ""
    if configured.startswith("ray://"):
        return configured
    return ray.get_runtime_context().gcs_address


def _end(proc: subprocess.Popen, folder: Path) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)  # SIGKILL: reaped at once
    shutil.rmtree(folder, ignore_errors=True)


def main(folder: Path) -> None:
    """The round's process: join the supervisor's Ray, run the round, write the results."""

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")

    inputs = json.loads(sys.stdin.buffer.read())
    config, bootstrap = from_dict(inputs["config"]), inputs["bootstrap"]
    registry = ModelRegistry(inputs["registry"])
    _exit_with_parent(os.getppid(), folder)
    init_ray(config)  # joins $RAY_ADDRESS: the supervisor's cluster
    tempfile.tempdir = str(folder)  # scratch where the schedule sweeps, even after a kill
    # A round killed at retrain.timeout_s leaves its Train run's folder in the registry's
    # run storage; no scheduled round lives longer than that, so older ones are dead.
    sweep_killed_runs(registry, RUN_PREFIX, config.retrain.timeout_s)
    data, source = from_topics(config, bootstrap)
    inputs = RetrainData(
        data, source, by="retrain schedule", run_prefix=RUN_PREFIX, only_newer=True
    )
    results = retrain_all(config, inputs, registry, progress=False)
    (folder / "results.tmp").write_text(json.dumps(results, default=str))
    os.replace(folder / "results.tmp", folder / "results.json")


def _exit_with_parent(parent: int, folder: Path) -> None:
    """A round must not outlive its supervisor (and promote for a service that stopped)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        shutil.rmtree(folder, ignore_errors=True)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
