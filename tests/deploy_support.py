"""Loaders and helpers shared by the deployment-file tests (tests/test_deploy_*.py):
the parsed compose file, manifests, dashboard, documented metrics and the real argument
parsers the files are checked against."""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from streamlstm import config as cfg

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "streamlstm.json"
K8S = ROOT / "deploy" / "k8s"
DS_UID = "streamlstm-prometheus"

COMPOSE_SERVICES = {
    "kafka",
    "ray-head",
    "ray-worker",
    "streamlstm",
    "simulator",
    "prometheus",
    "alertmanager",
    "grafana",
}
K8S_KINDS = {
    "configmap.yaml": [("v1", "ConfigMap")],
    "storage.yaml": [("v1", "PersistentVolumeClaim")],
    "networkpolicy.yaml": [("networking.k8s.io/v1", "NetworkPolicy")],
    "raycluster.yaml": [("ray.io/v1", "RayCluster")],
    "supervisor-deployment.yaml": [("apps/v1", "Deployment"), ("v1", "Service")],
    "retrain-rayjob.yaml": [("ray.io/v1", "RayJob")],
    "retrain-raycronjob.yaml": [("ray.io/v1", "RayCronJob")],
    "kustomization.yaml": [("kustomize.config.k8s.io/v1beta1", "Kustomization")],
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
METRIC_TOKEN = re.compile(r"streamlstm_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# --- loaders and shared helpers -------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


@cache
def k8s_docs(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)


def k8s_doc(name: str, kind: str) -> dict[str, Any]:
    (doc,) = [d for d in k8s_docs(name) if d["kind"] == kind]
    return doc


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@cache
def lock_ray_version() -> str:
    found = re.search(r"^ray==(\S+)$", (ROOT / "tools/requirements.lock").read_text(), re.M)
    assert found, "tools/requirements.lock pins no ray version"
    return found.group(1)


@cache
def documented_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """docs/metrics.md's table: name -> (type, label names)."""
    table: dict[str, tuple[str, frozenset[str]]] = {}
    for line in (ROOT / "docs/metrics.md").read_text().splitlines():
        if not line.startswith("| `streamlstm_"):
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        name, kind, labels = cells[0].strip("`"), cells[1], cells[2]
        labels = re.sub(r"\(.*?\)", "", labels)  # "(the closed set in ..., e.g. `x`)"
        names = re.findall(r"(?:^|[,;]\s*)`([a-z_]+)`", labels)
        table[name] = (kind, frozenset(names))
    assert len(table) >= 15, "could not read the metrics table of docs/metrics.md"
    return table


def metric_base(token: str) -> str:
    """A series name as used in PromQL -> the documented metric (histograms lose _bucket...)."""
    table = documented_metrics()
    for suffix in HISTOGRAM_SUFFIXES:
        base = token.removesuffix(suffix)
        if token.endswith(suffix) and table.get(base, ("",))[0] == "histogram":
            return base
    return token


@cache
def streamlstm_parser():
    from streamlstm.cli import build_parser

    return build_parser()


def parse_streamlstm(argv: list[str]):
    """The real CLI parser: an unknown subcommand or flag, or a missing value, fails."""
    try:
        return streamlstm_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`streamlstm {' '.join(argv)}` is not a valid command line ({exc})")


def parse_ray(argv: list[str]) -> dict[str, Any]:
    """Ray's own click CLI, parsed without running anything (`ray start ...`, `ray status`)."""
    import click
    from ray.scripts import scripts

    command = {"start": scripts.start, "status": scripts.status}[argv[0]]
    try:
        return command.make_context(argv[0], list(argv[1:])).params
    except click.UsageError as exc:
        pytest.fail(f"`ray {' '.join(argv)}` is not a valid command line ({exc})")


def ray_start_options() -> set[str]:
    from ray.scripts import scripts

    return {opt for param in scripts.start.params for opt in param.opts}


def config_field(path: list[str]) -> bool:
    """Whether ``a.b.c`` names a field of ``streamlstm.config.Config`` (recursively)."""
    model: Any = cfg.Config
    for key in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return False
        field = model.model_fields.get(key)
        if field is None:
            return False
        model = field.annotation
    return True


def env_key_path(name: str) -> list[str]:
    return name.removeprefix(cfg.ENV_PREFIX).lower().split("__")


def attr_path(obj: Any, path: list[str]) -> Any:
    for key in path:
        obj = getattr(obj, key)
    return obj


def as_list(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else list(value or [])


def env_dict(env: Any) -> dict[str, str]:
    """Compose ``environment`` (a mapping or a list of NAME=value) as a dict."""
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    return dict(item.split("=", 1) for item in env or [])


def mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, source, target) of each volume entry (short or long syntax)."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found.append((volume["type"], volume.get("source", ""), volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            found.append((kind, source, target))
    return found


def host_path_of(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file a bind mount puts at ``container_path`` in the container."""
    for kind, source, target in mounts(service):
        if kind == "bind" and (container_path + "/").startswith(target.rstrip("/") + "/"):
            return (ROOT / source / container_path[len(target) :].lstrip("/")).resolve()
    return None
