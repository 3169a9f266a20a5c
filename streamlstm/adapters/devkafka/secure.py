"""A local broker with SCRAM authentication (SASL_PLAINTEXT, optionally SASL_SSL) for tests.

Clients reach it on ``SASL_PLAINTEXT`` (``bootstrap``) or ``SASL_SSL`` (``tls_bootstrap``) and
must log in with a SCRAM user created when the storage is formatted. The broker's own traffic
(inter-broker and controller) stays PLAINTEXT on loopback: that keeps the node's setup as
small as the plain ``DevKafka`` and is never what a client connects to.

For SASL_SSL a self-signed certificate for 127.0.0.1 is made with the JDK's ``keytool``; the
broker reads it as a PKCS12 keystore and clients trust its PEM export (``ca_file``).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from streamlstm.adapters.devkafka.broker import (
    LIGHT_SETTINGS,
    LOG4J2,
    DevKafka,
    broker_answers,
    cluster_id,
    free_port,
)
from streamlstm.adapters.devkafka.jars import DevKafkaError, _require

SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class ScramUser:
    name: str
    password: str  # a test credential: it lives in the broker's data dir anyway

    def __post_init__(self) -> None:
        # StorageTool parses "name=...,password=..." inside [...]: these would break it.
        if not self.name or any(ch in self.name + self.password for ch in ',[]="\n'):
            raise DevKafkaError('SCRAM user names and passwords must not contain , [ ] = "')


class SecureDevKafka(DevKafka):
    """``DevKafka`` whose client listeners require SCRAM; ``tls`` adds a SASL_SSL listener.

    One object per data directory: ports and the keystore password are chosen per object, so
    ``restart`` works but a new object over an old directory does not.
    """

    def __init__(
        self, data_dir: Path, users: list[ScramUser], *, tls: bool = False, heap_mb: int = 512
    ) -> None:
        if not users:
            raise DevKafkaError("a SCRAM broker needs at least one user")
        self.users = list(users)
        self.tls = tls
        self.internal_port = free_port()
        self.tls_port = free_port() if tls else None
        self._store_password = secrets.token_hex(12)
        super().__init__(data_dir, heap_mb=heap_mb)

    @property
    def tls_bootstrap(self) -> str:
        if self.tls_port is None:
            raise DevKafkaError("this broker has no SASL_SSL listener (tls=False)")
        return f"127.0.0.1:{self.tls_port}"

    @property
    def internal_bootstrap(self) -> str:
        """The unauthenticated loopback listener the broker uses itself (readiness probes)."""
        return f"127.0.0.1:{self.internal_port}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls/ca.pem"

    def _ports(self) -> tuple[int, int]:
        # A fresh data dir per broker: the ports of an earlier config are never reused.
        return free_port(), free_port()

    def _listeners(self) -> dict[str, str]:
        found = {
            "SECURE": f"127.0.0.1:{self.port}",
            "INTERNAL": self.internal_bootstrap,
            "CONTROLLER": f"127.0.0.1:{self.controller_port}",
        }
        if self.tls_port is not None:
            found["SECURE_TLS"] = f"127.0.0.1:{self.tls_port}"
        return found

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        listeners = self._listeners()
        protocols = {
            "SECURE": "SASL_PLAINTEXT",
            "INTERNAL": "PLAINTEXT",
            "CONTROLLER": "PLAINTEXT",
            "SECURE_TLS": "SASL_SSL",
        }
        joined = ",".join(f"{name}://{addr}" for name, addr in listeners.items())
        props: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.bootstrap.servers": listeners["CONTROLLER"],
            "listeners": joined,
            "advertised.listeners": joined,
            "listener.security.protocol.map": ",".join(
                f"{name}:{protocols[name]}" for name in listeners
            ),
            "inter.broker.listener.name": "INTERNAL",
            "controller.listener.names": "CONTROLLER",
            "sasl.enabled.mechanisms": ",".join(MECHANISMS),
            "log.dirs": str(self.data_dir / "logs"),
            **self._jaas(listeners),
            **self._tls_props(),
            **LIGHT_SETTINGS,
        }
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = LOG4J2.format(log=self.data_dir / "broker.log")
        (self.data_dir / "log4j2.properties").write_text(log4j)

    def _jaas(self, listeners: dict[str, str]) -> dict[str, str]:
        # The server side of SCRAM needs a login module per listener and mechanism; the
        # credentials themselves are in the cluster metadata (written at format time).
        sasl = [name for name in listeners if name.startswith("SECURE")]
        return {
            f"listener.name.{name.lower()}.{mech.lower()}.sasl.jaas.config": SCRAM_MODULE
            for name in sasl
            for mech in MECHANISMS
        }

    def _tls_props(self) -> dict[str, str]:
        if self.tls_port is None:
            return {}
        prefix = "listener.name.secure_tls."
        return {
            f"{prefix}ssl.keystore.type": "PKCS12",
            f"{prefix}ssl.keystore.location": str(self.data_dir / "tls/broker.p12"),
            f"{prefix}ssl.keystore.password": self._store_password,
            f"{prefix}ssl.key.password": self._store_password,
        }

    def _make_certificate(self) -> None:
        """A self-signed key pair for 127.0.0.1 (keystore) and its certificate as PEM."""
        store = self.data_dir / "tls/broker.p12"
        if store.is_file():
            return
        store.parent.mkdir(parents=True, exist_ok=True)
        keytool = _require("keytool")
        common = ["-alias", "broker", "-keystore", str(store), "-storepass", self._store_password]
        gen = [keytool, "-genkeypair", *common, "-storetype", "PKCS12", "-keyalg", "RSA"]
        gen += ["-keysize", "2048", "-validity", "2", "-dname", "CN=127.0.0.1"]
        gen += ["-ext", "SAN=IP:127.0.0.1,DNS:localhost", "-ext", "BC:c=ca:true"]
        export = [keytool, "-exportcert", "-rfc", *common, "-file", str(self.ca_file)]
        for cmd in (gen, export):
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise DevKafkaError(f"keytool failed:\n{(done.stdout + done.stderr)[-2000:]}")

    def _format(self, libs: Path) -> None:
        if (self.data_dir / "logs/meta.properties").is_file():
            return
        scram = [
            f"--add-scram={mech}=[name={u.name},password={u.password}]"
            for u in self.users
            for mech in MECHANISMS
        ]
        args = [f"--cluster-id={cluster_id()}", f"--config={self.config_path}", *scram]
        cmd = self._java(libs, "kafka.tools.StorageTool", "format", "--standalone", *args)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            # The command line holds the test passwords: report only the tool's output.
            tail = (done.stdout + done.stderr)[-2000:]
            raise DevKafkaError(f"kafka storage format (with SCRAM users) failed:\n{tail}")

    def start(self, timeout_s: float = 60) -> str:
        if self.tls_port is not None and not self.is_running():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._make_certificate()
        return super().start(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        # Probe the loopback PLAINTEXT listener: it answers once the node is registered, and
        # every listener is bound by then.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_running():
                raise DevKafkaError(f"Kafka broker exited during start:\n{self.output_tail()}")
            if broker_answers(self.internal_bootstrap, timeout_s=2.0):
                return
            time.sleep(0.2)
        raise DevKafkaError(f"Kafka broker not ready after {timeout_s}s:\n{self.output_tail()}")
