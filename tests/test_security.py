"""Security defaults (issue 5, item 9), against a real SCRAM broker: security settings reach
kafka-python; wrong credentials fail fast and clearly, never echoing the password; the Ray
dashboard is off; weights and snapshots are never unpickled. The canary test is in
``test_canary.py``."""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
import ssl
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from streamlstm.adapters.devkafka.secure import ScramUser, SecureDevKafka
from streamlstm.adapters.kafka.client import KafkaSink, KafkaSource, ensure_topics
from streamlstm.adapters.kafka.login import KafkaAuthFailed
from streamlstm.adapters.kafka.options import client_options
from streamlstm.config import KafkaConfig, RayConfig

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "alice", "alice-Pw-5d81e2"
WRONG = "wrong-Pw-93c6aa"  # must never show up anywhere


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureDevKafka]:
    if shutil.which("java") is None or shutil.which("keytool") is None:
        pytest.skip("the SCRAM broker needs a JDK 17+ (java, keytool)")
    broker = SecureDevKafka(
        tmp_path_factory.mktemp("kafka-scram"), [ScramUser(USER, PASSWORD)], tls=True, heap_mb=256
    )
    broker.start(timeout_s=120)
    try:
        yield broker
    finally:
        broker.stop()


def _options(broker: SecureDevKafka, password: str, tls: bool = False, **extra) -> dict:
    cfg = KafkaConfig.model_validate(
        {
            "security_protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": USER,
            "sasl_password": password,
            "ssl_cafile": str(broker.ca_file) if tls else None,
            **extra,
        }
    )
    return client_options(cfg)


# --- (a) settings pass straight through -------------------------------------------------


def test_every_security_setting_passes_through_to_kafka_python() -> None:
    plain = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "svc-streamlstm",
        "sasl_password": "s3cret",
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_certfile": "/etc/kafka/client.pem",
        "ssl_keyfile": "/etc/kafka/client.key",
        "ssl_password": "k3ypass",
    }
    cfg = KafkaConfig.model_validate(plain)
    assert client_options(cfg) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-streamlstm",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_certfile": "/etc/kafka/client.pem",
        "ssl_keyfile": "/etc/kafka/client.key",
        "ssl_password": "k3ypass",
    }
    for secret in ("s3cret", "k3ypass"):
        assert secret not in repr(cfg) and secret not in str(cfg.model_dump(mode="json"))
    assert client_options(KafkaConfig()) == {"security_protocol": "PLAINTEXT"}


# --- (b) the right credentials work -------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.parametrize("tls", [False, True], ids=["SASL_PLAINTEXT", "SASL_SSL"])
def test_scram_login_creates_topics_produces_and_consumes(scram_broker, tls: bool) -> None:
    bootstrap = scram_broker.tls_bootstrap if tls else scram_broker.bootstrap
    options = _options(scram_broker, PASSWORD, tls)
    topic = f"sec-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(bootstrap, {topic: 1}, options) == [topic]
    sink = KafkaSink(bootstrap, options)
    try:
        sink.send_alert(topic, b"k", b"over-scram")
        sink.flush(30)
    finally:
        sink.close()
    source = KafkaSource(bootstrap, f"g-{topic}", options)
    try:
        source.assign([(topic, 0)])
        got, deadline = [], time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = source.poll(0.5)
        assert [(r.key, r.value) for r in got] == [(b"k", b"over-scram")]
    finally:
        source.close()


# --- (c) wrong credentials fail fast, clearly, without the password -----------------------


def _assert_clean(text: str) -> None:
    assert WRONG not in text and PASSWORD not in text


