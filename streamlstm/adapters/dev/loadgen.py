"""Offer a steady load to a topic, for latency measurements (``bench e2e``).

The Java client from the broker's own jars is preferred: on a 2-core machine the load
generator shares the cores with the workers it measures, and kafka-python spends more than
a core to send ~50k records/s where the Java client spends about half of one. Without Java
(an external cluster, no local jars) it falls back to kafka-python and says so.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from streamlstm.adapters.devkafka.jars import ensure_jars, pom_path


def offer(
    bootstrap: str,
    topic: str,
    payloads: list[tuple[bytes, bytes]],
    rate_per_s: float,
    warmup_s: float,
    on_warm: Callable[[], None],
) -> dict:
    """Send ``payloads`` (key, value) at ``rate_per_s``; returns sent count, seconds, client.

    ``on_warm`` is called once, ``warmup_s`` after sending starts: the caller starts its
    measurement there, after the client's start-up (JVM JIT, connections) has settled.
    """
    source = _java_source()
    if source is not None and shutil.which("java"):
        return _offer_java(source, bootstrap, topic, payloads, rate_per_s, warmup_s, on_warm)
    return _offer_python(bootstrap, topic, payloads, rate_per_s, warmup_s, on_warm)


def _java_source() -> Path | None:

    path = pom_path().parent / "RateProducer.java"
    return path if path.exists() else None


def _offer_java(
    source: Path, bootstrap: str, topic: str, payloads, rate_per_s: float, warmup_s, on_warm
) -> dict:

    libs = ensure_jars()
    with tempfile.NamedTemporaryFile("wb", suffix=".tsv") as f:
        for key, value in payloads:  # orjson escapes tabs and newlines inside strings
            f.write(key + b"\t" + value + b"\n")
        f.flush()
        cmd = ["java", "-cp", f"{libs}/*", str(source), bootstrap, topic, f.name, str(rate_per_s)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(warmup_s)
        on_warm()
        stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {stderr[-2000:]}")
    sent, seconds = stdout.split()[-2:]
    return {"sent": int(sent), "seconds": float(seconds), "client": "java"}


def _offer_python(bootstrap: str, topic: str, payloads, rate_per_s: float, warmup_s, on_warm):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    started = time.perf_counter()
    warm = False
    for sent, (key, value) in enumerate(payloads, 1):
        producer.send(topic, key=key, value=value)
        if not warm and time.perf_counter() - started >= warmup_s:
            on_warm()
            warm = True
        ahead_s = sent / rate_per_s - (time.perf_counter() - started)
        if ahead_s > 0.002:
            time.sleep(ahead_s)
    producer.flush()
    seconds = time.perf_counter() - started
    producer.close()
    return {"sent": len(payloads), "seconds": seconds, "client": "kafka-python"}
