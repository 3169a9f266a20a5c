"""Real Prometheus and Alertmanager (Debian's binaries) and a webhook receiver, on loopback,
configured from deploy/ with only the addresses and the waits changed for a test."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from streamlstm.adapters.devkafka.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


class Webhook:
    """Collects Alertmanager's webhook posts: (path, payload) per notification."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alertmanager_config(webhook_url: str) -> dict:
    """deploy/alertmanager/alertmanager.yml with every receiver posting to ``webhook_url``
    (path = receiver name) and a 1 s group_wait; routes and inhibitions untouched."""
    cfg = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    for receiver in cfg["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook_url}/{receiver['name']}"

    def fast(route: dict) -> None:
        route["group_wait"] = "1s"
        route["group_interval"] = "1s"
        for child in route.get("routes", []):
            fast(child)

    fast(cfg["route"])
    return cfg


def prometheus_config(metrics_port: int, alertmanager_port: int) -> dict:
    """deploy/prometheus/prometheus.yml pointed at loopback, scraping and evaluating every 1 s."""
    cfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(p) for p in sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))]
    cfg["alerting"] = {
        "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
    }
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "streamlstm")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    return cfg


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout_s} s: {log.read_text()[-2000:]}")


@contextmanager
def running(name: str, argv: list[str], ready_url: str, workdir: Path) -> Iterator[None]:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(ready_url, proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def ops_stack(metrics_port: int, workdir: Path) -> Iterator[tuple[str, Webhook]]:
    """Prometheus -> Alertmanager -> webhook; yields (prometheus base url, webhook)."""
    hook = Webhook()
    am_port, prom_port = free_port(), free_port()
    am_cfg, prom_cfg = workdir / "alertmanager.yml", workdir / "prometheus.yml"
    am_cfg.write_text(yaml.safe_dump(alertmanager_config(hook.url)))
    prom_cfg.write_text(yaml.safe_dump(prometheus_config(metrics_port, am_port)))
    am_argv = [
        ALERTMANAGER,
        f"--config.file={am_cfg}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address=",
    ]
    prom_argv = [
        PROMETHEUS,
        f"--config.file={prom_cfg}",
        f"--storage.tsdb.path={workdir / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    prom_url = f"http://127.0.0.1:{prom_port}"
    try:
        with (
            running("alertmanager", am_argv, f"http://127.0.0.1:{am_port}/-/ready", workdir),
            running("prometheus", prom_argv, f"{prom_url}/-/ready", workdir),
        ):
            yield prom_url, hook
    finally:
        hook.close()


def query(prom_url: str, expr: str) -> dict:
    """/api/v1/query; returns the JSON (status 'error' with errorType 'bad_data' if unparsable)."""
    return get_json(f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


def get_json(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