@pytest.mark.kafka
@pytest.mark.parametrize("client", ["ensure_topics", "source", "sink"])
@pytest.mark.parametrize("tls", [False, True], ids=["SASL_PLAINTEXT", "SASL_SSL"])
def test_wrong_password_fails_fast_and_never_shows_it(
    scram_broker, caplog: pytest.LogCaptureFixture, client: str, tls: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="kafka")
    bootstrap = scram_broker.tls_bootstrap if tls else scram_broker.bootstrap
    options = _options(scram_broker, WRONG, tls)
    build = {
        "ensure_topics": lambda: ensure_topics(bootstrap, {"never-made": 1}, options),
        "source": lambda: KafkaSource(bootstrap, "g-wrong", options),
        "sink": lambda: KafkaSink(bootstrap, options),
    }[client]
    started = time.monotonic()
    with pytest.raises(KafkaAuthFailed) as info:
        build()
    assert time.monotonic() - started < 15
    text = str(info.value)
    protocol = "SASL_SSL" if tls else "SASL_PLAINTEXT"
    assert f"user 'alice' (SCRAM-SHA-256 over {protocol}) at {bootstrap}" in text
    assert "check kafka.sasl_username / kafka.sasl_password" in text
    assert info.value.__cause__ is None  # nothing underneath that could carry options
    _assert_clean(text + repr(info.value) + "".join(traceback.format_exception(info.value)))
    _assert_clean(caplog.text + "".join(str(r.args) for r in caplog.records))


@pytest.mark.kafka
def test_untrusted_broker_certificate_is_a_clear_tls_error(scram_broker) -> None:
    options = _options(scram_broker, PASSWORD, tls=True, ssl_cafile=None)
    with pytest.raises(KafkaAuthFailed, match=r"TLS handshake failed .*check kafka\.ssl_cafile"):
        KafkaSource(scram_broker.tls_bootstrap, "g-tls", options)


@pytest.mark.kafka
def test_sasl_against_a_plaintext_listener_names_the_protocol(scram_broker) -> None:
    with pytest.raises(KafkaAuthFailed, match=r"check kafka\.security_protocol"):
        ensure_topics(scram_broker.internal_bootstrap, {"x": 1}, _options(scram_broker, PASSWORD))


def _cli(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLSTM__", "KAFKA_"))}
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "streamlstm", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **env},
        timeout=120,
    )
    return res, time.monotonic() - started


def test_validate_config_masks_the_password_from_the_environment() -> None:
    res, _ = _cli("validate-config", env={"STREAMLSTM__KAFKA__SASL_PASSWORD": WRONG})
    assert res.returncode == 0, res.stderr
    assert re.search(r"sasl_password: '?\*+'?", res.stdout)
    _assert_clean(res.stdout + res.stderr)


@pytest.mark.kafka
def test_cli_run_with_a_wrong_password_exits_with_one_clear_line(scram_broker) -> None:
    res, elapsed = _cli(
        "-v",  # debug logging everywhere: still no password
        "run",
        "--set",
        f"kafka.bootstrap={scram_broker.bootstrap}",
        "--set",
        "kafka.security_protocol=SASL_PLAINTEXT",
        "--set",
        "kafka.sasl_mechanism=SCRAM-SHA-256",
        "--set",
        f"kafka.sasl_username={USER}",
        env={"STREAMLSTM__KAFKA__SASL_PASSWORD": WRONG},
    )
    assert res.returncode == 1, res.stderr[-2000:]
    assert elapsed < 30
    lines = [line for line in res.stderr.splitlines() if line.startswith("streamlstm: ")]
    assert len(lines) == 1 and "Kafka authentication failed for user 'alice'" in lines[0]
    assert "Traceback" not in res.stderr
    _assert_clean(res.stdout + res.stderr)


# --- (e) the Ray dashboard is off unless enabled -----------------------------------------


def test_ray_dashboard_is_off_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from streamlstm import config as config_mod
    from streamlstm.adapters.ray import supervisor

    assert RayConfig().dashboard is False
    for path in [None, *sorted((ROOT / "configs").glob("*.yaml"))]:
        assert config_mod.load(path, environ={}).ray.dashboard is False, path
    calls: list[dict] = []
    # Only ray.init's arguments are of interest here; starting a real Ray costs ~10 s.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray, "cluster_resources", dict)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    supervisor.init_ray(config_mod.load(None, environ={}))
    on = config_mod.load(None, {"ray.dashboard": True}, environ={})
    supervisor.init_ray(on)
    assert [c.get("include_dashboard") for c in calls] == [False, True]


# --- (f) weights and snapshots are never unpickled ---------------------------------------


