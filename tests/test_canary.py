"""A canary placed in readings never leaks (issue 5, item 9): the real worker body
(``PartitionWorkerImpl``, in-process) on the real broker scores records that carry the canary
as a stream id, as a field value inside malformed records and as the stream of an alert; the
canary then appears in no log line (every logger at DEBUG), no DLQ header, no alert field but
``stream``, no worker stats or metric label, and no exception text. The metrics endpoint is
checked with the exporter's own tests."""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from pathlib import Path

import orjson
import pytest

from streamlstm.adapters.kafka.client import KafkaDeliveryError, KafkaSink
from streamlstm.adapters.ray.workers import PartitionWorkerImpl, model_files
from streamlstm.records import RawRecord
from streamlstm.train.checkpoint import save_model
from tests.helpers import interleave, series, tiny_config, tiny_model
from tests.live_helpers import read_all

pytestmark = pytest.mark.kafka

CANARY = "CANARY-7f3a9c"
NUMBER = "987654.321"  # a canary among the values (out of range for hr)


def _malformed(ts_ms: int) -> list[tuple[bytes, bytes]]:
    """(key, value) records rejected by the parser, each carrying the canary."""
    c = CANARY.encode()
    return [
        (c, b'{"stream": "' + c + b'", "ts": 1, "values": {"hr": '),  # not_json
        (c, orjson.dumps({"stream": CANARY, "ts": ts_ms, "values": {"hr": CANARY}})),  # bad_value
        (b"b", b'{"stream": "b", "ts": %d, "values": {"hr": %s}}' % (ts_ms, NUMBER.encode())),
        (b"b", orjson.dumps({"stream": CANARY, "ts": ts_ms, "values": {"hr": 70}})),  # key
        (c, orjson.dumps([CANARY, {"note": CANARY}])),  # not_object
    ]


def _inputs() -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """Keyed input records in offset order, and the values of the malformed ones."""
    # The readings of test_worker_loop, with the episode (and so the alert) on the canary stream.
    readings = interleave(series(CANARY, 60, seed=1), series("b", 60, seed=2))
    out = []
    for i, r in enumerate(readings):
        values = dict(zip(["hr", "spo2", "rr"], r.values, strict=True))
        if r.stream == CANARY and 70 <= i <= 74:
            values["rr"] += 80.0
        value = {"stream": r.stream, "ts": int(r.ts * 1000), "values": values}
        out.append((r.stream.encode(), orjson.dumps(value)))
    malformed = _malformed(int(readings[30].ts * 1000))
    out[30:30] = malformed
    return out, [value for _, value in malformed]


def _config(bootstrap: str, tmp: Path, make_topic) -> dict:
    plain = tiny_config().model_dump()
    plain["groups"][0]["feature_ranges"] = {"hr": (0.0, 400.0)}
    plain["kafka"].update(
        bootstrap=bootstrap,
        input_topics=[make_topic(prefix="canary-in")],
        alerts_topic=make_topic(prefix="canary-alerts"),
        dlq_topic=make_topic(prefix="canary-dlq"),
        group_id=f"g-{uuid.uuid4().hex[:8]}",
    )
    plain["checkpoint"].update(dir=str(tmp / "snapshots"), interval_s=0.5)
    return plain


def _run_worker(
    config: dict, files: dict, topic: str, expected: int, failures: list[BaseException]
) -> PartitionWorkerImpl:
    """Run the loop until it handled ``expected`` records; what it raises lands in failures."""
    worker = PartitionWorkerImpl(config, files, config["kafka"]["bootstrap"], 0)
    worker.start([(topic, 0)])

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # the test inspects its text
            failures.append(exc)

    loop = threading.Thread(target=run, daemon=True)
    loop.start()
    deadline = time.monotonic() + 60
    while worker.stats()["records"] < expected and time.monotonic() < deadline and not failures:
        time.sleep(0.1)
    worker.stop()
    loop.join(30)
    return worker


def _assert_no_canary(text: str, where: str) -> None:
    assert CANARY not in text and NUMBER not in text, f"canary in {where}"


def test_a_canary_in_readings_never_leaks(
    kafka_bootstrap: str, kafka_topic_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, as `streamlstm -v` does
    caplog.set_level(logging.DEBUG, logger="kafka")
    config = _config(kafka_bootstrap, tmp_path, kafka_topic_factory)
    topic = config["kafka"]["input_topics"][0]
    inputs, malformed = _inputs()
    feeder = KafkaSink(kafka_bootstrap)
    for key, value in inputs:
        feeder.send_alert(topic, key, value)  # a plain keyed send
    feeder.flush(30)

    save_model(tmp_path / "model" / "g", tiny_model(), {})
    failures: list[BaseException] = []
    worker = _run_worker(config, model_files(tmp_path / "model"), topic, len(inputs), failures)
    stats, metrics = worker.stats(), worker.metrics()
    worker.close()
    worker.sink.producer.close()  # close() leaves the producer to the actor's end
    errors = "".join("".join(traceback.format_exception(exc)) for exc in failures)
    errors += _delivery_error_text(feeder, kafka_topic_factory)
    feeder.close()
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)

    _assert_no_canary(errors, "an exception text")
    assert failures == []
    assert stats["records"] == len(inputs)
    assert stats["by_reason"] == dict.fromkeys(
        ["not_json", "bad_value", "out_of_range", "key_mismatch", "not_object"], 1
    )
    _assert_no_canary(logged, "logs")
    _assert_no_canary(repr(stats) + repr(metrics), "worker stats / metric labels")

    dlq = read_all(kafka_bootstrap, config["kafka"]["dlq_topic"])
    assert sorted(m.value for m in dlq) == sorted(malformed)  # the original bytes, as sent
    for m in dlq:
        _assert_no_canary(repr(m.headers), "DLQ headers")
    alerts = read_all(kafka_bootstrap, config["kafka"]["alerts_topic"])
    events = [orjson.loads(m.value) for m in alerts]
    assert any(e["event"] == "open" and e["stream"] == CANARY for e in events)
    for m, event in zip(alerts, events, strict=True):
        # The alert must name its stream; nothing else in it may echo input text or values.
        _assert_no_canary(repr({k: v for k, v in event.items() if k != "stream"}), "an alert")
        _assert_no_canary(repr(m.headers), "alert headers")


def _delivery_error_text(sink: KafkaSink, topic_factory) -> str:
    """The text of a failed delivery of a canary-bearing record (the broker refuses its size)."""
    small = topic_factory(prefix="small", configs={"max.message.bytes": "200"})
    record = RawRecord("in", 0, 7, CANARY.encode(), (CANARY * 40).encode())
    sink.send_dlq(small, record, "decode", "not_json")
    with pytest.raises(KafkaDeliveryError) as info:
        sink.flush(30)
    exc = info.value
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
