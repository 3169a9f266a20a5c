"""The project's import graph, read with ``ast`` from every module (imports inside functions
included), and the layering rules it must keep (DESIGN §2). Used by test_boundaries."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

CORE = (
    "detect",
    "stream",
    "train",
    "evaluation",
    "simulate",
    "config",
    "config_runtime",
    "records",
    "datafiles",
)
EDGE_LIBRARIES = ("kafka", "ray", "prometheus_client")
PROJECT_EDGE = ("adapters", "commands", "cli")


@dataclass(frozen=True)
class Import:
    module: str  # importing module, dotted
    target: str  # imported module, dotted (a project module, or a library's top name)
    line: int
    in_function: bool


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """``streamlstm.detect.model`` -> ``detect``; ``streamlstm.adapters.kafka.client`` ->
    ``adapters.kafka``; a top-level module is a package of its own (``config``)."""
    parts = module.split(".")[1:]
    if not parts:
        return "streamlstm"
    if parts[0] == "adapters" and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0]


def read_imports(root: Path) -> list[Import]:
    """Every import of every module under ``root`` (the ``streamlstm`` folder)."""
    modules = {module_name(root, p) for p in root.rglob("*.py")}
    out: list[Import] = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(root, path)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, in_function in _walk(tree, False):
            for target in _targets(node, modules):
                out.append(Import(name, target, node.lineno, in_function))
    return out


def _walk(node: ast.AST, in_function: bool):
    for child in ast.iter_child_nodes(node):
        inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        yield from _walk(child, inner)


def _targets(node: ast.Import | ast.ImportFrom, modules: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level or not node.module:
        raise AssertionError(f"relative import at line {node.lineno}: use absolute imports")
    # ``from streamlstm.detect import alerts`` imports the module streamlstm.detect.alerts
    subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
    return subs or [node.module]


def violations(imports: list[Import]) -> list[str]:
    """Each broken rule as a line naming the module, the line and the import."""
    bad = []
    for imp in imports:
        src, top = package_of(imp.module), imp.target.split(".")[0]
        dst = package_of(imp.target) if top == "streamlstm" else None
        where = f"{imp.module}:{imp.line} imports {imp.target}"
        if src in CORE and top in EDGE_LIBRARIES:
            bad.append(f"{where}: the core never imports {top}")
        if src in CORE and dst is not None and dst.split(".")[0] in PROJECT_EDGE:
            bad.append(f"{where}: the core never imports {dst}")
        if src.startswith("adapters") and dst in ("commands", "cli"):
            bad.append(f"{where}: adapters never import {dst}")
    return bad + [f"import circle between packages: {' -> '.join(c)}" for c in circles(imports)]


def package_graph(imports: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target.split(".")[0] != "streamlstm":
            continue
        src, dst = package_of(imp.module), package_of(imp.target)
        if src != dst and dst != "streamlstm":
            graph.setdefault(src, set()).add(dst)
    return graph


def circles(imports: list[Import]) -> list[list[str]]:
    """One path per circle found in the package graph (depth-first, each edge once)."""
    graph = package_graph(imports)
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found
