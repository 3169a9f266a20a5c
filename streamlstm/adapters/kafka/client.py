"""Kafka adapters on kafka-python (3.x): a manually assigned source, an idempotent sink, topics.

``client_options`` is passed through to kafka-python unchanged, so security settings
(security_protocol, sasl_mechanism, sasl_plain_username/password, ssl_cafile, ...) work for
SASL_SSL, SCRAM and TLS clusters. With SASL, every client first checks the login
(``kafka.login.check_login``): wrong credentials raise ``KafkaAuthFailed`` in well under a
second instead of a bare bootstrap timeout after 30 s. Record values never appear in logs or
exception texts: they may carry patient data.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata, TopicPartition

from streamlstm.adapters.kafka.dead_letters import dlq_headers, fit_to_limit, fits
from streamlstm.adapters.kafka.login import check_login
from streamlstm.records import RawRecord
from streamlstm.stream.ports import UndeliverableRecord

log = logging.getLogger(__name__)

TP = tuple[str, int]

# At DEBUG, kafka-python logs produced keys and values and raw request/response bytes (which
# hold record values) from several loggers under "kafka"; the whole tree is capped at INFO.
_CLIENT_LOGGER = "kafka"


class KafkaDeliveryError(RuntimeError):
    """One or more records were not delivered; the text names topics and errors, never values."""


class RecordTooLarge(KafkaDeliveryError, UndeliverableRecord):
    """The producer refused one record for its size: retrying cannot help."""


def _tps(partitions: Iterable[TP]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in partitions]


class KafkaSource:
    """A consumer with explicit partition assignment and explicit offset commits.

    The caller owns positions (snapshots store the next offset per partition), so the group is
    used for committed offsets only: no subscription, no rebalances, no auto-commit.
    """

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        client_options: dict | None = None,
        max_poll_records: int = 2000,
    ) -> None:
        _quiet_value_logging()
        config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": max_poll_records,
            # Large fetches keep the decoder busy at high rates: up to 8 MiB per partition
            # and 64 MiB per request instead of kafka-python's 1 MiB partition default.
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
            "fetch_max_bytes": 64 * 1024 * 1024,
            "allow_auto_create_topics": False,
            **(client_options or {}),
        }
        check_login(bootstrap, config)
        self._consumer = KafkaConsumer(**config)

    def assign(self, partitions: list[TP]) -> None:
        self._consumer.assign(_tps(partitions))

    def assignment(self) -> list[TP]:
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(topic, partition), offset)

    def position(self, topic: str, partition: int) -> int:
        return self._consumer.position(TopicPartition(topic, partition))

    def committed(self, topic: str, partition: int) -> int | None:
        offset = self._consumer.committed(TopicPartition(topic, partition))
        return None if offset is None or offset < 0 else offset

    def poll(self, timeout_s: float, max_records: int | None = None) -> list[RawRecord]:
        """Records from all assigned partitions; each partition's records stay in order."""
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [
            RawRecord(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            for records in batches.values()
            for r in records
        ]

    def commit(self, offsets: dict[TP, int], metadata: dict[TP, str] | None = None) -> None:
        """Commit ``offsets`` (the NEXT offset to read per partition) synchronously, each
        with its ``metadata`` string (the worker's fencing generation)."""
        if not offsets:
            return
        metadata = metadata or {}
        # kafka-python 3 expects OffsetAndMetadata(offset, metadata, leader_epoch); -1 = unknown
        self._consumer.commit(
            {
                TopicPartition(t, p): OffsetAndMetadata(off, metadata.get((t, p), ""), -1)
                for (t, p), off in offsets.items()
            }
        )

    def pause(self, *partitions: TP) -> None:
        self._consumer.pause(*_tps(partitions))

    def resume(self, *partitions: TP) -> None:
        self._consumer.resume(*_tps(partitions))

    def paused(self) -> list[TP]:
        return sorted((tp.topic, tp.partition) for tp in self._consumer.paused())

    def end_offsets(self, partitions: list[TP], timeout_s: float = 30) -> dict[TP, int]:
        ends = self._consumer.end_offsets(_tps(partitions), timeout_ms=int(timeout_s * 1000))
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}

    def beginning_offsets(self, partitions: list[TP], timeout_s: float = 30) -> dict[TP, int]:
        starts = self._consumer.beginning_offsets(
            _tps(partitions), timeout_ms=int(timeout_s * 1000)
        )
        return {(tp.topic, tp.partition): off for tp, off in starts.items()}

    def offsets_for_times(
        self, partitions: list[TP], ts_ms: int, timeout_s: float = 30
    ) -> dict[TP, int | None]:
        """Per partition, the first offset with timestamp >= ts_ms; None when there is none."""
        found = self._consumer.offsets_for_times(
            {tp: ts_ms for tp in _tps(partitions)}, timeout_ms=int(timeout_s * 1000)
        )
        return {
            (tp.topic, tp.partition): (hit.offset if hit is not None else None)
            for tp, hit in found.items()
        }

    def partitions_for(self, topic: str) -> list[int]:
        return sorted(self._consumer.partitions_for_topic(topic) or ())

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class KafkaSink:
    """An idempotent producer for alerts and dead letters.

    Sends are asynchronous; a delivery failure is recorded by an error callback and raised by
    the next ``flush``, so a lost record is never silent. kafka-python 3's idempotent producer
    treats any non-retriable delivery error as fatal (every later send fails too), so after a
    failure the sink replaces its producer and stays usable.
    """

    def __init__(
        self,
        bootstrap: str,
        client_options: dict | None = None,
        *,
        linger_ms: int = 5,
        dlq_limit: int | None = None,
    ) -> None:
        _quiet_value_logging()
        config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "enable_idempotence": True,
            "acks": "all",
            "linger_ms": linger_ms,
            "max_block_ms": 10_000,  # a missing topic fails a send in 10 s, not 60 s
            "allow_auto_create_topics": False,
            **(client_options or {}),
        }
        self._config = config
        # Dead letters are cut to fit both the producer and the DLQ topic (``dlq_limit``: its
        # max.message.bytes): a record either refuses would fail every replay of it.
        producer_limit = int(config.get("max_request_size", 1_048_576))
        self.dlq_limit = min(producer_limit, dlq_limit or producer_limit)
        check_login(bootstrap, config)
        self._producer = KafkaProducer(**config)
        self._lock = threading.Lock()  # errbacks run on the producer's sender thread
        self._failures: list[tuple[str, KafkaError | Exception]] = []

    def _on_error(self, topic: str, what: str, exc: Exception) -> None:
        if what:  # the record it was for: the raise at flush can only name the topic
            log.error("write of %s to %r failed: %s: %s", what, topic, type(exc).__name__, exc)
        with self._lock:
            self._failures.append((topic, exc))

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        what: str = "",
    ) -> None:
        try:
            future = self._producer.send(topic, value=value, key=key, headers=headers)
        except MessageSizeTooLargeError as exc:  # this record, never the producer's state
            raise RecordTooLarge(f"send to {topic!r} refused: {exc}") from exc
        except KafkaError as exc:  # e.g. no metadata for the topic within max_block_ms
            raise KafkaDeliveryError(f"send to {topic!r} failed: {type(exc).__name__}") from exc
        future.add_errback(self._on_error, topic, what)

    def send_alert(self, topic: str, key: bytes, value: bytes) -> None:
        self._send(topic, key, value)

    def send_dlq(self, topic: str, record: RawRecord, stage: str, reason: str) -> None:
        """Write the ORIGINAL key and value bytes; the why goes into headers. A value too
        large for the producer is cut to a prefix, its size and sha256 in headers."""
        headers = dlq_headers(record, stage, reason)
        # Kafka needs a key or a value; an empty value keeps the headers deliverable.
        value = b"" if record.key is None and record.value is None else record.value
        what = f"dead letter {record.topic}:{record.partition}@{record.offset} (reason {reason})"
        if value is not None:
            value, headers = fit_to_limit(record.key, value, headers, self.dlq_limit)
            if not fits(record.key, value, headers, self.dlq_limit):  # its key alone is too big
                raise RecordTooLarge(f"{what} cannot fit {self.dlq_limit} bytes, even cut")
        self._send(topic, record.key, value, headers, what)

    def flush(self, timeout_s: float | None = 30) -> None:
        """Block until every send completed; raise KafkaDeliveryError if any failed."""
        self._producer.flush(timeout=timeout_s)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            self._producer.close(timeout=5)  # everything completed above: nothing to lose
            self._producer = KafkaProducer(**self._config)
            kinds = "; ".join(sorted({f"{topic}: {type(exc).__name__}" for topic, exc in failures}))
            raise KafkaDeliveryError(f"{len(failures)} record(s) not delivered ({kinds})")

    def close(self, timeout_s: float = 10) -> None:
        self._producer.close(timeout=timeout_s)


