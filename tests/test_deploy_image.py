"""deploy/Dockerfile and the Grafana provisioning and dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from typing import Any

import pytest
import yaml

from tests.deploy_support import (
    DASHBOARD,
    DOCKERFILE,
    DS_UID,
    GRAFANA,
    METRIC_TOKEN,
    ROOT,
    SECRET_NAME,
    config_field,
    dashboard,
    documented_metrics,
    env_dict,
    env_key_path,
    host_path_of,
    metric_base,
    parse_streamlstm,
    services,
)

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