class _Trap:
    """Unpickling this creates ``path``: proof that a loader ran pickle."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickled_model_file_is_rejected_without_running_it(tmp_path: Path) -> None:
    import torch
    from safetensors import SafetensorError

    from streamlstm.adapters.ray.workers import model_files
    from streamlstm.train.checkpoint import load_model, save_model
    from tests.helpers import tiny_model

    marker = tmp_path / "pwned"
    model_dir = tmp_path / "model" / "g"
    save_model(model_dir, tiny_model(), {})
    weights = model_dir / "weights.safetensors"
    for write in (
        lambda: weights.write_bytes(pickle.dumps({"w": _Trap(marker)})),
        lambda: torch.save({"w": _Trap(marker)}, weights),  # a torch checkpoint (zip + pickle)
    ):
        write()
        with pytest.raises(SafetensorError, match="deserializing header"):
            load_model(model_dir)
        with pytest.raises(SafetensorError):
            model_files(tmp_path / "model")  # what `run` ships to the workers
    for name in ("model.json", "prior.json"):
        save_model(model_dir, tiny_model(), {})
        (model_dir / name).write_bytes(pickle.dumps(_Trap(marker)))
        with pytest.raises(ValueError):  # JSON only (UnicodeDecodeError, JSONDecodeError)
            load_model(model_dir)
    assert not marker.exists()


def test_a_pickled_snapshot_is_rejected_without_running_it(tmp_path: Path) -> None:
    import io

    from streamlstm.adapters.ops.storage import SnapshotStore
    from streamlstm.detect.state import read_meta
    from streamlstm.stream.engine import Engine
    from tests.helpers import tiny_config, tiny_model

    marker = tmp_path / "pwned"
    table = Engine.build(tiny_config(), {"g": tiny_model()}).tables["g"]
    object_npz = io.BytesIO()
    np.savez(object_npz, header=np.array([_Trap(marker)], dtype=object))
    store = SnapshotStore(str(tmp_path / "snaps"))
    for blob in (pickle.dumps(_Trap(marker)), object_npz.getvalue()):
        store.save(("t", 0), {"g": blob}, 5)
        saved = store.load(("t", 0))
        assert saved is not None  # the checksum is fine: the content is what is refused
        with pytest.raises(ValueError, match="pickle"):
            read_meta(saved[0]["g"])
        with pytest.raises(ValueError, match="pickle"):
            table.restore(saved[0]["g"])
    assert not marker.exists()


def test_no_loader_in_the_package_can_unpickle() -> None:
    # Anywhere: the loaders that run pickle on tensors and arrays. In the modules that read
    # weights, model sets and snapshots: pickle itself.
    risky = re.compile(r"torch\.load\(|allow_pickle=True|weights_only=False|joblib\.load")
    loaders = {
        "train/checkpoint.py",
        "detect/state.py",
        "adapters/ops/storage.py",
        "adapters/retrain/registry.py",
        "adapters/ray/workers.py",
    }
    assert all((ROOT / "streamlstm" / f).is_file() for f in loaders)  # renamed: update here
    unpickle = re.compile(r"pickle\.loads?\(|Unpickler")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "streamlstm").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if risky.search(line)
        or (str(path.relative_to(ROOT / "streamlstm")) in loaders and unpickle.search(line))
    ]
    assert found == []


def test_an_encrypted_client_key_loads_with_its_password_and_a_wrong_one_is_named(
    tmp_path: Path,
) -> None:
    """``kafka.ssl_password`` reaches the TLS context kafka-python builds (mutual TLS with a
    key encrypted at rest); a wrong one fails before any connection, naming the setting."""
    from streamlstm.adapters.kafka.login import _tls_context

    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=c",
            "-keyout", str(key), "-out", str(cert), "-passout", "pass:k3ypass",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    assert "ENCRYPTED" in key.read_text()
    cfg = KafkaConfig(security_protocol="SSL", ssl_certfile=str(cert), ssl_keyfile=str(key))
    good = cfg.model_copy(update={"ssl_password": SecretStr("k3ypass")})
    assert isinstance(_tls_context(client_options(good)), ssl.SSLContext)
    bad = cfg.model_copy(update={"ssl_password": SecretStr("wrong")})
    with pytest.raises(ssl.SSLError):
        _tls_context(client_options(bad))
