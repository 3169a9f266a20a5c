"""Pytest plugin: one real Kafka broker per test session, and uniquely named topics.

``$KAFKA_BOOTSTRAP`` points the tests at an existing broker instead of starting one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator

import pytest

from streamlstm.adapters.devkafka.broker import DevKafka


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: the local Kafka broker needs a JDK 17+")
    broker = DevKafka(tmp_path_factory.mktemp("kafka"))
    broker.start(timeout_s=120)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """``make(partitions=1, prefix="t", configs=None) -> name``; topics are deleted after."""
    from kafka import KafkaAdminClient

    from streamlstm.adapters.kafka.client import ensure_topics

    made: list[str] = []

    def make(partitions: int = 1, prefix: str = "t", configs: dict | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        ensure_topics(kafka_bootstrap, {name: partitions}, configs=configs)
        made.append(name)
        return name

    yield make
    if made:  # keep the shared broker small over a long session
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            admin.delete_topics(made, raise_errors=False)
        finally:
            admin.close()
