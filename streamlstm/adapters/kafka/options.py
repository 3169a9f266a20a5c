"""Config -> kafka-python client keyword arguments (security settings pass straight through)."""

from __future__ import annotations

from typing import Any

from streamlstm.config_runtime import KafkaConfig, ProducerConfig


def client_options(cfg: KafkaConfig) -> dict[str, Any]:
    """Options for every kafka-python client; the passwords are revealed only here."""
    options: dict[str, Any] = {"security_protocol": cfg.security_protocol}
    if cfg.sasl_mechanism:
        options["sasl_mechanism"] = cfg.sasl_mechanism
    if cfg.sasl_username is not None:
        options["sasl_plain_username"] = cfg.sasl_username
    if cfg.sasl_password is not None:
        options["sasl_plain_password"] = cfg.sasl_password.get_secret_value()
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(cfg, name)
        if value:
            options[name] = value
    if cfg.ssl_password is not None:
        options["ssl_password"] = cfg.ssl_password.get_secret_value()
    return options


def producer_options(cfg: ProducerConfig) -> dict[str, Any]:
    """Size, compression and batching of the alerts/DLQ producer (``kafka.producer``)."""
    options: dict[str, Any] = {"max_request_size": cfg.max_request_size, "linger_ms": cfg.linger_ms}
    if cfg.compression_type:
        options["compression_type"] = cfg.compression_type
    return options
