"""Input faults under the chaos oracle (issue 18): records a producer should not have sent.

Each case produces the whole scenario, starts the workers, then appends its own records
(after the scenario's, so the scenario keeps its offsets and alert ids) while they run. The
run must end like the fault-free reference (same state digests, alert ids, every bad record
in the DLQ with its headers, a fresh probe scored within 60 s, no restart loop), with
exactly the case's records added to the DLQ. Streams a case adds are named ``extra-...``
and left out of the state and alert-id comparisons.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from streamlstm.adapters.kafka.client import ensure_topics
from streamlstm.records import format_ts, offset_of
from tests import chaos_oracle as co
from tests import chaos_support as cs
from tests import live_helpers as lh
from tests.test_chaos import check

pytestmark = [pytest.mark.chaos, pytest.mark.kafka, pytest.mark.ray]

# the module fixtures every chaos case starts from (chaos_support)
scenario, model = cs.scenario, cs.model

HOUR_AGO = time.time() - 3600.0  # extra readings are in the past: not future-dated


@pytest.fixture(scope="module")
def reference(kafka_bootstrap, ray_local, scenario, model, tmp_path_factory) -> co.Outcome:
    ref = co.reference_run(kafka_bootstrap, tmp_path_factory.mktemp("ref"), scenario[0], model)
    assert ref.alert_ids, "the scenario must open alerts"
    return ref


def reading(stream: str, ts: float, k: int) -> bytes:
    values = {"hr": 70 + k % 3, "spo2": 96 + k % 2, "rr": 15 + k % 4}  # no stuck sensor
    return orjson.dumps({"stream": stream, "ts": format_ts(ts), "values": values})


def run_with(cfg, records, model, extra: list[tuple[bytes | None, bytes]]) -> co.Outcome:
    """The scenario produced, the workers started, ``extra`` appended while they run."""
    co.produce(cfg, records)
    sup = co.start(cfg, model)
    with cs.stop_on_failure(sup):
        co.produce(cfg, extra, first=len(records))
        added_at = time.time()
        return co.finish(sup, cfg, added_at)


def dead_letters(cfg, first_offset: dict[int, int]) -> list[tuple[int, dict, bytes]]:
    """(partition, headers, value) of the DLQ records from at or after ``first_offset``."""
    out = []
    for m in lh.read_all(cfg.kafka.bootstrap, cfg.kafka.dlq_topic):
        headers = {k: v.decode() for k, v in (m.headers or [])}
        part, offset = int(headers["source.partition"]), int(headers["source.offset"])
        if offset >= first_offset[part]:
            out.append((part, headers, m.value))
    return out


def scenario_ends(cfg, records) -> dict[int, int]:
    """The first offset after the scenario's records, per partition."""
    ends = dict.fromkeys(range(cfg.kafka.input_partitions), 0)
    for i, (key, _) in enumerate(records):
        ends[co.partition_of(key, i, cfg.kafka.input_partitions)] += 1
    return ends


def test_poison_oversized_record_is_cut_into_the_dlq_and_the_partitions_move_on(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    """A 2 MiB record on each partition (the topic takes 4 MiB, the DLQ producer 1 MiB): it
    must land in the DLQ cut to fit, with its size and hash, and no worker may restart."""
    records = scenario[0].records
    co.WATCH_NOTES.clear()
    cfg = co.chaos_config(kafka_bootstrap, tmp_path / "poison")
    topic, parts = cfg.kafka.input_topics[0], cfg.kafka.input_partitions
    ensure_topics(kafka_bootstrap, {topic: parts}, configs={"max.message.bytes": str(4 << 20)})
    lh.setup_topics(cfg)
    stream = orjson.loads(records[0][1])["stream"]
    poison = b'{"stream": "%s", "pad": "%s"}' % (stream.encode(), b"a" * (2 << 20))
    co.produce(cfg, records)
    sup = co.start(cfg, model)
    with cs.stop_on_failure(sup):
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=4 << 20)
        for part in range(parts):
            producer.send(topic, key=None, value=poison, partition=part)
        producer.flush()
        producer.close()
        added_at = time.time()
        run = co.finish(sup, cfg, added_at)
    dead = dead_letters(cfg, scenario_ends(cfg, records))
    assert sorted(p for p, _, _ in dead) == list(range(parts)), dead
    for _, headers, value in dead:
        assert headers["error.reason"] == "oversized" and headers["truncated"] == "true"
        assert headers["original.size"] == str(len(poison)) and poison.startswith(value)
    assert run.restarts == 0
    run.notes.append(f"{parts} records of {len(poison) >> 20} MiB cut into the DLQ")
    check(request, reference, run, scenario[0].n_bad, extra_dlq=parts, same_partition_offsets=False)


