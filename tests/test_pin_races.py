"""A retrain round's promotion racing an operator's rollback or pin, on a real registry
directory. The registry's files have no compare-and-swap, so the test runs the operator's
whole action before each file operation of the round (from its pin read on), and the round's
whole record-and-promote before each file operation of the operator's action. Every
interleaving must end pinned to the operator's version, that version current and the only
promoted one, and the round's candidate held (or rolled back with the operator's rollback)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from streamlstm.adapters.retrain.registry import ModelRegistry
from streamlstm.adapters.retrain.round import record_candidate
from streamlstm.config import Config
from streamlstm.datafiles import FileData, to_series
from streamlstm.records import Reading
from tests.helpers import tiny_config, tiny_model

FILE_OPS = ("exists", "read", "write", "remove", "list_dirs", "list_files", "read_dir", "put_dir")
BY = "ops"
OPERATOR: dict[str, Callable[[ModelRegistry], Any]] = {
    "rollback": lambda registry: registry.rollback("g", BY),
    "pin": lambda registry: registry.pin("g", BY, "hold this one"),
}


class Interleaved:
    """A registry's files that run ``before(i)`` ahead of their i-th operation and log
    each operation as (name, path)."""

    def __init__(self, files: Any, before: Callable[[int], None]) -> None:
        self._files, self._before = files, before
        self.ops: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._files, name)
        if name not in FILE_OPS:
            return attr

        def op(*args: Any) -> Any:
            self._before(len(self.ops))
            self.ops.append((name, str(args[0]) if args else ""))
            return attr(*args)

        return op


def _traced(root: Path, before: Callable[[int], None]) -> tuple[ModelRegistry, Interleaved]:
    registry = ModelRegistry(root)
    files = Interleaved(registry.files, before)
    registry.files = registry.control.files = files  # one handle, as one process has
    return registry, files


def _once_at(at: int, action: Callable[[], Any]) -> Callable[[int], None]:
    def before(i: int) -> None:
        if i == at:
            action()

    return before


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """g-aaaa then g-bbbb promoted: a rollback goes back to g-aaaa, a pin keeps g-bbbb."""
    root = tmp_path_factory.mktemp("template") / "models"
    registry = ModelRegistry(root)
    for seed, version in enumerate(("g-aaaa", "g-bbbb")):
        registry.add(tiny_model(seed, version), {}, {})
        registry.promote("g", version, "setup")
    return root


def _config() -> Config:
    tree = tiny_config().model_dump()
    tree["retrain"]["gate_margin"] = 10.0  # the gate passes the candidate: the round promotes
    return Config.model_validate(tree)


CONFIG = _config()
HELD = to_series(  # held-out readings for the gate: few, the gate's numbers do not matter here
    FileData(
        [
            Reading(s, 1_767_225_600.0 + 60 * k, (70.0 + k % 3, 97.0, 16.0 + k % 2), "g", "t", 0, 0)
            for k in range(12)
            for s in ("s1", "s2")
        ]
    )
)


def _round(registry: ModelRegistry) -> dict:
    return record_candidate(CONFIG, tiny_model(2, "g-cccc"), {}, {}, HELD, registry, "round")


def _round_into(results: list[dict], registry: ModelRegistry) -> None:
    results.append(_round(registry))


def _end_state(root: Path, result: dict) -> tuple[str, str, str]:
    """Checks the invariants; returns (round outcome, candidate status, pinned version)."""
    registry = ModelRegistry(root)
    pin = registry.control.pinned("g")
    assert pin is not None and pin["by"] == BY, pin
    assert registry.current("g") == pin["version"]
    promoted = [e["version"] for e in registry.entries("g") if e["status"] == "promoted"]
    assert promoted == [pin["version"]]
    candidate = registry.entry("g", "g-cccc")
    if pin["version"] != "g-cccc":  # the operator pinned another version: it won
        if result["outcome"] == "held":
            assert candidate["status"] == "candidate"
            assert candidate["held_by_pin"]["version"] == pin["version"]
        else:  # promoted before the operator read the history, and rolled back with it
            assert result["outcome"] == "promoted", result
            assert candidate["status"] == "retired" and candidate["rolled_back"] is True
    return result["outcome"], candidate["status"], pin["version"]


def _round_ops(root: Path) -> tuple[int, int]:
    """(first, count): the round's file operations from its pin read, on a dry run."""
    registry, files = _traced(root, lambda i: None)
    _round(registry)
    pin_reads = [i for i, (_, path) in enumerate(files.ops) if path.endswith("pin.json")]
    return pin_reads[0], len(files.ops)


@pytest.mark.parametrize("action", sorted(OPERATOR))
def test_an_operator_acting_between_any_two_steps_of_a_round_keeps_the_pin(
    tmp_path: Path, template: Path, action: str
) -> None:
    shutil.copytree(template, tmp_path / "dry")
    first, count = _round_ops(tmp_path / "dry")
    seen = set()
    for at in range(first, count + 1):  # count: the operator after the whole round
        root = tmp_path / f"at-{at}"
        shutil.copytree(template, root)
        operator = ModelRegistry(root)
        registry, _ = _traced(root, _once_at(at, partial(OPERATOR[action], operator)))
        result = _round(registry)
        if at == count:
            OPERATOR[action](operator)
        state = _end_state(root, result)
        steps = ModelRegistry(root).entry("g", "g-cccc")["transitions"]
        seen.add((*state, "promoted" in [t["status"] for t in steps]))
    # Operator before the round's pin read: held at once. After the round: the operator's
    # rollback goes back from the candidate, a pin keeps it. In between, the round promoted
    # and then put the pinned version back (restored: the candidate's transitions show it).
    previous = "g-aaaa" if action == "rollback" else "g-bbbb"
    assert ("held", "candidate", previous, False) in seen
    assert ("held", "candidate", previous, True) in seen
    if action == "rollback":
        assert ("promoted", "retired", "g-bbbb", True) in seen
    else:
        assert ("promoted", "promoted", "g-cccc", True) in seen


@pytest.mark.parametrize("action", sorted(OPERATOR))
def test_a_round_between_any_two_steps_of_an_operators_action_keeps_the_pin(
    tmp_path: Path, template: Path, action: str
) -> None:
    shutil.copytree(template, tmp_path / "dry")
    dry, files = _traced(tmp_path / "dry", lambda i: None)
    OPERATOR[action](dry)
    seen = set()
    for at in range(len(files.ops) + 1):
        root = tmp_path / f"at-{at}"
        shutil.copytree(template, root)
        results: list[dict] = []
        round_registry = ModelRegistry(root)
        operator, _ = _traced(root, _once_at(at, partial(_round_into, results, round_registry)))
        OPERATOR[action](operator)
        if not results:  # at == the count: the round after the whole action
            results.append(_round(round_registry))
        seen.add(_end_state(root, results[0]))
    # The round after the operator's pin: held. The round between the operator's read of the
    # history and its pin: promoted, then undone by the operator's re-read after the pin.
    previous = "g-aaaa" if action == "rollback" else "g-bbbb"
    assert ("held", "candidate", previous) in seen
    assert ("promoted", "retired", previous) in seen
