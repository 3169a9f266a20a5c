"""The model registry: every trained version of every group, with its evidence and status.

Layout (a local directory or any ``pyarrow.fs`` URI, see ``registry_files``)::

    <root>/<group>/<version>/      a model directory (checkpoint.save_model) plus entry.json
    <root>/<group>/history.json    promoted versions, oldest first (rollback walks it back)
    <root>/<group>/pin.json        the version an operator pinned (rollback, ``models pin``)
    <root>/schedule.json           the scheduled rounds' pause (``models pause|resume``)

``entry.json`` holds status (candidate | promoted | rejected | retired), parent version,
creation time, the data range trained on, train metrics, the gate's validation numbers and
every status change with who made it (``transitions``).
A version appears only complete (``registry_files``: renamed into place locally, its
``entry.json`` put last elsewhere), so a training run killed mid-way leaves no half-written
version; what it left is swept on the next add.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from streamlstm.adapters.retrain.registry_control import RegistryControl
from streamlstm.adapters.retrain.registry_files import COMMIT_FILE, open_files
from streamlstm.detect.detector import ScoringModel
from streamlstm.train.checkpoint import load_model, save_model
from streamlstm.train.rounds import stale_runs

STATUSES = ("candidate", "promoted", "rejected", "retired")
TRAIN_RUNS = ".train-runs"  # Ray Train's run storage, swept of finished runs


class RegistryError(RuntimeError):
    pass


class ModelRegistry:
    def __init__(self, root: str | Path):
        self.files = open_files(root)
        # A Path for a local registry, the URI as given otherwise.
        self.root: Path | str = getattr(self.files, "root", self.files.where)
        self.control = RegistryControl(self.files)  # pins and the schedule's pause

    # --- reading ------------------------------------------------------------------------
    def groups(self) -> list[str]:
        return [name for name in self.files.list_dirs() if name[0] != "."]

    def entries(self, group: str) -> list[dict[str, Any]]:
        """Every complete version of ``group``, oldest first."""
        found = [
            self._json(f"{group}/{name}/{COMMIT_FILE}")
            for name in self.files.list_dirs(group)
            if name[0] != "." and self.files.exists(f"{group}/{name}/{COMMIT_FILE}")
        ]
        return sorted(found, key=lambda e: (e["created_at"], e["version"]))

    def entry(self, group: str, version: str) -> dict[str, Any]:
        rel = f"{group}/{version}/{COMMIT_FILE}"
        if not self.files.exists(rel):
            raise RegistryError(f"no version {version!r} of group {group!r} in {self.root}")
        return self._json(rel)

    def status_of(self, group: str, version: str) -> str | None:
        """The status of ``version``, or None when the registry does not hold it."""
        rel = f"{group}/{version}/{COMMIT_FILE}"
        return self._json(rel)["status"] if self.files.exists(rel) else None

    def version_json(self, group: str, version: str, name: str) -> Any:
        """One JSON file of a version (``metrics.json``, ``model.json``), or None."""
        rel = f"{group}/{version}/{name}"
        return self._json(rel) if self.files.exists(rel) else None

    def current(self, group: str) -> str | None:
        history = self._history(group)
        return history[-1] if history else None

    def load(self, group: str, version: str | None = None) -> ScoringModel:
        version = version or self.current(group)
        if version is None:
            raise RegistryError(f"group {group!r} has no promoted version in {self.root}")
        with tempfile.TemporaryDirectory(prefix="streamlstm-registry-") as tmp:
            for name, data in self.files.read_dir(f"{group}/{version}").items():
                (Path(tmp) / name).write_bytes(data)
            return load_model(tmp)

    def train_storage(self) -> Path | str:
        """Where Ray Train keeps its runs for this registry (a dot-folder readers skip)."""
        return self.files.location(TRAIN_RUNS)

    def current_files(self, groups: list[str]) -> dict[str, dict[str, bytes]]:
        """The promoted version of each group, as the bytes the workers load."""
        out: dict[str, dict[str, bytes]] = {}
        for group in groups:
            version = self.current(group)
            if version:
                self.load(group, version)  # validates before shipping
                out[group] = self.files.read_dir(f"{group}/{version}")
        return out

    # --- writing ------------------------------------------------------------------------
    def add(self, model: ScoringModel, metrics: dict[str, Any], entry: dict[str, Any]) -> dict:
        """Store a new version as a candidate (atomically); returns its entry."""
        self.files.sweep(model.group)
        if self.files.exists(f"{model.group}/{model.version}/{COMMIT_FILE}"):
            return self.entry(model.group, model.version)  # the same weights: already here
        full = {
            "group": model.group,
            "version": model.version,
            "status": "candidate",
            "parent": self.current(model.group),
            "created_at": time.time(),
            **entry,
        }
        with tempfile.TemporaryDirectory(prefix="streamlstm-version-") as tmp:
            folder = save_model(Path(tmp) / "v", model, metrics)
            files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        files[COMMIT_FILE] = _dumps(full)
        self.files.put_dir(files, f"{model.group}/{model.version}")
        return full

    def set_status(
        self, group: str, version: str, status: str, by: str | None = None, **fields: Any
    ) -> dict:
        """Record a status change, with who made it and when in the entry's ``transitions``."""
        if status not in STATUSES:
            raise RegistryError(f"status must be one of {', '.join(STATUSES)}")
        entry = self.entry(group, version) | fields | {"status": status}
        if status == "promoted":  # the top level describes this promotion only
            for stale in ("retired_at", "rolled_back", "forced", "forced_over"):
                if stale not in fields:
                    entry.pop(stale, None)
        step = {"status": status, "at": time.time()} | ({"by": by} if by else {})
        if fields.get("forced"):
            step["forced"] = True  # kept in the history after a later, ordinary promotion
        entry["transitions"] = [*entry.get("transitions", []), step]
        self.files.write(f"{group}/{version}/{COMMIT_FILE}", _dumps(entry))
        return entry

    def promote(
        self,
        group: str,
        version: str,
        by: str | None = None,
        force: bool = False,
        release_pin: bool = True,
    ) -> dict:
        """Make ``version`` current; the version it replaces is retired; a pin is released.

        A version the gate rejected is promoted only with ``force``, and the entry records
        that it was forced, by whom, and the gate's reasons it overrode.

        ``release_pin=False`` is a retrain round's promotion: only an operator releases a pin.
        While the group is pinned, also by a pin that lands during this call, ``version`` is
        held instead (its entry comes back a ``candidate`` with ``held_by_pin``) and the
        pinned version stays, or is made again, the current one (see ``_back_to_pin``)."""
        entry = self.entry(group, version)
        forced = _forced(entry, version, force)
        if release_pin:
            self.control.unpin(group)
        elif (pin := self.control.pinned(group)) is not None:
            return self.hold(group, version, pin, by)
        previous = self.current(group)
        if previous == version:
            return entry
        if previous is not None:
            self.set_status(group, previous, "retired", by, retired_at=time.time())
        self._write_history(group, [*self._history(group), version])
        fields = {"promoted_at": time.time(), "promoted_by": by, **forced}
        promoted = self.set_status(group, version, "promoted", by, **fields)
        if not release_pin:  # read the pin again after the writes: see _back_to_pin
            pin = self.control.pinned(group)
            if pin is not None and pin["version"] != version:
                return self.hold(group, version, pin, by)
        return promoted

    def hold(self, group: str, version: str, pin: dict[str, Any], by: str | None = None) -> dict:
        """Keep a passing ``version`` a candidate because ``group`` is pinned (``pin``)."""
        self._back_to_pin(group, pin, by, spare=version)
        return self.set_status(group, version, "candidate", by, held_by_pin=pin)

    def pin(self, group: str, by: str | None, reason: str) -> dict[str, Any]:
        """Pin ``group`` to its current version (``models pin``); returns the pin."""
        current = self.current(group)
        if current is None:
            raise RegistryError(f"group {group!r} has no promoted version to pin")
        pin = self.control.pin(group, current, by, reason)
        self._back_to_pin(group, pin, by)  # a round that promoted since ``current`` was read
        return pin

    def rollback(self, group: str, by: str | None = None) -> dict:
        """Back to the version promoted before the current one; the current one is retired.

        The group is then pinned to that version: scheduled rounds keep training but do not
        promote until ``unpin`` (or an explicit ``promote``). The pin is written first, the
        history and statuses after it (see ``_back_to_pin``)."""
        history = self._history(group)
        if len(history) < 2:
            raise RegistryError(f"group {group!r} has no earlier promoted version to roll back to")
        current, previous = history[-1], history[-2]
        pin = self.control.pin(group, previous, by, f"rollback from {current}")
        self._back_to_pin(group, pin, by)
        return self.entry(group, previous)

    def _back_to_pin(
        self, group: str, pin: dict[str, Any], by: str | None, spare: str | None = None
    ) -> None:
        """Make the pinned version current: the history is cut after it, the versions cut are
        retired (``rolled_back``; ``spare``, a held candidate, is left to the caller), and the
        pinned one is marked promoted. No writes when the registry already agrees with the pin.

        Why it is called after every pin and after a round's promotion: the files have no
        compare-and-swap, so a round's promotion (write the history, then read the pin) and
        an operator's rollback or pin (write the pin, then read the history) can interleave.
        Each side writes before it reads the other's file (and a read sees every write that
        finished before it: so locally, and on S3 and GCS), so at least one of them sees the
        other's write and comes here, and both bring the registry to the same end: current
        == pinned, the pin kept, the round's candidate not promoted. What the order does not
        close: between a round's history write and its second pin read (a few file
        operations) the candidate is current, and a supervisor reading the registry then may
        swap to it and back; a round killed in that instant leaves it current until the next
        round's ``hold`` (or the operator's next pin or rollback) comes here. Two entry.json
        writes racing on one version can lose a ``transitions`` step, not the final status;
        two operators' rollbacks at once are not serialised."""
        pinned = pin["version"]
        history = self._history(group)
        if pinned in history:
            cut = len(history) - history[::-1].index(pinned)
            keep, dropped = history[:cut], history[cut:]
        else:
            keep, dropped = [*history, pinned], []
        if keep != history:
            self._write_history(group, keep)
        for version in dropped:
            if version != spare and self.status_of(group, version) == "promoted":
                self.set_status(
                    group, version, "retired", by, retired_at=time.time(), rolled_back=True
                )
        if self.status_of(group, pinned) != "promoted":
            self.set_status(
                group, pinned, "promoted", by, promoted_at=time.time(), promoted_by=pin.get("by")
            )

    def sweep_train_runs(self, prefix: str, max_age_s: float) -> list[str]:
        """Remove Ray Train run folders of killed rounds (``stale_runs``); returns them."""
        stale = stale_runs(self.files.list_dirs(TRAIN_RUNS), prefix, time.time(), max_age_s)
        for name in stale:
            self.files.remove(f"{TRAIN_RUNS}/{name}")
        return stale

    # --- internals ----------------------------------------------------------------------
    def _json(self, rel: str) -> Any:
        return json.loads(self.files.read(rel))

    def _history(self, group: str) -> list[str]:
        rel = f"{group}/history.json"
        return self._json(rel) if self.files.exists(rel) else []

    def _write_history(self, group: str, versions: list[str]) -> None:
        self.files.write(f"{group}/history.json", _dumps(versions))


def _forced(entry: dict[str, Any], version: str, force: bool) -> dict[str, Any]:
    """The fields that record a forced promotion; a rejected version needs ``force``."""
    if entry["status"] != "rejected":
        return {}
    reasons = (entry.get("validation") or {}).get("reasons") or []
    if not force:
        raise RegistryError(
            f"{version} was rejected by the validation gate ({'; '.join(reasons)}); "
            "promote it anyway with --force"
        )
    return {"forced": True, "forced_over": reasons}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, indent=2, default=str).encode()
