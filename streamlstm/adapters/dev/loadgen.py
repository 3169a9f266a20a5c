"""Offer a steady load to a topic, for latency measurements (``bench e2e``).

The Java client from the broker's own jars is preferred: on a 2-core machine the load
generator shares the cores with the workers it measures, and kafka-python spends more than
a core to send ~50k records/s where the Java client spends about half of one. Without Java
(an external cluster, no local jars) it falls back to kafka-python and says so.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from streamlstm.adapters.devkafka.jars import ensure_jars, pom_path

# With the JVM's defaults the load generator used twice the CPU it needs: its optimising JIT
# compiler and parallel GC threads ran during the measurement, on the cores the workers share
# (6.6 to 6.9 CPU-s per half-load phase of 15 s plus start-up; the workers' half-load p99
# 0.34 to 1.0 s). With the quick compiler alone and one GC thread it sends the same load
# with 3.1 to 3.2 CPU-s, and p99 was 57 to 74 ms (README, Performance). A steady 10-50k
# records/s needs no more.
JVM_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def offer(
    bootstrap: str,
    topic: str,
    payloads: list[tuple[bytes, bytes]],
    rate_per_s: float,
    warmup_s: float,
    on_warm: Callable[[], None],
) -> dict:
    """Send ``payloads`` (key, value) at ``rate_per_s``; returns sent count, seconds, client,
    and the CPU seconds the load generator itself used (``cpu_s``: it shares the cores with
    the workers it measures).

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
        cmd = ["java", *JVM_FLAGS, "-cp", f"{libs}/*", str(source)]
        cmd += [bootstrap, topic, f.name, str(rate_per_s)]
        before = _children_cpu_s()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(warmup_s)
        on_warm()
        stdout, stderr = proc.communicate()
        cpu_s = _children_cpu_s() - before
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {stderr[-2000:]}")
    sent, seconds = stdout.split()[-2:]
    return {"sent": int(sent), "seconds": float(seconds), "client": "java", "cpu_s": cpu_s}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _offer_python(bootstrap: str, topic: str, payloads, rate_per_s: float, warmup_s, on_warm):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    cpu_before = time.process_time()  # this process: the driver idles while it offers
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
    cpu_s = time.process_time() - cpu_before
    return {"sent": len(payloads), "seconds": seconds, "client": "kafka-python", "cpu_s": cpu_s}
