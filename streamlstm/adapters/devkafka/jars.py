"""The Apache Kafka broker's jars, fetched once from Maven Central (tools/kafka/pom.xml) into a
cache outside the clone, keyed by the pom's hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("STREAMLSTM_CACHE") or Path.home() / ".cache/streamlstm")


def pom_path() -> Path:
    env = os.environ.get("STREAMLSTM_KAFKA_POM")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "tools/kafka/pom.xml"


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise DevKafkaError(
            f"{tool!r} not found on PATH: the local Kafka broker needs a JDK "
            "(17+) and Maven (to fetch the broker jars once)"
        )
    return found


def ensure_jars(pom: Path | None = None) -> Path:
    """Return the cached libs directory for ``pom``, resolving it with Maven on first use."""
    pom = pom or pom_path()
    if not pom.is_file():
        raise DevKafkaError(f"Kafka pom not found: {pom} (set STREAMLSTM_KAFKA_POM)")
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    final = cache_root() / f"kafka-{digest}"
    if (final / ".complete").is_file():
        return final / "libs"
    mvn = _require("mvn")
    final.parent.mkdir(parents=True, exist_ok=True)
    # Resolve beside the final directory (same filesystem) so the rename is atomic and a
    # half-resolved set of jars is never visible under the final name.
    tmp = Path(tempfile.mkdtemp(prefix=f"kafka-{digest}.tmp-", dir=final.parent))
    try:
        goal = ["-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime"]
        cmd = [mvn, "-f", str(pom), *goal, f"-DoutputDirectory={tmp / 'libs'}"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-2000:]
            raise DevKafkaError(f"mvn could not resolve the Kafka jars:\n{tail}")
        (tmp / ".complete").write_text(f"{pom}\n")
        try:
            tmp.rename(final)
        except OSError:
            if not (final / ".complete").is_file():  # not a concurrent winner: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "libs"


class DevKafkaError(RuntimeError):
    pass
