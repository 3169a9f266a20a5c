"""The layering of DESIGN §2, checked on the import graph of every module (imports inside
functions included): the core never imports Kafka, Ray, Prometheus, adapters or commands;
adapters never import commands; no circles between packages."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from tests.import_graph import CORE, module_name, package_of, read_imports, violations

ROOT = Path(__file__).resolve().parents[1] / "streamlstm"


def test_every_module_keeps_the_layering() -> None:
    assert violations(read_imports(ROOT)) == []


def test_project_imports_inside_functions_only_in_commands() -> None:
    """Module-level imports show every arrow to a reader; a command may defer an adapter so
    that ``streamlstm --help`` does not load Ray and Kafka."""
    inner = [
        f"{i.module}:{i.line} {i.target}"
        for i in read_imports(ROOT)
        if i.in_function
        and i.target.startswith("streamlstm")
        and package_of(i.module) != "commands"
    ]
    assert inner == []


def _tree_with(tmp_path: Path, rel: str, line: str) -> Path:
    root = tmp_path / "streamlstm"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    path = root / rel
    path.write_text(path.read_text() + f"\n\ndef _added() -> None:\n    {line}\n")
    return root


def test_the_check_fails_on_a_forbidden_import(tmp_path: Path) -> None:
    cases = {
        ("detect/detector.py", "from streamlstm.adapters.kafka.client import KafkaSource"): (
            "the core never imports adapters.kafka"
        ),
        ("stream/engine.py", "import ray"): "the core never imports ray",
        ("train/gate.py", "from streamlstm.commands.common import load_config"): (
            "the core never imports commands"
        ),
        ("adapters/ops/storage.py", "from streamlstm.commands import run"): (
            "adapters never import commands"
        ),
        ("detect/model.py", "from streamlstm.stream.engine import Engine"): (
            "import circle between packages"
        ),
    }
    for k, ((rel, line), expected) in enumerate(cases.items()):
        root = _tree_with(tmp_path / str(k), rel, line)
        found = violations(read_imports(root))
        assert any(expected in v for v in found), (rel, line, found)


def test_core_modules_load_no_edge_library() -> None:
    """What actually loads, in a clean process: every core module at once."""
    core = [
        module_name(ROOT, p)
        for p in sorted(ROOT.rglob("*.py"))
        if package_of(module_name(ROOT, p)) in CORE
    ]
    assert len(core) > 30
    code = (
        "import sys, importlib\n"
        f"for m in {core!r}: importlib.import_module(m)\n"
        "print(','.join(m for m in ('kafka', 'ray', 'prometheus_client') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


def test_every_package_says_what_lives_there_and_what_it_may_import() -> None:
    for init in sorted(ROOT.rglob("__init__.py")):
        if init.parent == ROOT:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "Imports:" in doc or "imports" in doc.lower(), init
        assert len(doc.splitlines()) >= 2, init
