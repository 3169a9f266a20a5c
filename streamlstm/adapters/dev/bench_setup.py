"""What the live benches share: their records, topics, config and model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from streamlstm.adapters.dev.sim_producer import batched_steps
from streamlstm.adapters.devkafka.broker import DevKafka, resolve_bootstrap
from streamlstm.adapters.kafka.client import ensure_topics
from streamlstm.config import Config, from_dict
from streamlstm.records import Reading
from streamlstm.simulate.generate import generate
from streamlstm.train.models import train_first_model


def input_records(
    n_streams: int, per_stream: int, seed: int, per_record: int = 1
) -> list[tuple[bytes, bytes]]:
    """Input records in time order: one reading each, or ``per_record`` of a stream each."""
    data = generate("vitals", n_streams, per_stream, seed)
    if per_record > 1:
        return [
            rec
            for first in range(0, per_stream, per_record)
            for rec in batched_steps(data, first, min(per_record, per_stream - first))
        ]
    out = []
    for t in range(per_stream):
        for i, stream in enumerate(data.streams):
            values = {
                f: (None if v != v else round(float(v), 2))
                for f, v in zip(data.features, data.values[i][t], strict=True)
            }
            ts_ms = int(data.ts[i][t] * 1000)
            out.append(
                (stream.encode(), orjson.dumps({"stream": stream, "ts": ts_ms, "values": values}))
            )
    return out


def preload(bootstrap: str, topic: str, records, partitions: int) -> None:
    from kafka import KafkaProducer

    ensure_topics(
        bootstrap, {topic: partitions}, configs={"message.timestamp.type": "LogAppendTime"}
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256_000, acks=1)
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def bench_config(
    config: Config, bootstrap: str, partitions: int, workers: int, out: Path
) -> tuple[Config, str]:
    """``config`` on fresh topics, group and snapshot folder of its own; and its input topic."""
    tag = uuid.uuid4().hex[:6]
    topic = f"bench-{tag}"
    tree = config.model_dump()
    tree["kafka"].update(
        bootstrap=bootstrap,
        input_topics=[topic],
        group_id=f"bench-{tag}",
        alerts_topic=f"bench-alerts-{tag}",
        dlq_topic=f"bench-dlq-{tag}",
        input_partitions=partitions,
    )
    tree["groups"][0]["topics"] = [topic]
    tree["checkpoint"]["dir"] = str(out / f"snapshots-{tag}")
    tree["ray"]["workers"] = workers
    return from_dict(tree), topic


def later_copies(records, total: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    """``total`` records of an endless repetition of ``records``, from its ``start``-th on;
    repetition ``c`` (1, 2, ...) is stamped ``c`` times the records' time span later, so
    every copy is later than every earlier reading of its stream (none is rejected as out of
    order) and a phase that starts where the last one stopped continues its streams without
    a gap. A fixed shift of 10^9 ms a repetition had put the quarter-load phase of
    ``bench e2e`` years ahead of its Kafka append times: every reading was dead-lettered as
    a ``future_timestamp``, and the phase measured the dead-letter path, not scoring."""
    parsed = [orjson.loads(value) for _, value in records]
    stamps = [t for r in parsed for t in (r["ts"] if isinstance(r["ts"], list) else [r["ts"]])]
    span = max(stamps) - min(stamps) + 1000  # ms: one repetition ends before the next begins
    payloads = []
    for j in range(start, start + total):
        rec = dict(parsed[j % len(records)])
        later = span * (1 + j // len(records))
        rec["ts"] = (
            [t + later for t in rec["ts"]] if isinstance(rec["ts"], list) else rec["ts"] + later
        )
        payloads.append((records[j % len(records)][0], orjson.dumps(rec)))
    return payloads


def bench_model(config: Config, out: Path) -> Path:
    """A first model trained on simulated readings (what the benches serve)."""
    data = generate("vitals", 50, 300, 2)
    group = config.groups[0].name
    readings = [
        Reading(s, float(data.ts[i][t]), tuple(data.values[i][t]), group)
        for i, s in enumerate(data.streams)
        for t in range(300)
    ]
    return train_first_model(config, readings, out / "model", "cpu")


@contextmanager
def bench_broker(config: Config, out: Path) -> Iterator[str]:
    """The configured broker's address, or a local one started in ``out`` and stopped after."""
    out.mkdir(parents=True, exist_ok=True)
    bootstrap = resolve_bootstrap(config.kafka.bootstrap)
    if bootstrap is not None:
        yield bootstrap
        return
    broker = DevKafka(out / f"kafka-{uuid.uuid4().hex[:6]}")
    try:
        yield broker.start()
    finally:
        broker.stop()
