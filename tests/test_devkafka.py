"""The local Kafka broker manager, against real Maven, a real JVM and a real broker."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamlstm.adapters.devkafka import broker as devkafka
from streamlstm.adapters.devkafka.broker import DevKafka, DevKafkaError
from streamlstm.adapters.kafka.client import ensure_topics

REPO = Path(__file__).resolve().parents[1]
needs_jdk = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("mvn") is None, reason="needs java and mvn on PATH"
)


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for v in values:
        producer.send(topic, v)
    producer.flush(30)
    producer.close()


def consume_all(bootstrap: str, topic: str, count: int, timeout_s: float = 30) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        for records in consumer.poll(500).values():
            got += [r.value for r in records]
    consumer.close()
    return got


@pytest.fixture
def own_broker(tmp_path: Path):
    """A broker of this test alone, for restarts and crashes."""
    broker = DevKafka(tmp_path / "broker", heap_mb=256)
    broker.start()
    yield broker
    broker.stop()


def _counting_mvn(tmp_path: Path) -> tuple[Path, Path]:
    # A wrapper on PATH that records each call, then runs the real mvn.
    bindir, calls = tmp_path / "bin", tmp_path / "mvn-calls"
    bindir.mkdir()
    wrapper = bindir / "mvn"
    wrapper.write_text(f'#!/bin/sh\necho call >> "{calls}"\nexec "{shutil.which("mvn")}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return bindir, calls


@needs_jdk
def test_jars_resolved_once_then_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir, calls = _counting_mvn(tmp_path)
    monkeypatch.setenv("STREAMLSTM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    libs = devkafka.ensure_jars()
    marker = libs.parent / ".complete"
    assert calls.read_text().count("call") == 1
    assert marker.is_file() and any(libs.glob("kafka_2.13-*.jar"))
    assert libs.parent.name.startswith("kafka-") and len(libs.parent.name) == len("kafka-") + 12
    mtime = marker.stat().st_mtime_ns
    assert devkafka.ensure_jars() == libs
    assert calls.read_text().count("call") == 1  # no second Maven run
    assert marker.stat().st_mtime_ns == mtime
    assert not list(libs.parent.parent.glob("*.tmp-*"))  # temp dir renamed away


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLSTM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    with pytest.raises(DevKafkaError, match="mvn"):
        devkafka.ensure_jars()


def test_missing_pom_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLSTM_KAFKA_POM", str(tmp_path / "nope.xml"))
    with pytest.raises(DevKafkaError, match=r"nope\.xml"):
        devkafka.ensure_jars()


def test_resolve_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    assert devkafka.resolve_bootstrap(None) is None
    assert devkafka.resolve_bootstrap("cfg:9092") == "cfg:9092"
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "env:9092")
    assert devkafka.resolve_bootstrap("cfg:9092") == "env:9092"


@pytest.mark.kafka
def test_round_trip(kafka_bootstrap: str, kafka_topic_factory) -> None:
    topic = kafka_topic_factory()
    values = [b"\x00\xffbinary", b"two", b"three"]
    produce(kafka_bootstrap, topic, values)
    assert consume_all(kafka_bootstrap, topic, 3) == values


@pytest.mark.kafka
@needs_jdk
def test_restart_keeps_data_and_address(own_broker: DevKafka) -> None:
    bootstrap, pid = own_broker.bootstrap, own_broker.pid
    ensure_topics(bootstrap, {"kept": 1})
    produce(bootstrap, "kept", [b"a", b"b"])
    assert own_broker.restart() == bootstrap
    assert own_broker.pid != pid
    assert consume_all(bootstrap, "kept", 2) == [b"a", b"b"]


@pytest.mark.kafka
@needs_jdk
def test_kill_then_start_recovers(own_broker: DevKafka) -> None:
    bootstrap = own_broker.bootstrap
    ensure_topics(bootstrap, {"crash": 1})
    produce(bootstrap, "crash", [b"x"])
    pid = own_broker.pid
    own_broker.kill()
    assert not own_broker.is_running()
    assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie
    assert not devkafka.broker_answers(bootstrap, timeout_s=1)
    own_broker.start()  # unclean shutdown: log recovery runs
    assert consume_all(bootstrap, "crash", 1) == [b"x"]


@pytest.mark.kafka
@needs_jdk
def test_pause_and_resume(own_broker: DevKafka) -> None:
    own_broker.pause()
    assert own_broker.is_running()
    assert not devkafka.broker_answers(own_broker.bootstrap, timeout_s=1)
    own_broker.resume()
    assert devkafka.broker_answers(own_broker.bootstrap, timeout_s=10)


@pytest.mark.kafka
@needs_jdk
def test_early_exit_reports_output(tmp_path: Path) -> None:
    broker = DevKafka(tmp_path / "b", heap_mb=1)  # far too small a heap: the JVM refuses
    with pytest.raises(DevKafkaError, match="exited during start"):
        broker.start(timeout_s=30)
    assert not broker.is_running()


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamlstm", "kafka", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.kafka
@needs_jdk
def test_cli_up_status_down(tmp_path: Path) -> None:
    libs = devkafka.ensure_jars()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / libs.parent.name).symlink_to(libs.parent)  # share the resolved jars
    env = {**os.environ, "STREAMLSTM_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    try:
        up = _cli("up", env=env)
        assert up.returncode == 0, up.stderr
        bootstrap = up.stdout.strip()
        # The broker outlived the CLI process, and a second `up` reuses it.
        assert _cli("up", env=env).stdout.strip() == bootstrap
        state = json.loads(_cli("status", env=env).stdout)
        assert state["running"] and state["answers"] and state["bootstrap"] == bootstrap
    finally:
        assert _cli("down", env=env).returncode == 0
    state = json.loads(_cli("status", env=env).stdout)
    assert not state["running"]


@needs_jdk
def test_format_accepts_cluster_id_starting_with_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # base64url ids start with "-" one time in 64; passed as "-t ID" that broke formatting.
    monkeypatch.setattr(devkafka, "cluster_id", lambda: "-" + "A" * 21)
    broker = DevKafka(tmp_path / "b")
    broker._write_config()
    broker._format(devkafka.ensure_jars())
    meta = (tmp_path / "b/logs/meta.properties").read_text()
    assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in meta


def test_cluster_nodes_form_one_replicated_quorum(tmp_path: Path) -> None:
    """Configs only (no JVM): one static quorum naming every node, one cluster id, the
    replicated defaults; a cluster built again on the same directory keeps its addresses."""
    from streamlstm.adapters.devkafka.cluster import DevKafkaCluster

    cluster = DevKafkaCluster(tmp_path, nodes=3)
    props = []
    for node in cluster.nodes.values():
        node._write_config()
        props.append(node._read_props())
    voters = {p["controller.quorum.voters"] for p in props}
    assert len(voters) == 1 and voters.pop().count("@127.0.0.1:") == 3
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert all("controller.quorum.bootstrap.servers" not in p for p in props)
    for key, want in [
        ("default.replication.factor", "3"),
        ("min.insync.replicas", "2"),
        ("offsets.topic.replication.factor", "3"),
        ("transaction.state.log.min.isr", "2"),
    ]:
        assert {p[key] for p in props} == {want}, key
    assert len({n.cluster_id for n in cluster.nodes.values()}) == 1
    assert DevKafkaCluster(tmp_path, nodes=3).bootstrap == cluster.bootstrap
