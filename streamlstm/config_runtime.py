"""The config sections for where and how the worker runs: input records, Kafka, Ray,
snapshots, state bounds, metrics and scheduled retraining. The sections for what is scored
(groups, model, training, detector, alerts) and the loader are in ``config.py``, which
imports these into ``Config``.

``Section`` is the base of every section, here because ``config.py`` imports this module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ProducerConfig(Section):
    """The alerts/DLQ producer. A DLQ record larger than ``max_request_size`` is cut to fit."""

    max_request_size: int = Field(1_048_576, ge=65_536)  # kafka-python's default, 1 MiB
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    linger_ms: int = Field(5, ge=0, le=60_000)


class KafkaConfig(Section):
    bootstrap: str | None = None  # None: start the local dev broker (or use $KAFKA_BOOTSTRAP)
    group_id: str = "streamlstm"
    input_topics: list[str] = Field(default_factory=lambda: ["icu.vitals"])
    input_partitions: int = Field(4, gt=0)  # used when topics are created
    alerts_topic: str = "streamlstm.alerts"
    dlq_topic: str = "streamlstm.dlq"
    create_topics: bool = True
    # For the topics the worker creates: copies of each partition, and how many of them must
    # hold a record before the broker acknowledges it (the producer sends with acks=all).
    # None: the broker's min.insync.replicas. 1 suits the single local broker; a replicated
    # cluster wants 3 and 2, so one lost broker loses no acknowledged alert or commit.
    replication_factor: int = Field(1, gt=0)
    min_insync_replicas: int | None = Field(None, gt=0)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None  # of an encrypted ssl_keyfile
    max_poll_records: int = Field(2000, gt=0)
    poll_timeout_s: float = Field(0.2, gt=0)
    producer: ProducerConfig = ProducerConfig()

    @model_validator(mode="after")
    def _replicas(self) -> KafkaConfig:
        if (self.min_insync_replicas or 0) > self.replication_factor:
            # the broker would accept the topic, and then refuse every acks=all write to it
            raise ValueError("min_insync_replicas: must be <= kafka.replication_factor")
        return self


class RayConfig(Section):
    address: str | None = None  # None: start a local Ray
    workers: int = Field(2, gt=0)
    num_gpus: float = Field(0.0, ge=0)  # per worker; 0 = CPU
    num_cpus: float = Field(1.0, gt=0)
    dashboard: bool = False
    # Where Ray places the workers: "default" packs them onto the driver's node first;
    # "spread" puts them on as many nodes as it can (best effort, so a worker of a lost
    # node is restarted on a surviving one).
    scheduling: Literal["default", "spread"] = "default"
    # A worker that dies is restarted after this delay, doubled after each death in a row
    # (reset once it ran restart_backoff_max_s): a crash loop must not spin at full speed.
    restart_backoff_s: float = Field(1.0, gt=0)
    restart_backoff_max_s: float = Field(60.0, gt=0)
    # A worker counts as up (streamlstm_workers_up) while its loop completed a poll this
    # recently: an actor that answers but whose loop died or hangs is not scoring.
    heartbeat_timeout_s: float = Field(60.0, gt=0)


class CheckpointConfig(Section):
    dir: str = "runs/snapshots"  # local path or a pyarrow.fs URI
    interval_s: float = Field(5.0, gt=0)
    keep: int = Field(3, gt=0)
    # /readyz fails while a partition holds records read but not committed for longer than
    # this (checkpoints failing, a stuck flush); an idle partition has nothing to commit.
    max_uncommitted_s: float = Field(60.0, gt=0)


class StateConfig(Section):
    """Bounds on the per-stream state a worker holds."""

    # A stream whose last reading is this much older than its partition's newest reading
    # (data time, not Kafka time) is dropped, and left out of snapshots; if it returns it
    # starts cold.
    # None: never. One week by default: a bed or pump silent that long has new data anyway.
    evict_idle_s: float | None = Field(604_800.0, gt=0)
    evict_check_s: float = Field(60.0, gt=0)  # how often a worker looks for idle streams
    # Streams one worker holds at most (all its partitions and groups): a reading of a new
    # stream beyond it goes to the DLQ as too_many_streams, and the streams held keep
    # scoring. A bound on memory and snapshot size against a flood of new ids (a producer
    # that puts a timestamp in the id). None: no bound.
    max_streams: int | None = Field(1_000_000, gt=0)


class MetricsConfig(Section):
    enabled: bool = True  # serve Prometheus metrics from the supervisor
    host: str = "127.0.0.1"  # loopback by default; 0.0.0.0 only inside a container
    port: int = Field(9464, ge=0, le=65535)


class RetrainConfig(Section):
    enabled: bool = True  # scheduled retraining in `streamlstm run` (serving from the registry)
    interval_s: float = Field(3600.0, gt=0)
    bootstrap_readings: int = Field(20_000, gt=0)
    lookback_s: float = Field(86_400.0, gt=0)
    # Input records a scheduled round reads at most, the newest of the lookback, split evenly
    # over the input partitions: at 1M readings/s a day's lookback is 86 billion readings,
    # which no round can hold in memory or train on (docs/scaling.md, "Sizing").
    max_records: int = Field(1_000_000, gt=0)
    shadow_readings: int = Field(100, ge=0)
    min_readings: int = Field(2_000, gt=0)
    gate_margin: float = Field(0.05, ge=0)
    timeout_s: float = Field(1800.0, gt=0)
    registry: str = "runs/models"
    workers: int = Field(1, gt=0, le=256)  # Ray Train workers (data-parallel)
    use_gpu: bool = False  # one GPU per Ray Train worker


class InputConfig(Section):
    """Where fields live in an input record (DESIGN §3)."""

    stream_field: str = "stream"
    ts_field: str = "ts"
    values_field: str = "values"  # an object {feature: value} or an array in feature order
    max_payload_bytes: int = Field(65_536, gt=0)
    ts_min: str = "2000-01-01T00:00:00Z"  # earlier timestamps are absurd
    ts_max: str = "2100-01-01T00:00:00Z"
    # A reading stamped further ahead of its Kafka record timestamp is rejected: accepted, it
    # would make the stream's later readings all "out of order". The record's timestamp, not
    # the wall clock, so a replay of old data judges each record as it was. None: no check.
    max_future_s: float | None = Field(300.0, gt=0)
    # A record that makes the loop fail in the same stage this many times (each failure
    # restarts the worker onto it) goes to the DLQ as poison and its partition moves on.
    # None: never (the worker retries it forever).
    poison_after: int | None = Field(3, gt=0)
    max_stream_id_len: int = Field(256, gt=0)  # longer ids: DLQ, stream_id_too_long