def test_keyless_records_of_one_stream_on_two_partitions(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    """One worker reads both partitions; a keyless stream alternates between them. Its
    records on the partition it was not first seen on go to the DLQ as ``other_partition``
    (counted, not dropped); the rest are scored."""
    records = scenario[0].records
    cfg = co.fresh_config(kafka_bootstrap, tmp_path, **{"ray.workers": 1})
    keyless = [(None, reading("extra-keyless", HOUR_AGO + 60.0 * k, k)) for k in range(40)]
    run = run_with(cfg, records, model, keyless)
    dead = dead_letters(cfg, scenario_ends(cfg, records))
    assert {h["error.reason"] for _, h, _ in dead} == {"other_partition"}, dead
    assert len({p for p, _, _ in dead}) == 1 and len(dead) == 20  # the other partition's
    run.notes.append("1 worker; 20 of 40 keyless records rejected as other_partition")
    check(request, reference, run, scenario[0].n_bad, extra_dlq=20, same_partition_offsets=False)


def test_a_future_dated_reading_is_rejected_and_does_not_block_its_stream(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    """A reading stamped in 2099 (inside the absurd bound, far beyond input.max_future_s):
    rejected as ``future_timestamp``; the stream's later real readings are scored, not sent
    to the DLQ as out of order."""
    records = scenario[0].records
    cfg = co.fresh_config(kafka_bootstrap, tmp_path)
    key = b"extra-future"
    extra = [(key, reading("extra-future", HOUR_AGO + 60.0 * k, k)) for k in range(30)]
    extra.insert(10, (key, reading("extra-future", 4_084_000_000.0, 0)))  # 2099-06-01
    run = run_with(cfg, records, model, extra)
    dead = dead_letters(cfg, scenario_ends(cfg, records))
    assert [h["error.reason"] for _, h, _ in dead] == ["future_timestamp"], dead
    run.notes.append("1 reading in 2099 rejected; the 20 after it accepted (none out of order)")
    check(request, reference, run, scenario[0].n_bad, extra_dlq=1, same_partition_offsets=False)


DEADLY = "kills-its-worker"  # STREAMLSTM_CRASH_ON_VALUE: a poll holding it ends the process


@pytest.mark.slow  # ~30 s: 4 actor restarts
def test_a_record_that_kills_its_worker_process_is_dead_lettered_as_poison(
    request, kafka_bootstrap, ray_local, scenario, model, reference, tmp_path: Path
) -> None:
    """A record whose decoding ends the worker's process (``os._exit``, in every process
    that polls it: the stand-in for a segfault). The flight recorder (adapters/ops/flight.py)
    counts each death in the next process: after ``input.poison_after`` deaths of a poll of
    that record alone it goes to the DLQ as ``poison``, its partition moves on, and the
    supervisor reports every death. Everything else ends as in the reference."""
    records = scenario[0].records
    backoff = {"ray.restart_backoff_s": 0.2, "ray.restart_backoff_max_s": 1.0}
    cfg = co.fresh_config(kafka_bootstrap, tmp_path, **backoff)
    key = b"extra-deadly"
    extra = [(key, reading("extra-deadly", HOUR_AGO + 60.0 * k, k)) for k in range(10)]
    deadly_at = 3
    value = orjson.loads(extra[deadly_at][1]) | {"note": DEADLY}
    extra[deadly_at] = (key, orjson.dumps(value))
    co.produce(cfg, records)
    sup = co.start(cfg, model, {"STREAMLSTM_CRASH_ON_VALUE": DEADLY})
    with cs.stop_on_failure(sup):
        co.produce(cfg, extra, first=len(records))
        added_at = time.time()
        co.wait_caught_up(sup, cfg)
        deadly_rows = {s: r for s, r in sup.state_rows().items() if s == "extra-deadly"}
        run = co.finish(sup, cfg, added_at)
    part = co.partition_of(key, 0, cfg.kafka.input_partitions)
    first = scenario_ends(cfg, records)
    ((got_part, headers, dead_value),) = dead_letters(cfg, first)
    assert (got_part, headers["error.reason"], headers["error.stage"]) == (part, "poison", "decode")
    assert int(headers["source.offset"]) == first[part] + deadly_at
    assert dead_value == extra[deadly_at][1]  # the original bytes
    # The other 9 readings of its stream were applied: the last one is its last offset.
    last_applied = offset_of(int(deadly_rows["extra-deadly"]["last_offset"]))[0]
    assert last_applied == first[part] + len(extra) - 1
    after = cfg.input.poison_after
    # `after` deaths with the record alone in its poll, one more if it first came with others
    assert after <= run.restarts <= after + 1, run.notes
    assert sum("died" in note for note in run.notes) >= 1, run.notes  # reported, not hidden
    run.notes.append(f"dead-lettered as poison after {run.restarts} process deaths")
    check(request, reference, run, scenario[0].n_bad, extra_dlq=1, same_partition_offsets=False)
