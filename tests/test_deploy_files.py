"""Structure of the deployment files: docker-compose.yml, deploy/Dockerfile, the Grafana
provisioning and dashboard, and the Kubernetes (KubeRay) manifests in deploy/k8s.

No Docker engine or Kubernetes cluster runs here, so the files are parsed and checked
against the code they drive: config keys against ``streamlstm.config``, command lines
against the real argument parsers (streamlstm's argparse, Ray's click), and metric names and
labels against docs/metrics.md. ``docker compose config`` and ``kubectl kustomize`` run only
when those binaries exist.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
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


# --- docker-compose.yml ---------------------------------------------------------------------


def uses_streamlstm_image(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith("streamlstm:")


def test_compose_has_the_services():
    missing = COMPOSE_SERVICES - set(services())
    assert not missing, missing


def test_kafka_runs_in_kraft_mode():
    kafka = services()["kafka"]
    env = env_dict(kafka["environment"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in env["KAFKA_LISTENERS"]
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node}@kafka:")
    assert not any("ZOOKEEPER" in k for k in env)
    assert not any("zookeeper" in str(s.get("image", "")) for s in services().values())


def test_every_image_is_pinned():
    for name, service in services().items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"{name}: neither image nor build"
            continue
        if "build" in service:
            continue  # built here from deploy/Dockerfile (streamlstm:latest is allowed)
        repo, _, tag = image.rpartition(":")
        if repo.endswith("rayproject/ray"):  # a stock Ray image must be the lock's Ray
            assert tag.startswith(lock_ray_version() + "-") or tag == lock_ray_version(), image
        assert "@sha256:" in image or (repo and tag and "/" not in tag), f"{name}: {image}"
        assert tag != "latest", f"{name}: {image} is not pinned"


def test_streamlstm_image_is_built_not_pulled():
    """Every service that runs the streamlstm image builds it from deploy/Dockerfile: no
    `streamlstm` image is ever pulled from a registry."""
    for name, service in services().items():
        if str(service.get("image", "")).startswith("streamlstm:"):
            build = service.get("build")
            assert build, f"{name}: runs streamlstm:* without a build section"
            assert (ROOT / build["context"] / build["dockerfile"]) == DOCKERFILE
            assert service.get("pull_policy") in (None, "build", "never")


def test_published_ports_bind_loopback_only():
    for name, service in services().items():
        assert service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                parts = str(port).split(":")
                assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{name}: {port}"


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


def test_bind_mounts_exist_and_named_volumes_are_declared():
    declared = set(compose().get("volumes") or {})
    for name, service in services().items():
        for kind, source, target in mounts(service):
            if kind == "bind":
                path = (ROOT / source).resolve()
                assert path.exists(), f"{name}: bind mount {source} does not exist"
                assert ROOT in path.parents or path == ROOT, f"{name}: {source} outside the repo"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
            assert target.startswith("/"), f"{name}: {target}"


def host_path_of(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file a bind mount puts at ``container_path`` in the container."""
    for kind, source, target in mounts(service):
        if kind == "bind" and (container_path + "/").startswith(target.rstrip("/") + "/"):
            return (ROOT / source / container_path[len(target) :].lstrip("/")).resolve()
    return None


@pytest.mark.parametrize("name", ["prometheus", "alertmanager"])
def test_config_files_named_on_the_command_line_are_mounted(name):
    service = services()[name]
    flags = [a for a in as_list(service.get("command")) if a.startswith("--config.file=")]
    assert flags, f"{name}: no --config.file"
    for flag in flags:
        host = host_path_of(service, flag.split("=", 1)[1])
        assert host is not None, f"{name}: {flag} is not on a bind mount"
        assert host.is_file(), f"{name}: {flag} -> {host.relative_to(ROOT)} does not exist yet"


def test_every_service_has_a_healthcheck():
    """Every service here runs for long (the simulator produces for a day)."""
    for name, service in services().items():
        check = service.get("healthcheck") or {}
        assert not check.get("disable"), name
        test = as_list(check.get("test"))
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: {check}"


def test_depends_on_names_conditions_that_can_be_met():
    for name, service in services().items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for other, spec in depends.items():
            assert other in services(), f"{name} depends on unknown {other}"
            condition = spec["condition"]
            assert condition in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if condition == "service_healthy":
                assert services()[other].get("healthcheck"), f"{other} has no healthcheck"


