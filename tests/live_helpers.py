"""Builders for the live-pipeline tests: a real broker, a real local Ray, no mocks."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer

from streamlstm import config as config_mod
from streamlstm.adapters.kafka.topics import ensure_worker_topics, input_partitions
from streamlstm.adapters.ray.supervisor import Supervisor
from streamlstm.adapters.ray.workers import model_files
from streamlstm.config import Config
from streamlstm.datafiles import FileData
from streamlstm.records import Reading, format_ts
from streamlstm.simulate.generate import generate
from streamlstm.train.checkpoint import save_model
from streamlstm.train.models import train_models

ROOT = Path(__file__).resolve().parents[1]


def live_config(bootstrap: str, tmp: Path, workers: int = 2, partitions: int = 2) -> Config:
    tag = uuid.uuid4().hex[:8]
    topic = f"vitals-{tag}"
    return config_mod.load(
        ROOT / "configs" / "test.yaml",
        {
            "kafka.bootstrap": bootstrap,
            "kafka.input_topics": [topic],
            "kafka.input_partitions": partitions,
            "kafka.alerts_topic": f"alerts-{tag}",
            "kafka.dlq_topic": f"dlq-{tag}",
            "kafka.group_id": f"g-{tag}",
            "groups.0.topics": [topic],
            "checkpoint.dir": str(tmp / "snapshots"),
            "checkpoint.interval_s": 0.5,
            "ray.workers": workers,
            "ray.num_cpus": 0.5,
            "metrics.port": 0,  # a free port: tests may run beside a demo on 9464
        },
        environ={},
    )


def simulated(n_streams: int, length: int, seed: int = 3, rate: float = 1.0):
    return generate("vitals", n_streams, length, seed, anomaly_rate=rate)


def train_tiny(config: Config, data, out: Path, first: int = 150) -> dict:
    """A tiny model trained on the first readings of each simulated stream."""
    group = config.groups[0].name
    readings = [
        Reading(s, float(data.ts[i][t]), tuple(data.values[i][t]), group, "", 0, t)
        for i, s in enumerate(data.streams)
        for t in range(first)
    ]
    models, metrics = train_models(config, FileData(readings), 1.0, _cpu(), quiet=True)
    save_model(out / group, models[group], metrics[group])
    return model_files(out)


def _cpu():
    import torch

    return torch.device("cpu")


def records_of(data, topic_steps: int | None = None) -> list[tuple[bytes, bytes]]:
    """Keyed input-contract records, in time order (step by step across streams)."""
    out = []
    steps = topic_steps or data.ts.shape[1]
    for t in range(steps):
        for i, stream in enumerate(data.streams):
            values = {
                f: (None if v != v else float(v))
                for f, v in zip(data.features, data.values[i][t], strict=True)
            }
            payload = {"stream": stream, "ts": format_ts(float(data.ts[i][t])), "values": values}
            out.append((stream.encode(), orjson.dumps(payload)))
    return out


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def read_all(bootstrap: str, topic: str, idle_s: float = 2.0) -> list:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(idle_s * 1000),
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def setup_topics(config: Config) -> None:
    ensure_worker_topics(config, config.kafka.bootstrap)


def start(config: Config, files: dict) -> Supervisor:
    sup = Supervisor(
        config, config.kafka.bootstrap, files, input_partitions(config, config.kafka.bootstrap)
    )
    sup.start()
    return sup


def wait_consumed(
    sup: Supervisor, expected: int, timeout_s: float = 120.0, durable: bool = False
) -> list[dict]:
    """Poll worker stats until ``expected`` records were handled (or fail); ``durable``:
    and are in the partitions' snapshots (what the exported outcome counters show)."""

    def counted(stats: list[dict]) -> int:
        return sum((s.get("durable", {}) if durable else s).get("records", 0) for s in stats)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sup.watch()
        stats = sup.stats()
        if counted(stats) >= expected:
            return stats
        time.sleep(0.3)
    raise AssertionError(f"workers handled {counted(stats)} of {expected} records in {timeout_s} s")


def alert_events(config: Config) -> list[dict]:
    return [
        orjson.loads(m.value) for m in read_all(config.kafka.bootstrap, config.kafka.alerts_topic)
    ]


def end_offsets(config: Config) -> dict[str, int]:
    from streamlstm.adapters.kafka.client import KafkaSource

    source = KafkaSource(config.kafka.bootstrap, "probe")
    try:
        tps = [(t, p) for t in config.kafka.input_topics for p in source.partitions_for(t)]
        return {f"{t}:{p}": o for (t, p), o in source.end_offsets(tps).items()}
    finally:
        source.close()


def wait_caught_up(sup: Supervisor, ends: dict[str, int], timeout_s: float = 120.0) -> None:
    """Until every partition's next offset (in its worker) reaches the end of the topic."""
    deadline = time.monotonic() + timeout_s
    positions: dict[str, int] = {}
    while time.monotonic() < deadline:
        sup.watch()
        positions = {}
        for s in sup.stats():
            positions.update(s.get("positions", {}))
        if all(positions.get(tp, -1) >= end for tp, end in ends.items()):
            return
        time.sleep(0.3)
    raise AssertionError(f"positions {positions} did not reach {ends}")
