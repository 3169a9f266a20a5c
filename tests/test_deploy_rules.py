"""deploy/prometheus and deploy/alertmanager, checked with the real tools.

promtool checks the scrape config and the rule files and runs the rule unit tests
(deploy/prometheus/tests/*.yml); amtool checks the Alertmanager config and its routing.
Plain-Python checks keep the pieces consistent: every alert rule is unit-tested, carries
severity/category labels and summary/description/runbook annotations, links a section of
docs/runbook.md, and names only metrics documented in docs/metrics.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
PROM_CONFIG = PROM / "prometheus.yml"
ALERTS = PROM / "rules" / "alerts.yml"
RECORDING = PROM / "rules" / "recording.yml"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/streamlstm/streamlstm/blob/main/docs/runbook.md#"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed: run `make setup-ops`")
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert rc 0, showing everything the tool said otherwise; return stdout + stderr."""
    said = f"$ {' '.join(proc.args)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, said
    return proc.stdout + proc.stderr


def load(path: Path) -> dict:
    with path.open() as f:
        return yaml.safe_load(f)


def alert_rules() -> dict[str, dict]:
    rules = [r for g in load(ALERTS)["groups"] for r in g["rules"] if "alert" in r]
    names = [r["alert"] for r in rules]
    assert len(set(names)) == len(names), f"duplicate alert names: {names}"
    return {r["alert"]: r for r in rules}


def recording_names() -> set[str]:
    return {r["record"] for g in load(RECORDING)["groups"] for r in g["rules"] if "record" in r}


def documented_metrics() -> set[str]:
    names = set(re.findall(r"^\| `(streamlstm_[a-z_]+)`", METRICS_DOC.read_text(), re.M))
    assert names, "no metric table found in docs/metrics.md"
    return names


def runbook_anchors() -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", RUNBOOK.read_text(), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


# --- Prometheus -----------------------------------------------------------------------------


def test_prometheus_config_is_valid_and_finds_both_rule_files():
    said = ok(run(tool("promtool"), "check", "config", PROM_CONFIG))
    # rule_files are resolved relative to prometheus.yml: both files must have been checked.
    for rules in ("alerts.yml", "recording.yml"):
        assert rules in said, said


