"""The worker's topics from its config: create them, list their partitions, read them from
the start (cold-start data)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from streamlstm.adapters.kafka.client import KafkaSource
from streamlstm.adapters.kafka.client import ensure_topics as create
from streamlstm.adapters.kafka.login import check_login
from streamlstm.adapters.kafka.options import client_options
from streamlstm.config import Config
from streamlstm.record_parser import RecordParser
from streamlstm.records import Reading
from streamlstm.stream.decode import readings_of

log = logging.getLogger(__name__)


def ensure_worker_topics(config: Config, bootstrap: str) -> None:

    k = config.kafka
    if not k.create_topics:
        return
    wanted = {t: k.input_partitions for t in k.input_topics}
    wanted[k.alerts_topic] = k.input_partitions
    wanted[k.dlq_topic] = 1
    configs = {}
    if k.min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(k.min_insync_replicas)
    create(bootstrap, wanted, client_options(k), k.replication_factor, configs)


def topic_record_limit(bootstrap: str, topic: str, options: dict) -> int | None:
    """The topic's ``max.message.bytes`` (the largest record batch its broker accepts), or
    None when it cannot be read (e.g. no DescribeConfigs permission)."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": None})
    try:
        check_login(bootstrap, options)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, **options)
        try:
            found = admin.describe_configs([resource], config_filter="all")
        finally:
            admin.close()
        return int(found["topic"][topic]["max.message.bytes"]["value"])
    except (KafkaError, KeyError, TypeError, ValueError) as exc:
        log.warning(
            "cannot read max.message.bytes of %r (%s): dead letters are cut to "
            "kafka.producer.max_request_size only",
            topic,
            type(exc).__name__,
        )
        return None


def input_partitions(config: Config, bootstrap: str) -> list[tuple[str, int]]:

    source = KafkaSource(bootstrap, f"{config.kafka.group_id}-meta", client_options(config.kafka))
    try:
        return sorted((t, p) for t in config.kafka.input_topics for p in source.partitions_for(t))
    finally:
        source.close()


def read_topic_readings(
    config: Config,
    bootstrap: str,
    min_readings: int,
    timeout_s: float,
    progress: Callable[[int], None] | None = None,
) -> list:
    """Readings from the start of the input topics (no offsets committed): cold-start data."""

    parser = RecordParser(config.input, config.groups)
    source = KafkaSource(
        bootstrap, f"{config.kafka.group_id}-bootstrap", client_options(config.kafka)
    )
    readings: list[Reading] = []
    try:
        tps = sorted((t, p) for t in config.kafka.input_topics for p in source.partitions_for(t))
        source.assign(tps)
        for t, p in tps:
            source.seek(t, p, 0)
        deadline = time.monotonic() + timeout_s
        while len(readings) < min_readings and time.monotonic() < deadline:
            readings.extend(readings_of(parser, source.poll(0.5, 5000)))
            if progress:
                progress(len(readings))
    finally:
        source.close()
    readings.sort(key=lambda r: (r.ts, r.stream))
    return readings