def _quiet_value_logging() -> None:
    # `streamlstm -v` turns on DEBUG for the root logger; kafka-python would then print values.
    logger = logging.getLogger(_CLIENT_LOGGER)
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    client_options: dict | None = None,
    replication_factor: int = 1,
    configs: dict[str, str] | None = None,
    timeout_s: float = 30,
) -> list[str]:
    """Create the missing ``topics`` (name -> partitions); return the names created."""
    check_login(bootstrap, client_options or {})
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **(client_options or {}))
    try:
        existing = set(admin.list_topics())
        missing = {name: n for name, n in topics.items() if name not in existing}
        if not missing:
            return []
        spec = {
            name: {
                "num_partitions": n,
                "replication_factor": replication_factor,
                "configs": dict(configs or {}),
            }
            for name, n in missing.items()
        }
        result = admin.create_topics(spec, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        created = []
        for topic in result["topics"]:
            code = topic["error_code"]
            if code == TopicAlreadyExistsError.errno:
                continue  # created concurrently by another process: fine
            if code != 0:
                raise KafkaError(
                    f"creating topic {topic['name']!r} failed: error {code} "
                    f"{topic.get('error_message') or ''}".rstrip()
                )
            created.append(topic["name"])
        if created:
            admin.wait_for_topics(created, timeout_ms=int(timeout_s * 1000))
        return created
    finally:
        admin.close()