def test_streamlstm_env_vars_are_real_config_keys():
    for name, service in services().items():
        for var in env_dict(service.get("environment")):
            if var.startswith(cfg.ENV_PREFIX):
                assert config_field(env_key_path(var)), f"{name}: {var} is no config key"


def test_streamlstm_services_load_their_config_with_their_environment():
    """The config named by `-c` loads with the service's STREAMLSTM__* variables, and
    each variable lands on the key it names."""
    checked = 0
    for name, service in services().items():
        argv = as_list(service.get("command"))
        if not uses_streamlstm_image(service) or service.get("entrypoint") or "-c" not in argv:
            continue
        env = env_dict(service.get("environment"))
        path = ROOT / argv[argv.index("-c") + 1]
        loaded = cfg.load(path, environ=env)
        for var, raw in env.items():
            if var.startswith(cfg.ENV_PREFIX):
                value = attr_path(loaded, env_key_path(var))
                assert value == yaml.safe_load(raw), f"{name}: {var}={raw} gave {value!r}"
        checked += 1
    assert checked >= 1


def test_streamlstm_commands_are_real():
    """Services on the streamlstm image with the default entrypoint run real subcommands
    with real flags; `-c` names a config that the image contains (configs/ is copied)."""
    for name, service in services().items():
        if not uses_streamlstm_image(service) or service.get("entrypoint"):
            continue
        argv = as_list(service["command"])
        args = parse_streamlstm(argv)
        if getattr(args, "config", None):
            assert (ROOT / args.config).is_file(), f"{name}: {args.config}"
            assert args.config.startswith("configs/")


def test_ray_nodes_run_real_ray_commands():
    head, worker = services()["ray-head"], services()["ray-worker"]
    for service in (head, worker):
        assert as_list(service["entrypoint"]) == ["ray"]
        assert uses_streamlstm_image(service), "Ray nodes must run the streamlstm image"
    head_args = parse_ray(as_list(head["command"]))
    assert head_args["head"] and head_args["block"]
    worker_args = parse_ray(as_list(worker["command"]))
    host, port = worker_args["address"].split(":")
    assert host == "ray-head" and int(port) == head_args["port"]
    # The supervisor's ray:// address is the head's client server.
    address = env_dict(services()["streamlstm"]["environment"])["RAY_ADDRESS"]
    assert address == f"ray://ray-head:{head_args['ray_client_server_port']}"
    for service in (head, worker):
        test = as_list(service["healthcheck"]["test"])
        if test[:2] == ["CMD", "ray"]:
            parse_ray(test[2:])


def named_volume_at(service: dict[str, Any], path: str) -> tuple[str, str] | None:
    """(volume, mount target) of the named volume that holds ``path`` in the container."""
    for kind, source, target in mounts(service):
        if kind == "volume" and (path + "/").startswith(target.rstrip("/") + "/"):
            return source, target
    return None


def test_snapshots_registry_and_retrain_scratch_are_on_a_volume_every_ray_node_mounts():
    """Workers write snapshots wherever they run, and Ray Train's storage (a temporary
    directory of the retraining process) must be visible to every node: all of these are
    on one named volume mounted at the same path in the supervisor and every Ray node."""
    supervisor_ = services()["streamlstm"]
    env = env_dict(supervisor_["environment"])
    loaded = cfg.load(ROOT / "configs/vitals.yaml", environ=env)
    paths = [env["TMPDIR"], loaded.checkpoint.dir, loaded.retrain.registry]
    for path in paths:
        shared = named_volume_at(supervisor_, path)
        assert shared, f"{path} is not on a named volume"
        for node in ("ray-head", "ray-worker"):
            assert named_volume_at(services()[node], path) == shared, f"{node}: {path}"
    # Ray's own session files (sockets) stay local: Ray follows TMPDIR unless RAY_TMPDIR.
    assert not named_volume_at(supervisor_, env["RAY_TMPDIR"])


def test_supervisor_metrics_are_reachable_by_prometheus():
    service = services()["streamlstm"]
    env = env_dict(service["environment"])
    assert env["STREAMLSTM__METRICS__HOST"] == "0.0.0.0"
    assert env["KAFKA_BOOTSTRAP"] == "kafka:9092"
    port = cfg.MetricsConfig().port
    assert f"127.0.0.1:{port}:{port}" in service["ports"]
    scrape = ROOT / "deploy/prometheus/prometheus.yml"
    prometheus = yaml.safe_load(scrape.read_text())
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    targets = [t for c in jobs["streamlstm"]["static_configs"] for t in c["targets"]]
    assert f"streamlstm:{port}" in targets
    for group in prometheus.get("alerting", {}).get("alertmanagers", []):
        for target in [t for c in group["static_configs"] for t in c["targets"]]:
            assert target.split(":")[0] in services(), target


