"""Dead-letter records that always fit the producer: headers that say why, and a value cut to
a prefix when the original would exceed ``max_request_size``.

A record of ~1 MiB re-sent with its headers is refused by the producer before it reaches the
broker; raised from the loop, that restarted the worker onto the same record forever. Cut
instead, with the original's size and sha256 in headers, so nothing is lost silently: the
full record stays in the input topic at ``source.offset`` until retention removes it.
"""

from __future__ import annotations

import hashlib

from streamlstm.records import RawRecord

# Room for the record batch and record framing around key, value and headers (kafka-python's
# estimate for one record is 61 bytes of batch header plus at most ~30 of varints).
FRAMING_BYTES = 512


BATCH_INDEX_HEADER = "streamlstm.batch_index"


def dlq_headers(record: RawRecord, stage: str, reason: str) -> list[tuple[str, bytes]]:
    """Why and where; for one reading of a batched record, also its index in the record."""
    headers = [
        ("error.stage", stage.encode()),
        ("error.reason", reason.encode()),
        ("source.topic", record.topic.encode()),
        ("source.partition", str(record.partition).encode()),
        ("source.offset", str(record.offset).encode()),
    ]
    if record.batch_index is not None:
        headers.append((BATCH_INDEX_HEADER, str(record.batch_index).encode()))
    return headers


def fit_to_limit(
    key: bytes | None, value: bytes, headers: list[tuple[str, bytes]], limit: int
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """``value`` unchanged when the record fits ``limit`` bytes, else a prefix of it and the
    headers ``original.size``, ``original.sha256`` and ``truncated``."""
    extra = [
        ("original.size", str(len(value)).encode()),
        ("original.sha256", hashlib.sha256(value).hexdigest().encode()),
        ("truncated", b"true"),
    ]
    if fits(key, value, headers, limit):
        return value, headers
    keep = max(0, limit - _size(key, b"", headers + extra))
    return value[:keep], headers + extra


def fits(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]], limit: int) -> bool:
    return _size(key, value, headers) <= limit


def _size(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    header_bytes = sum(len(name.encode()) + len(data) + 10 for name, data in headers)
    return FRAMING_BYTES + len(key or b"") + len(value) + header_bytes
