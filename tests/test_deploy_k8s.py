"""The Kubernetes (KubeRay) manifests in deploy/k8s."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamlstm import config as cfg
from tests.deploy_support import (
    K8S,
    K8S_KINDS,
    SECRET_NAME,
    config_field,
    env_key_path,
    k8s_doc,
    k8s_docs,
    lock_ray_version,
    parse_streamlstm,
    ray_start_options,
)

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
    # Liveness on the process, readiness on the partitions' progress (ops/health.py).
    paths = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in paths.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["port"] in ("metrics", port), probe
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