def test_prometheus_config_contents():
    config = load(PROM_CONFIG)
    assert config["global"]["scrape_interval"] == "15s"
    assert config["global"]["evaluation_interval"] == "15s"
    assert config["rule_files"] == ["rules/*.yml"]
    am_targets = [
        t
        for am in config["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert am_targets == ["alertmanager:9093"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert [t for sc in jobs["streamlstm"]["static_configs"] for t in sc["targets"]] == [
        "streamlstm:9464"
    ]


@pytest.mark.parametrize("rules", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_is_valid(rules: Path):
    ok(run(tool("promtool"), "check", "rules", rules))


def test_rule_unit_tests_pass():
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    said = ok(run(tool("promtool"), "test", "rules", *RULE_TESTS))
    assert "FAILED" not in said, said


def test_every_alert_rule_is_unit_tested_firing_and_quiet():
    fires: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for path in RULE_TESTS:
        spec = load(path)
        loads_alerts = any(
            (path.parent / f).resolve() == ALERTS.resolve() for f in spec.get("rule_files", [])
        )
        for case in spec["tests"]:
            for check in case.get("alert_rule_test", []):
                assert loads_alerts, f"{path.name} tests alerts but does not load alerts.yml"
                name = check["alertname"]
                expected = check.get("exp_alerts") or []
                (fires if expected else quiet)[name] = fires.get(name, 0) + 1
                for alert in expected:
                    where = f"{path.name}: {case.get('name')}: {name}"
                    assert alert.get("exp_labels", {}).get("severity"), where
                    assert alert.get("exp_annotations", {}).get("summary"), where
    rules = set(alert_rules())
    assert not (set(fires) | set(quiet)) - rules, "tests name alerts that do not exist"
    assert not rules - set(fires), f"alerts never tested firing: {sorted(rules - set(fires))}"
    assert not rules - set(quiet), f"alerts never tested quiet: {sorted(rules - set(quiet))}"


def test_alert_rules_carry_labels_annotations_and_a_runbook_section():
    anchors = runbook_anchors()
    for name, rule in alert_rules().items():
        assert name.startswith("Streamlstm"), name
        labels, notes = rule.get("labels", {}), rule.get("annotations", {})
        assert labels.get("severity") in {"critical", "warning"}, name
        # category=operations is what StreamlstmDown's inhibition matches on
        assert labels.get("category") in {"operations", "anomaly"}, name
        for key in ("summary", "description", "runbook", "runbook_url"):
            assert str(notes.get(key, "")).strip(), f"{name}: no {key} annotation"
        assert "{{" in notes["description"], f"{name}: description has no templated value"
        # no stream or patient ids: no metric carries one, and none may be templated in
        assert not re.search(r"\$labels\.(stream|patient)", str(notes)), name
        url = notes["runbook_url"]
        assert url.startswith(RUNBOOK_URL), f"{name}: {url}"
        anchor = url.removeprefix(RUNBOOK_URL)
        assert anchor == name.lower(), f"{name}: anchor {anchor!r}"
        assert anchor in anchors, f"{name}: docs/runbook.md has no section #{anchor}"


def test_anomaly_alerts_are_not_delayed():
    rules = alert_rules()
    for name, severity in (
        ("StreamlstmAnomalyCritical", "critical"),
        ("StreamlstmAnomalyWarning", "warning"),
    ):
        rule = rules[name]
        assert rule.get("for", "0s") in {"0s", "0m", "0"}, name
        assert rule["labels"]["severity"] == severity
        assert f'streamlstm_open_alerts{{severity="{severity}"}}' in rule["expr"]
        # an episode that opens and closes between two scrapes pages too (issue 18)
        opened = f'streamlstm_alert_events_total{{event=~"open|update", severity="{severity}"}}'
        assert opened in rule["expr"], name
        assert "streamlstm.alerts" in rule["annotations"]["description"]


def _names_in(text: str) -> tuple[set[str], set[str]]:
    """(metric names, recording-rule names) mentioned in a rules/test/doc text."""
    metrics = set(re.findall(r"(?<![\w:])streamlstm_[a-z][a-z0-9_]*(?![\w:])", text))
    # level:metric:operations (not a host:port such as streamlstm:9464)
    recorded = set(re.findall(r"(?<![\w:])streamlstm:[a-z_][a-z0-9_]*:[a-z0-9_]+(?![\w:])", text))
    return metrics, recorded


def _base_metric(name: str, documented: set[str]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in documented:
            return name.removesuffix(suffix)
    return name


@pytest.mark.parametrize(
    "path",
    [*RULE_FILES, *RULE_TESTS, RUNBOOK],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_only_documented_metrics_and_defined_recording_rules_are_named(path: Path):
    # Rule files, their unit tests (a misspelt series would make a "stays quiet" test pass
    # for nothing) and the runbook may name only the metrics of docs/metrics.md and the
    # recording rules of recording.yml.
    documented = documented_metrics()
    metrics, recorded = _names_in(path.read_text())
    unknown = {m for m in metrics if _base_metric(m, documented) not in documented}
    assert not unknown, f"{path.name} names metrics missing from docs/metrics.md: {unknown}"
    undefined = recorded - recording_names()
    assert not undefined, f"{path.name} names undefined recording rules: {undefined}"


def test_recording_rules_follow_the_naming_convention():
    for name in recording_names():
        level, metric, operation = name.split(":")
        assert level == "streamlstm" and metric and operation, name


# --- Alertmanager ---------------------------------------------------------------------------


def test_alertmanager_config_is_valid():
    said = ok(run(tool("amtool"), "check-config", AM_CONFIG))
    assert "SUCCESS" in said, said


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=X"], "pager"),
        (["severity=warning", "alertname=X"], "channel"),
        (["severity=critical", "alertname=StreamlstmAnomalyCritical"], "pager"),
        (["severity=warning", "alertname=StreamlstmAnomalyWarning"], "channel"),
        (["alertname=X"], "channel"),  # no severity: the default receiver
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str):
    said = run(tool("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels)
    ok(said)
    assert said.stdout.strip() == receiver, said.stdout


def test_alertmanager_receivers_and_inhibitions():
    config = load(AM_CONFIG)
    route = config["route"]
    assert route["receiver"] == "channel"
    assert route["group_by"] == ["alertname", "severity"]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert set(receivers) == {"pager", "channel"}
    for name, receiver in receivers.items():
        hooks = receiver.get("webhook_configs") or []
        assert hooks, name
        for hook in hooks:
            assert hook["url"].startswith("http://127.0.0.1:"), hook
            assert hook["send_resolved"] is True, hook
    pairs = [
        (tuple(rule["source_matchers"]), tuple(rule["target_matchers"]))
        for rule in config["inhibit_rules"]
    ]
    assert (
        ('alertname="StreamlstmAnomalyCritical"',),
        ('alertname="StreamlstmAnomalyWarning"',),
    ) in pairs
    down = [t for s, t in pairs if s == ('alertname="StreamlstmDown"',)]
    assert down and 'category="operations"' in down[0], pairs
    # the operations alerts StreamlstmDown silences are those labelled so in alerts.yml
    operations = {n for n, r in alert_rules().items() if r["labels"]["category"] == "operations"}
    assert {"StreamlstmDown", "StreamlstmWorkerDown", "StreamlstmNoCommits"} <= operations