def docker_compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file():
    command = docker_compose_command()
    if command is None:
        pytest.skip("no `docker compose` or `docker-compose` here")
    done = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


# --- deploy/Dockerfile ----------------------------------------------------------------------


@cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip()[0] != "#"]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def instructions(name: str) -> list[str]:
    return [args for op, args in dockerfile() if op == name]


def test_dockerfile_runs_as_an_unprivileged_numeric_user():
    users = instructions("USER")
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]
    # Nothing runs as root after the switch.
    last_user = max(i for i, (op, _) in enumerate(dockerfile()) if op == "USER")
    assert all(op != "RUN" for op, _ in dockerfile()[last_user:])


def test_dockerfile_bakes_in_no_secret():
    for op in ("ENV", "ARG"):
        for args in instructions(op):
            assert not SECRET_NAME.search(args), f"{op} {args}"


def test_dockerfile_installs_the_lock_and_the_ray_it_pins():
    runs = " ".join(instructions("RUN"))
    assert "-r tools/requirements.lock" in runs
    # Ray Client and the dashboard (KubeRay probes, job submission) need these extras;
    # their version comes from the lock, so the image's Ray is the lock's.
    assert re.search(r"ray\[[a-z,]*client[a-z,]*\]", runs) and "default" in runs
    assert "s/^ray==//p' tools/requirements.lock" in runs
    for copy in instructions("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"


def test_dockerfile_default_command_and_healthcheck():
    (entrypoint,) = instructions("ENTRYPOINT")
    (command,) = instructions("CMD")
    assert json.loads(entrypoint) == ["streamlstm"]
    args = parse_streamlstm(json.loads(command))
    assert args.command == "run" and (ROOT / args.config).is_file()
    (check,) = instructions("HEALTHCHECK")
    assert "/metrics" in check and "STREAMLSTM__METRICS__PORT" in check
    assert config_field(env_key_path("STREAMLSTM__METRICS__PORT"))


# --- Grafana --------------------------------------------------------------------------------


def test_grafana_datasource_is_the_compose_prometheus():
    provisioning = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioning["datasources"]
    assert source["uid"] == DS_UID and source["type"] == "prometheus"
    host, port = source["url"].removeprefix("http://").split(":")
    assert host in services() and services()[host]["image"].startswith("prom/prometheus:")
    assert f"127.0.0.1:{port}:{port}" in services()[host]["ports"]


def test_grafana_mounts_provisioning_and_dashboards_where_the_provider_looks():
    grafana = services()["grafana"]
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/streamlstm.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert host_path_of(grafana, path) == (GRAFANA / "dashboards").resolve()
    assert host_path_of(grafana, "/etc/grafana/provisioning") == (GRAFANA / "provisioning")
    home = env_dict(grafana["environment"]).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert host_path_of(grafana, home) == DASHBOARD


def test_grafana_admin_password_is_not_a_literal():
    env = env_dict(services()["grafana"]["environment"])
    password = env.get("GF_SECURITY_ADMIN_PASSWORD", "")
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD"), password


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return found


def test_dashboard_identity():
    board = dashboard()
    assert board["uid"] == "streamlstm-overview"
    assert board["title"] == "streamlstm"
    assert 36 <= board["schemaVersion"] <= 41
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_every_panel_queries_the_provisioned_datasource():
    for panel in panels():
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": DS_UID}, title
        targets = panel.get("targets", [])
        assert targets and all(t.get("expr", "").strip() for t in targets), title
        for target in targets:
            assert target.get("datasource", {"uid": DS_UID})["uid"] == DS_UID, title
        assert panel["type"] in {"timeseries", "stat", "heatmap", "table", "gauge"}, title
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DS_UID


def exprs() -> list[str]:
    found = [t["expr"] for p in panels() for t in p.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        found.append(query["query"] if isinstance(query, dict) else str(query or ""))
    return found


def test_dashboard_uses_only_documented_metrics():
    table = documented_metrics()
    used = {metric_base(t) for t in METRIC_TOKEN.findall(DASHBOARD.read_text())}
    assert used <= set(table), f"not in docs/metrics.md: {sorted(used - set(table))}"
    wanted = {
        "streamlstm_readings_total",
        "streamlstm_consumer_lag_records",
        "streamlstm_dlq_records_total",
        "streamlstm_alert_events_total",
        "streamlstm_open_alerts",
        "streamlstm_score",
        "streamlstm_processing_latency_seconds",
        "streamlstm_model_info",
        "streamlstm_retrain_runs_total",
        "streamlstm_last_successful_retrain_timestamp_seconds",
        "streamlstm_workers_up",
        "streamlstm_workers",
        "streamlstm_snapshot_duration_seconds",
        "streamlstm_active_streams",
    }
    in_exprs = {metric_base(t) for e in exprs() for t in METRIC_TOKEN.findall(e)}
    assert wanted <= in_exprs, f"no panel for {sorted(wanted - in_exprs)}"


def test_dashboard_queries_use_the_documented_labels():
    """`by (...)` groupings and {{legend}} labels exist on the metrics of the query;
    _bucket series are histograms; brackets balance."""
    table = documented_metrics()
    for panel in panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            assert expr.count("[") == expr.count("]") and expr.count("{") == expr.count("}")
            tokens = METRIC_TOKEN.findall(expr)
            allowed = {"job", "instance"}
            for token in tokens:
                allowed |= table[metric_base(token)][1]
                if token.endswith("_bucket"):
                    assert table[metric_base(token)][0] == "histogram", token
                    allowed.add("le")
            grouped = re.findall(r"\bby\s*\(([^)]*)\)", expr)
            labels = {x.strip() for g in grouped for x in g.split(",") if x.strip()}
            labels |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            assert labels <= allowed, f"{panel['title']}: {sorted(labels - allowed)}"
            if "histogram_quantile" in expr:
                assert "_bucket" in expr and "le" in labels, expr


def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool parses every panel query (Grafana's variables replaced by plain values)."""
    if not shutil.which("promtool"):
        pytest.skip("no promtool here")
    grafana_vars = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "$job": ".+"}
    rules = []
    for i, panel in enumerate(panels()):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in grafana_vars.items():
                expr = expr.replace(name, value)
            rules.append({"record": f"dashboard:panel{i}:{target['refId'].lower()}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- Kubernetes -----------------------------------------------------------------------------


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def test_k8s_files_parse_with_the_expected_kinds():
    assert {p.name for p in k8s_files()} >= set(K8S_KINDS)
    for path in k8s_files():
        docs = k8s_docs(path.name)
        assert docs, path.name
        for doc in docs:
            meta = doc.get("metadata", {})
            if doc["kind"] != "Kustomization":
                assert meta.get("name") or meta.get("generateName"), path.name
        kinds = sorted((d["apiVersion"], d["kind"]) for d in docs)
        assert kinds == sorted(K8S_KINDS.get(path.name, kinds)), path.name
    assert (K8S / "README.md").is_file()
    readme = (K8S / "README.md").read_text()
    assert "kubectl" in readme and "apply -k deploy/k8s" in readme
    assert "create secret generic streamlstm-kafka" in readme


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod template in the manifests."""
    found = []
    for path in k8s_files():
        for doc in k8s_docs(path.name):
            spec = doc.get("spec", {})
            spec = spec.get("jobTemplate", spec)
            if doc["kind"] == "Deployment":
                found.append((f"{path.name}:{doc['kind']}", spec["template"]["spec"]))
            cluster = spec.get("rayClusterSpec", spec if doc["kind"] == "RayCluster" else None)
            if cluster:
                found.append((f"{path.name}:head", cluster["headGroupSpec"]["template"]["spec"]))
                for group in cluster.get("workerGroupSpecs", []):
                    where = f"{path.name}:{group['groupName']}"
                    found.append((where, group["template"]["spec"]))
    return found


def ray_cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    found = [("raycluster.yaml", k8s_doc("raycluster.yaml", "RayCluster")["spec"])]
    found.append(
        ("retrain-rayjob.yaml", k8s_doc("retrain-rayjob.yaml", "RayJob")["spec"]["rayClusterSpec"])
    )
    return found


def test_every_container_is_unprivileged_with_resources_and_a_pinned_image():
    images = set()
    for where, pod in pod_specs():
        context = pod.get("securityContext", {})
        for container in pod["containers"]:
            own = container.get("securityContext", {})
            assert own.get("runAsNonRoot", context.get("runAsNonRoot")) is True, where
            assert own.get("runAsUser", context.get("runAsUser", 0)) != 0, where
            assert own.get("allowPrivilegeEscalation") is False, where
            assert own.get("capabilities", {}).get("drop") == ["ALL"], where
            resources = container["resources"]
            assert resources.get("requests") and resources.get("limits"), where
            image = container["image"]
            assert ":" in image and not image.endswith(":latest"), where
            images.add(image)
    assert len(images) == 1, f"one streamlstm image everywhere, got {images}"


def test_no_secret_value_in_the_manifests():
    for path in k8s_files():
        for doc in k8s_docs(path.name):
            assert doc["kind"] != "Secret", f"{path.name}: ship no Secret, create it"
    for where, pod in pod_specs():
        for container in pod["containers"]:
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "value" not in env, f"{where}: {env['name']} is a literal"
                    assert env["valueFrom"]["secretKeyRef"]["name"], where
    text = k8s_doc("configmap.yaml", "ConfigMap")["data"]["config.yaml"]
    assert "sasl_password" not in yaml.safe_load(text).get("kafka", {})


def test_k8s_env_vars_are_real_config_keys():
    for where, pod in pod_specs():
        for container in pod["containers"]:
            for env in container.get("env", []):
                if env["name"].startswith(cfg.ENV_PREFIX):
                    assert config_field(env_key_path(env["name"])), f"{where}: {env['name']}"


def test_raycluster_groups_versions_and_dashboard():
    cluster = k8s_doc("raycluster.yaml", "RayCluster")
    spec = cluster["spec"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]
    assert int(gpu["limits"]["nvidia.com/gpu"]) >= 1
    assert int(groups["gpu"]["rayStartParams"]["num-gpus"]) >= 1
    cpu = groups["cpu"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in cpu.get("limits", {})
    head = spec["headGroupSpec"]["rayStartParams"]
    assert head.get("dashboard-host") == "127.0.0.1" or head.get("include-dashboard") == "false"
    options = ray_start_options()
    for where, cluster_spec in ray_cluster_specs():
        assert cluster_spec["rayVersion"] == lock_ray_version(), where
        params = [cluster_spec["headGroupSpec"]["rayStartParams"]]
        params += [g["rayStartParams"] for g in cluster_spec.get("workerGroupSpecs", [])]
        for param in params:
            for key, value in param.items():
                assert f"--{key}" in options, f"{where}: rayStartParams {key}"
                assert isinstance(value, str), f"{where}: {key} must be a string"


def supervisor() -> dict[str, Any]:
    return k8s_doc("supervisor-deployment.yaml", "Deployment")


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_supervisor_deployment():
    deployment = supervisor()
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    argv = container.get("command", []) + container.get("args", [])
    assert argv[0] == "streamlstm"
    args = parse_streamlstm(argv[1:])
    assert args.command == "run" and args.config == "/etc/streamlstm/config.yaml"
    env = container_env(container)
    cluster = k8s_doc("raycluster.yaml", "RayCluster")["metadata"]["name"]
    assert env["RAY_ADDRESS"]["value"] == f"ray://{cluster}-head-svc:10001"
    assert env["KAFKA_BOOTSTRAP"]["value"]
    password = env["STREAMLSTM__KAFKA__SASL_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["key"] and "value" not in password
    assert env["STREAMLSTM__METRICS__HOST"]["value"] == "0.0.0.0"
    port = cfg.MetricsConfig().port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == port
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/metrics" and get["port"] in ("metrics", port), probe
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_volume = volumes[mounted["/etc/streamlstm"]]
    assert (
        config_volume["configMap"]["name"]
        == k8s_doc("configmap.yaml", "ConfigMap")["metadata"]["name"]
    )
    assert "emptyDir" in volumes[mounted["/tmp"]], "a read-only root needs a writable /tmp"
    # Ray Train's storage (the retrain round's temporary directory) on the shared volume;
    # Ray's own files on the local /tmp.
    assert env["TMPDIR"]["value"].startswith("/data") and "/data" in mounted
    assert env["RAY_TMPDIR"]["value"] == "/tmp"


def test_metrics_service_selects_the_supervisor():
    service = k8s_doc("supervisor-deployment.yaml", "Service")
    labels = supervisor()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == cfg.MetricsConfig().port and port["targetPort"] == "metrics"


def test_configmap_config_loads_with_the_supervisor_environment(tmp_path):
    text = k8s_doc("configmap.yaml", "ConfigMap")["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    (container,) = supervisor()["spec"]["template"]["spec"]["containers"]
    env = {
        name: e.get("value", "from-a-secret")
        for name, e in container_env(container).items()
        if name.startswith(cfg.ENV_PREFIX)
    }
    loaded = cfg.load(path, environ=env)
    assert loaded.metrics.host == "0.0.0.0"
    assert loaded.kafka.sasl_password.get_secret_value() == "from-a-secret"
    assert loaded.ray.address is None, "the address comes from $RAY_ADDRESS (RayJobs differ)"
    # Snapshots and the registry are on the volume every pod shares.
    data_claims = set()
    for where, pod in pod_specs():
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            mounts_ = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/data" in mounts_, f"{where}: no /data"
            data_claims.add(volumes[mounts_["/data"]]["persistentVolumeClaim"]["claimName"])
    assert data_claims == {k8s_doc("storage.yaml", "PersistentVolumeClaim")["metadata"]["name"]}
    assert (
        "ReadWriteMany" in k8s_doc("storage.yaml", "PersistentVolumeClaim")["spec"]["accessModes"]
    )
    for key in (loaded.checkpoint.dir, loaded.retrain.registry):
        assert key.startswith("/data/"), key


def test_retrain_rayjob_runs_a_real_retrain():
    job = k8s_doc("retrain-rayjob.yaml", "RayJob")
    spec = job["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "streamlstm"
    args = parse_streamlstm(argv[1:])
    assert args.command == "retrain" and args.config == "/etc/streamlstm/config.yaml"
    assert spec.get("rayClusterSpec") or spec.get("clusterSelector")
    if spec.get("clusterSelector"):
        cluster = k8s_doc("raycluster.yaml", "RayCluster")["metadata"]["name"]
        assert spec["clusterSelector"]["ray.io/cluster"] == cluster
        assert spec.get("submissionMode") != "SidecarMode", "KubeRay rejects this pair"
    else:
        head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        (container,) = head["containers"]
        env = container_env(container)
        assert "secretKeyRef" in env["STREAMLSTM__KAFKA__SASL_PASSWORD"]["valueFrom"]
        assert env["KAFKA_BOOTSTRAP"]["value"]
        mounted = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/etc/streamlstm" in mounted
    # `kubectl create` makes a new one per retrain.
    assert job["metadata"].get("generateName") or job["metadata"].get("name")


def test_raycronjob_schedules_the_same_rayjob():
    cron = k8s_doc("retrain-raycronjob.yaml", "RayCronJob")
    assert len(cron["spec"]["schedule"].split()) == 5
    assert cron["spec"]["jobTemplate"] == k8s_doc("retrain-rayjob.yaml", "RayJob")["spec"]


def test_networkpolicy_selects_the_ray_pods_and_admits_the_supervisor():
    policy = k8s_doc("networkpolicy.yaml", "NetworkPolicy")["spec"]
    selector = policy["podSelector"]

    def selected(labels: dict[str, str]) -> bool:
        if not selector.get("matchLabels", {}).items() <= labels.items():
            return False
        for rule in selector.get("matchExpressions", []):
            assert rule["operator"] == "In"
            if labels.get(rule["key"]) not in rule["values"]:
                return False
        return True

    templates = []
    for _, cluster in ray_cluster_specs():
        templates.append(cluster["headGroupSpec"]["template"])
        templates += [g["template"] for g in cluster.get("workerGroupSpecs", [])]
    for template in templates:
        assert selected(template["metadata"]["labels"]), template["metadata"]
    assert not selected(supervisor()["spec"]["template"]["metadata"]["labels"])
    supervisor_labels = supervisor()["spec"]["template"]["metadata"]["labels"]
    admitted = [
        peer["podSelector"]["matchLabels"]
        for rule in policy["ingress"]
        for peer in rule["from"]
        if "namespaceSelector" not in peer and "ports" not in rule
    ]
    assert any(m.items() <= supervisor_labels.items() for m in admitted)


def test_kustomization_lists_existing_files_and_builds():
    kustomization = k8s_doc("kustomization.yaml", "Kustomization")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl here")
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(done.stdout) if d}
    assert {"RayCluster", "Deployment", "Service", "ConfigMap"} <= kinds
