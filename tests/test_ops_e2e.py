"""End to end with real servers: the worker on the real broker scores an injected anomaly,
a real Prometheus scrapes it and evaluates deploy/'s rules, a real Alertmanager routes the
alert to a webhook on loopback. Every PromQL expression of the rules and the dashboard
parses and names only metrics the worker exports."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests import live_helpers as lh
from tests import ops_servers as ops

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.ray,
    pytest.mark.skipif(
        ops.PROMETHEUS is None or ops.ALERTMANAGER is None,
        reason="prometheus/alertmanager not installed: run `make setup-ops`",
    ),
]


def rule_exprs() -> list[str]:
    out = []
    for path in sorted((ROOT / "deploy/prometheus/rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [rule["expr"] for rule in group["rules"]]
    return out


def dashboard_exprs() -> list[str]:
    board = json.loads((ROOT / "deploy/grafana/dashboards/streamlstm.json").read_text())
    panels = list(board["panels"])
    exprs = []
    while panels:
        panel = panels.pop()
        panels += panel.get("panels", [])  # panels inside collapsed rows
        exprs += [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
    # Grafana's interval variables become plain durations for Prometheus.
    return [re.sub(r"\$__(rate_)?interval|\$__range", "5m", e) for e in exprs]


def anomaly_data():
    """Six clean patients; one ends inside a large episode, so its alert stays open."""
    data = lh.simulated(6, 300, seed=11, rate=0.0)
    data.values[2][270:, 0] += 80.0  # hr +80 bpm
    data.values[2][270:, 1] -= 20.0  # spo2 -20 points
    return data


def pull_until(stop: threading.Event, feed, sup) -> None:
    while not stop.wait(0.5):
        feed.pull(sup)


def wait_for_alert(hook: ops.Webhook, name: str, timeout_s: float = 90.0) -> tuple[str, dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path, payload in list(hook.posts):
            for alert in payload["alerts"]:
                if alert["labels"]["alertname"] == name and alert["status"] == "firing":
                    return path, alert
        time.sleep(0.5)
    raise AssertionError(f"{name} did not reach the webhook in {timeout_s} s: {hook.posts}")


def test_anomaly_alert_fires_in_prometheus_and_reaches_the_webhook(
    kafka_bootstrap, ray_local, tmp_path: Path
) -> None:
    from streamlstm.adapters.ops.metrics_feed import MetricsFeed

    cfg = lh.live_config(kafka_bootstrap, tmp_path)
    files = lh.train_tiny(cfg, lh.simulated(6, 300, seed=11, rate=0.0), tmp_path / "model")
    records = lh.records_of(anomaly_data())
    lh.setup_topics(cfg)
    lh.produce(kafka_bootstrap, cfg.kafka.input_topics[0], records)
    sup = lh.start(cfg, files)
    feed = MetricsFeed(cfg, kafka_bootstrap)
    feed.hub.know_models(files)
    stop = threading.Event()
    puller = threading.Thread(target=pull_until, args=(stop, feed, sup), daemon=True)
    puller.start()
    try:
        with ops.ops_stack(feed.port, tmp_path) as (prom, hook):
            path, alert = wait_for_alert(hook, "StreamlstmAnomalyCritical")
            assert path == "/pager"  # critical pages (deploy/alertmanager routes by severity)
            assert alert["labels"]["severity"] == "critical"
            assert alert["annotations"]["summary"]
            assert "runbook" in alert["annotations"]

            exprs = rule_exprs() + dashboard_exprs()
            assert len(exprs) > 20
            for expr in exprs:
                answer = ops.query(prom, expr)
                assert answer["status"] == "success", f"{expr!r}: {answer}"

            exported = {
                r["metric"]["__name__"]
                for r in ops.query(prom, 'group by (__name__) ({job="streamlstm"})')["data"][
                    "result"
                ]
            }
            referenced = {n for e in exprs for n in re.findall(r"\bstreamlstm_[a-z_]+\b", e)}
            assert referenced, "no streamlstm metric referenced"
            assert referenced <= exported, sorted(referenced - exported)
            rules = ops.get_json(f"{prom}/api/v1/rules")["data"]["groups"]
            unhealthy = [r["name"] for g in rules for r in g["rules"] if r["health"] != "ok"]
            assert not unhealthy, unhealthy
    finally:
        stop.set()
        puller.join()
        feed.close()
        sup.stop()
