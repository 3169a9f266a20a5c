"""``bench e2e`` (real broker + Ray workers) and ``bench memory`` (bytes per idle stream).

e2e, all in one run on one machine:
1. pre-load M records over S streams into a fresh topic (broker ``LogAppendTime``);
2. the ingest ceiling: a bare kafka-python consumer that only polls and JSON-decodes them,
   a fresh one per pass, passes repeated for at least ``CEILING_MIN_S``;
3. end to end: W Ray workers parse, score (batched LSTM step), run the alert state machine,
   produce alerts, snapshot and commit; readings/s = M / time to handle them all;
4. latency: a producer offers half the end-to-end rate for a while; each worker records, per
   record, broker append time -> score computed; p50/p99 over that window.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
import uuid
from pathlib import Path

import numpy as np
import orjson

from streamlstm.adapters.dev.bench_profile import stage_profile
from streamlstm.adapters.dev.bench_setup import (
    bench_broker,
    bench_config,
    bench_model,
    input_records,
    later_copies,
    preload,
)
from streamlstm.adapters.dev.loadgen import offer
from streamlstm.adapters.kafka.client import KafkaSource
from streamlstm.adapters.kafka.topics import ensure_worker_topics
from streamlstm.adapters.ray.supervisor import Supervisor, init_ray
from streamlstm.adapters.ray.workers import model_files
from streamlstm.config import Config
from streamlstm.evaluation.bench import _reading_source, bench_detector

# One pass over the default batched topic (20,000 records) takes 0.15 to 0.4 s, four polls:
# six fresh passes in a row gave 507k to 1,410k readings/s, while one pass over a topic ten
# times larger gave 806k and 826k in two runs. Passes are repeated until this much time has
# gone by, and the ceiling is all their records over all their time.
CEILING_MIN_S = 3.0


def ingest_ceiling(
    bootstrap: str, topic: str, expected: int, min_s: float = CEILING_MIN_S
) -> tuple[float, list[float]]:
    """Records/s of bare consumers (``bare_consume_decode``), fresh ones reading the whole
    topic in turn until their passes have taken ``min_s``: (records over seconds of all
    passes, each pass's own rate)."""
    rates, seconds = [], 0.0
    while seconds < min_s:
        rate = bare_consume_decode(bootstrap, topic, expected)
        rates.append(rate)
        seconds += expected / rate
    return expected * len(rates) / seconds, rates


def bare_consume_decode(bootstrap: str, topic: str, expected: int) -> float:
    """Records/s of one consumer that only polls and decodes JSON, over one pass of the
    topic (the caller turns it into readings/s: times the readings per record).

    The pass starts from a collected heap, as a worker does (``adapters/ops/heap.py``
    collects and freezes its heap once started): without it, about every other pass paid a
    full collection of the garbage earlier passes and the pre-load left, one poll of 160 to
    220 ms in a pass of 130 to 330 ms, and the passes alternated between about 0.5-0.7 M
    and 1.1-1.5 M readings/s (batched topic); with it, 0.9 to 1.3 M and no such poll."""

    source = KafkaSource(bootstrap, f"bare-{uuid.uuid4().hex[:6]}")
    tps = [(topic, p) for p in source.partitions_for(topic)]
    source.assign(tps)
    for t, p in tps:
        source.seek(t, p, 0)
    gc.collect()
    seen, started = 0, time.perf_counter()
    while seen < expected:
        for rec in source.poll(1.0, 5000):
            orjson.loads(rec.value)
            seen += 1
    elapsed = time.perf_counter() - started
    source.close()
    return seen / elapsed


def bench_e2e(
    config: Config,
    bootstrap: str,
    model_dir: Path,
    n_streams: int,
    per_stream: int,
    workers: int,
    latency_s: float,
    out: Path,
    per_record: int = 1,
    profile: bool = False,
) -> dict:
    """See the module's docstring; ``per_record`` readings per input record (batched records
    when > 1); ``profile`` adds the seconds per reading each loop stage took in each phase."""
    partitions = max(2, workers * 2)
    cfg, topic = bench_config(config, bootstrap, partitions, workers, out)
    records = input_records(n_streams, per_stream, seed=1, per_record=per_record)
    readings = n_streams * per_stream
    preload(bootstrap, topic, records, partitions)
    ensure_worker_topics(cfg, bootstrap)
    records_per_s, passes = ingest_ceiling(bootstrap, topic, len(records))
    ceiling = records_per_s * readings / len(records)

    init_ray(cfg)
    sup = Supervisor(
        cfg, bootstrap, model_files(model_dir), [(topic, p) for p in range(partitions)]
    )
    sup.start()
    before = sup.stats()
    started = time.perf_counter()
    while sum(s.get("records", 0) for s in sup.stats()) < len(records):
        time.sleep(0.05)
    e2e_rate = readings / (time.perf_counter() - started)
    after_e2e = sup.stats()
    per_record_s = len(records) / readings  # records per reading
    half_rate, quarter_rate = 0.5 * e2e_rate * per_record_s, 0.25 * e2e_rate * per_record_s
    latency, after_half = _latency_at(
        sup, bootstrap, topic, records, half_rate, latency_s, 0, after_e2e
    )
    # the quarter-load copies go on from where the half-load ones stopped
    quarter, after_quarter = _latency_at(
        sup, bootstrap, topic, records, quarter_rate, latency_s, int(half_rate * latency_s),
        after_half,
    )  # fmt: skip
    final = sup.stop()
    profiles = {}
    if profile:
        profiles["profile"] = {
            "end_to_end": stage_profile(before, after_e2e, readings / len(records)),
            "half_load": stage_profile(after_e2e, after_half, readings / len(records)),
            "quarter_load": stage_profile(after_half, after_quarter, readings / len(records)),
        }
    return {
        "bench": "e2e",
        "streams": n_streams,
        "records": len(records),
        "readings": readings,
        "readings_per_record": per_record,
        "workers": workers,
        "partitions": partitions,
        "cpus": os.cpu_count(),
        "hidden_size": cfg.groups[0].model.hidden_size,
        "bare_consume_decode_per_s": round(ceiling),
        "bare_passes_per_s": [round(r * readings / len(records)) for r in passes],
        "e2e_readings_per_s": round(e2e_rate),
        "e2e_over_ceiling": round(e2e_rate / ceiling, 3),
        **latency,
        "quarter_load": quarter,
        **profiles,
        "alerts": sum(w.get("alerts", 0) for w in final),
        "notes": "one machine: the broker, the producer, the bare consumer and the Ray "
        "workers share its cores; latency = broker append time -> score computed; rates and "
        "the ceiling in readings/s (bare_consume_decode_per_s: records/s x readings per record, "
        f"over passes of fresh consumers for at least {CEILING_MIN_S} s: bare_passes_per_s).",
    }


def _latency_at(
    sup,
    bootstrap: str,
    topic: str,
    records,
    rate: float,
    seconds: float,
    start: int,
    before: list[dict],
) -> tuple[dict, list[dict]]:
    """Offer ``rate`` records/s (the same streams, later timestamps) and read the latency;
    ``before``: the workers' stats as the phase starts; returns the phase's figures and
    their stats after it.

    The records are serialised before the clock starts, so the load generator only sends:
    on a small machine it shares the cores with the broker and the workers.
    """
    import ray

    payloads = later_copies(records, int(rate * seconds), start)

    def start_measuring() -> None:
        for actor in sup.actors:
            ray.get(actor.latency.remote(reset=True))

    warmup_s = min(3.0, seconds / 4)  # start-up of the load client is not the workers' latency
    sent = offer(bootstrap, topic, payloads, rate, warmup_s, start_measuring)
    time.sleep(1.0)
    parts = [ray.get(a.latency.remote()) for a in sup.actors]
    after = sup.stats()
    figures = {
        "offered_load_per_s": round(rate),
        "latency_records": int(sum(p.get("n", 0) for p in parts)),
        "achieved_load_per_s": round(sent["sent"] / sent["seconds"]),
        "load_client": sent["client"],
        "load_client_cpu_s": round(sent["cpu_s"], 2),
        "warmup_s": warmup_s,
        "latency_p50_ms": round(max(p.get("p50", 0.0) for p in parts) * 1e3, 1),
        "latency_p99_ms": round(max(p.get("p99", 0.0) for p in parts) * 1e3, 1),
        "latency_note": "per-worker quantiles; the larger of the workers is reported",
        # What the phase's readings came to: a latency of dead letters is not a scoring one.
        **{f"phase_{k}": _counted(before, after, k) for k in ("scored", "warming", "dlq")},
    }
    return figures, after


def _counted(before: list[dict], after: list[dict], key: str) -> int:
    return sum(a.get(key, 0) - b.get(key, 0) for b, a in zip(before, after, strict=True))


def bench_memory(config: Config, n_streams: int, batch: int = 10_000) -> dict:
    """Resident bytes per idle stream: RSS growth after adding ``n_streams`` streams."""
    import torch

    group = config.groups[0]
    f = len(group.features)
    det = bench_detector(config, torch.device("cpu"))
    table = det.new_table(capacity=1024)
    make = _reading_source(batch, f, np.random.default_rng(0))
    det.score(table, make()[:10])  # warm the allocator and the kernels first
    before = resident_bytes()
    for k in range(n_streams // batch):
        readings = make()
        det.score(table, [r.__class__(f"{k}-{r.stream}", *_rest(r)) for r in readings])
    after = resident_bytes()
    return {
        "bench": "memory",
        "streams": len(table),
        "hidden_size": group.model.hidden_size,
        "window_len": group.model.window_len,
        "features": f,
        "rss_growth_bytes": after - before,
        "rss_bytes_per_stream": round((after - before) / len(table)),
        "table_bytes_per_stream": round(table.nbytes() / len(table)),
        "table_capacity": table.capacity,
    }


def _rest(r):
    return (r.ts, r.values, r.group, r.topic, r.partition, r.offset)


def resident_bytes() -> int:
    """Resident bytes after returning freed heap pages (transient batches are not state)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_e2e_command(
    config: Config,
    n_streams: int,
    per_stream: int,
    workers: int,
    latency_s: float,
    out: Path,
    per_record: int = 1,
    profile: bool = False,
) -> dict:
    """Start a local broker (unless one is configured), train a model, run ``bench_e2e``."""

    with bench_broker(config, out) as bootstrap:
        return bench_e2e(
            config,
            bootstrap,
            bench_model(config, out),
            n_streams,
            per_stream,
            workers,
            latency_s,
            out,
            per_record,
            profile,
        )
