"""A real single-node Apache Kafka (KRaft, combined broker+controller) for development and tests.

The broker jars come from Maven Central (``tools/kafka/pom.xml``) and are cached outside the
repository, keyed by the pom's hash, so a second run never calls Maven. ``up``/``down``/
``status`` keep one detached broker alive across CLI invocations via a small state file.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from streamlstm.adapters.devkafka.jars import DevKafkaError, _require, ensure_jars

MAIN_CLASS = "kafka.Kafka"
# Measured on 2 cores: C1-only JIT (TieredStopAtLevel=1) cuts start from ~3.2 s to ~1.6 s and
# also lowered broker CPU in a 300k-record produce/consume run, since the Python clients, not
# the broker, set the pace and C2 compiles cost more than they return. Serial GC: a tiny heap,
# and GC threads would only compete with the broker's own. Headless as in kafka-run-class.sh.
JVM_FLAGS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]

LOG4J2 = """status = error
appender.f.type = File
appender.f.name = F
appender.f.fileName = {log}
appender.f.layout.type = PatternLayout
appender.f.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.f.ref = F
"""

# Settings that keep one small node light: few threads, few internal-topic partitions (their
# creation dominates the first consumer-group commit), a small cleaner buffer (default 128 MB).
LIGHT_SETTINGS = {
    "num.network.threads": 2,
    "num.io.threads": 2,
    "background.threads": 2,
    "num.recovery.threads.per.data.dir": 1,
    "log.cleaner.threads": 1,
    "log.cleaner.dedupe.buffer.size": 8 * 1024 * 1024,
    "log.segment.bytes": 64 * 1024 * 1024,
    "offsets.topic.num.partitions": 4,
    "offsets.topic.replication.factor": 1,
    "transaction.state.log.num.partitions": 2,
    "transaction.state.log.replication.factor": 1,
    "transaction.state.log.min.isr": 1,
    "share.coordinator.state.topic.replication.factor": 1,
    "share.coordinator.state.topic.min.isr": 1,
    "group.initial.rebalance.delay.ms": 0,
    # After a SIGKILL the restarted node stays fenced until its old registration expires
    # (default 9 s); a short session makes crash-restart tests fast.
    "broker.session.timeout.ms": 3000,
    "broker.heartbeat.interval.ms": 500,
    "auto.create.topics.enable": "false",
    "num.partitions": 1,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def broker_answers(bootstrap: str, timeout_s: float = 3.0, node_id: int | None = None) -> bool:
    """True when the broker at ``bootstrap`` serves metadata with a registered, unfenced node
    (node ``node_id`` itself, when given: in a cluster the others are unfenced already)."""
    from kafka import KafkaAdminClient  # lazy: keep importing this module cheap

    host, _, port = bootstrap.rpartition(":")
    try:  # a plain TCP probe first keeps kafka-python from logging connection errors
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
        ms = int(timeout_s * 1000)
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=ms, bootstrap_timeout_ms=ms
        )
    except Exception:
        return False
    try:
        brokers = admin.describe_cluster().get("brokers") or []
        return any(
            not b.get("is_fenced") and node_id in (None, b.get("broker_id")) for b in brokers
        )
    except Exception:
        return False
    finally:
        admin.close()


def _pid_alive(pid: int) -> bool:
    try:  # a zombie (exited, not reaped) still has a /proc entry: check its state too
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class DevKafka:
    """One local broker whose logs, config and output live under ``data_dir``.

    Alone by default (a one-voter quorum). ``DevKafkaCluster`` (``cluster.py``) makes several
    of them one cluster: it sets ``voters`` (a static quorum, ``id@host:port,...``) and a
    shared ``cluster_id`` before the first start, and ``settings`` override LIGHT_SETTINGS.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        heap_mb: int = 512,
        node_id: int = 1,
        settings: dict[str, object] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.heap_mb = heap_mb
        self.node_id = node_id
        self.settings = {**LIGHT_SETTINGS, **(settings or {})}
        self.voters: str | None = None
        self.cluster_id: str | None = None
        self.port, self.controller_port = self._ports()
        self._proc: subprocess.Popen | None = None
        self._pid: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    def _ports(self) -> tuple[int, int]:
        # Reuse the ports of an existing config: KRaft records the controller endpoint in the
        # metadata log, and clients of a restarted broker expect the same address.
        props = self._read_props()
        if "listeners" in props:
            ports = [int(x.rsplit(":", 1)[1]) for x in props["listeners"].split(",")]
            return ports[0], ports[1]
        return free_port(), free_port()

    def _read_props(self) -> dict[str, str]:
        if not self.config_path.is_file():
            return {}
        lines = self.config_path.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        plain, ctrl = f"127.0.0.1:{self.port}", f"127.0.0.1:{self.controller_port}"
        quorum = (
            {"controller.quorum.voters": self.voters}
            if self.voters
            else {"controller.quorum.bootstrap.servers": ctrl}
        )
        props = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            **quorum,
            "listeners": f"PLAINTEXT://{plain},CONTROLLER://{ctrl}",
            "advertised.listeners": f"PLAINTEXT://{plain},CONTROLLER://{ctrl}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.data_dir / "logs"),
            **self.settings,
        }
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = LOG4J2.format(log=self.data_dir / "broker.log")
        (self.data_dir / "log4j2.properties").write_text(log4j)

    def _java(self, libs: Path, *args: str, heap: bool = False) -> list[str]:
        mem = [f"-Xmx{self.heap_mb}m", "-Xms128m"] if heap else []
        log4j = f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}"
        return [_require("java"), *mem, *JVM_FLAGS, log4j, "-cp", f"{libs}/*", *args]

    def _format(self, libs: Path) -> None:
        if (self.data_dir / "logs/meta.properties").is_file():
            return  # formatted before: formatting again would fail (or wipe the cluster id)
        # "--cluster-id=ID", not "-t ID": a base64url id may start with "-" and would then
        # be parsed as an option.
        args = [f"--cluster-id={self.cluster_id or cluster_id()}", f"--config={self.config_path}"]
        # A static quorum (``voters``) is formatted as it is; alone, the node is its own voter.
        alone = [] if self.voters else ["--standalone"]
        cmd = self._java(libs, "kafka.tools.StorageTool", "format", *alone, *args)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-2000:]
            raise DevKafkaError(f"kafka storage format failed:\n{tail}")

    def start(self, timeout_s: float = 60) -> str:
        """Start the broker (formatting storage on first use); return its bootstrap address."""
        if self.is_running():
            return self.bootstrap
        self.launch()
        try:
            self._wait_ready(timeout_s)
        except DevKafkaError:
            self.kill()  # never leave a half-started broker behind
            raise
        return self.bootstrap

    def launch(self) -> None:
        """Start the process without waiting: a cluster's nodes can only become ready
        together (no controller quorum before a majority of voters runs)."""
        libs = ensure_jars()
        self._write_config()
        self._format(libs)
        cmd = self._java(libs, MAIN_CLASS, str(self.config_path), heap=True)
        with open(self.data_dir / "broker.out", "ab") as out:
            # Own session: Ctrl-C in the caller's terminal does not reach the broker, and the
            # whole group can be signalled (stop/kill/pause) at once.
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._pid = self._proc.pid

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_running():
                raise DevKafkaError(f"Kafka broker exited during start:\n{self.output_tail()}")
            if broker_answers(self.bootstrap, timeout_s=2.0, node_id=self.node_id):
                return
            time.sleep(0.2)
        raise DevKafkaError(f"Kafka broker not ready after {timeout_s}s:\n{self.output_tail()}")

    def output_tail(self, chars: int = 3000) -> str:
        text = ""
        for name in ("broker.out", "broker.log"):
            with contextlib.suppress(OSError):
                text += (self.data_dir / name).read_text(errors="replace")[-chars:]
        return text[-chars:]

    def is_running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and _pid_alive(self._pid)

    def _signal(self, sig: int) -> None:
        if self._pid is not None and self.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._pid, sig)

    def _wait_exit(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.is_running():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def stop(self, timeout_s: float = 20) -> None:
        """Graceful stop (SIGTERM: the broker flushes and closes its logs), then SIGKILL."""
        self._signal(signal.SIGCONT)  # a paused broker cannot handle SIGTERM
        self._signal(signal.SIGTERM)
        if not self._wait_exit(timeout_s):
            self.kill()

    def kill(self) -> None:
        """SIGKILL: an unclean crash, for chaos tests."""
        self._signal(signal.SIGKILL)
        self._wait_exit(10)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self, timeout_s: float = 60) -> str:
        """Stop if running, then start again on the same log dir and ports."""
        self.stop()
        return self.start(timeout_s)

    def attach(self, pid: int) -> None:
        """Manage an already running broker of this data dir started by another process."""
        self._proc, self._pid = None, pid


def resolve_bootstrap(configured: str | None) -> str | None:
    """$KAFKA_BOOTSTRAP, else the configured address, else None (caller starts a DevKafka)."""
    return os.environ.get("KAFKA_BOOTSTRAP") or configured or None
