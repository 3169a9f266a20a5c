"""docker-compose.yml, checked against the code it drives (see tests/deploy_support.py)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from streamlstm import config as cfg
from tests.deploy_support import (
    COMPOSE,
    COMPOSE_SERVICES,
    DOCKERFILE,
    ROOT,
    as_list,
    attr_path,
    compose,
    config_field,
    env_dict,
    env_key_path,
    host_path_of,
    lock_ray_version,
    mounts,
    parse_ray,
    parse_streamlstm,
    services,
)

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
