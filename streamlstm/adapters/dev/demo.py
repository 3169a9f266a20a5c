"""``streamlstm demo``: a local Kafka, a local Ray, the vitals simulator and the live workers,
with alerts printed as they happen and a summary against the injected truth at the end. The
workers score until they reach the end of the input topic (``demo_drain.py``), so the summary
covers every record produced, on a busy machine too."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from streamlstm.adapters.dev.demo_drain import DrainWatch, reconciled
from streamlstm.adapters.dev.sim_producer import ProduceStats, produce
from streamlstm.adapters.devkafka.shared import kafka_bootstrap
from streamlstm.adapters.kafka.topics import ensure_worker_topics, read_topic_readings
from streamlstm.adapters.ray.supervise import StopFlag, supervise
from streamlstm.adapters.ray.workers import model_files
from streamlstm.config import Config
from streamlstm.evaluation.metrics import events_from_labels
from streamlstm.evaluation.plots import PlotStream, plot_streams
from streamlstm.evaluation.replay import replay
from streamlstm.records import Reading, parse_ts
from streamlstm.simulate.generate import generate, write_truth_json
from streamlstm.stream.engine import Engine
from streamlstm.train.checkpoint import load_model_set
from streamlstm.train.models import train_first_model

log = logging.getLogger(__name__)


@dataclass
class DemoOptions:
    out: Path
    streams: int = 200
    per_stream_rate: float = 4.0  # readings per second per patient (simulated clock runs ahead)
    duration_s: float = 150.0
    workers: int = 2
    seed: int = 7
    bad_fraction: float = 0.002
    max_printed: int = 40
    device: str = "cpu"
    drain_timeout_s: float = 600.0  # after the simulator stopped, to reach the end offsets
    per_record: int = 1  # readings per input record: > 1 sends batched records


@dataclass
class AlertLog:
    events: list[dict] = field(default_factory=list)
    printed: int = 0


def _watch_alerts(
    bootstrap: str, topic: str, log_: AlertLog, stop: threading.Event, max_printed: int
) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=500,
    )
    try:
        while not stop.is_set():
            for msg in consumer:
                event = orjson.loads(msg.value)
                log_.events.append(event)
                if event["event"] in ("open", "resolve") and log_.printed < max_printed:
                    log_.printed += 1
                    print(_alert_line(event), flush=True)
                if stop.is_set():
                    break
    finally:
        consumer.close()


def _alert_line(e: dict) -> str:
    top = ", ".join(_feature_part(f) for f in e.get("top_features", [])[:2])
    return (
        f"  ALERT {e['event']:<7} {e['stream']:<13} {e['severity']:<8} score "
        f"{e['score']:6.1f}  [{e.get('kind', 'anomaly')}] {top}"
    )


def _feature_part(f: dict) -> str:
    """'spo2 71% (-6.1 std)': which sensor and how far off, never the reading itself (a
    console is a log, and readings are patient data)."""
    off = f.get("std_off")
    return f"{f['name']} {f['share']:.0%}" + ("" if off is None else f" ({off:+.1f} std)")


def run_demo(config: Config, opts: DemoOptions) -> dict:
    from kafka import KafkaProducer

    if opts.out.exists():
        shutil.rmtree(opts.out)
    opts.out.mkdir(parents=True)
    length = int(opts.duration_s * opts.per_stream_rate) + 10
    data = generate("vitals", opts.streams, length, opts.seed)
    write_truth_json(data, opts.out / "truth.json")
    t0 = time.monotonic()
    bootstrap, broker = kafka_bootstrap(config, opts.out / "kafka")
    print(
        f"kafka: {bootstrap} ({'local broker' if broker else 'existing cluster'}, "
        f"ready in {time.monotonic() - t0:.1f} s)",
        flush=True,
    )
    try:
        ensure_worker_topics(config, bootstrap)
        topic = config.kafka.input_topics[0]
        # acks=all keeps kafka-python's default idempotence (acks=1 turns it off, with a
        # warning): a retried send cannot duplicate a reading.
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
        stats, stop_sim = ProduceStats(), threading.Event()
        rate = opts.streams * opts.per_stream_rate
        sim = threading.Thread(
            target=produce,
            daemon=True,
            args=(
                producer,
                topic,
                data,
                rate,
                opts.duration_s,
                opts.bad_fraction,
                opts.seed,
                stop_sim,
                stats,
                opts.per_record,
            ),
        )
        sim.start()
        print(
            f"simulator: {opts.streams} patients, {rate:.0f} readings/s "
            f"(1 simulated minute per {1 / opts.per_stream_rate:.2f} s) -> {topic}",
            flush=True,
        )
        need = config.retrain.bootstrap_readings
        readings = read_topic_readings(config, bootstrap, need, timeout_s=opts.duration_s)
        print(
            f"training the first model on {len(readings)} readings "
            f"(the first {len(readings) // max(opts.streams, 1)} per patient)...",
            flush=True,
        )
        trained_at = time.monotonic()
        model_dir = train_first_model(config, readings, opts.out / "models", opts.device)
        training_s = time.monotonic() - trained_at
        alerts, stop_alerts = AlertLog(), threading.Event()
        watcher = threading.Thread(
            target=_watch_alerts,
            daemon=True,
            args=(bootstrap, config.kafka.alerts_topic, alerts, stop_alerts, opts.max_printed),
        )
        watcher.start()
        stop = StopFlag()
        drain = DrainWatch(config, bootstrap, sim, producer, stop.event, opts.drain_timeout_s)
        print(
            f"workers: {opts.workers} Ray actors scoring until they reach the end of the "
            f"topic{_metrics_note(config)}; alerts:",
            flush=True,
        )
        result = supervise(
            config,
            bootstrap,
            model_files(model_dir),
            stop,
            duration_s=opts.duration_s + opts.drain_timeout_s + 60.0,  # a backstop only
            on_status=drain.check,
            status_every_s=1.0,
        )
        stop_sim.set()
        sim.join(timeout=10)
        producer.close(timeout=5)
        time.sleep(2.0)
        stop_alerts.set()
        watcher.join(timeout=10)
        timing = {"training_seconds": round(training_s, 1)}
        summary = _summary(config, data, stats, alerts, result, model_dir, opts)
        timing["total_seconds"] = round(time.monotonic() - t0, 1)
        out = summary | drain.report() | timing
        return out | {"reconciled": reconciled(out)}
    finally:
        if broker is not None:
            broker.stop()


def _metrics_note(config) -> str:
    m = config.metrics
    return f" (Prometheus metrics: http://{m.host}:{m.port}/metrics)" if m.enabled else ""


def _summary(
    config, data, stats, alerts: AlertLog, result: dict, model_dir: Path, opts: DemoOptions
) -> dict:
    workers = result["workers"]
    records = sum(w.get("records", 0) for w in workers)
    scored = sum(w.get("scored", 0) for w in workers)
    opens = [e for e in alerts.events if e["event"] == "open"]
    steps = stats.steps
    quality = _truth_match(data, opens, steps, tolerance=10)
    png = _plot(config, data, model_dir, steps, opts.out / "demo.png", quality["streams"])
    return {
        "produced": stats.sent + stats.bad,  # readings; a bad record counts as one
        "produced_records": stats.records + stats.bad,
        "readings_per_record": opts.per_record,
        "bad_records_injected": stats.bad,
        "records_processed": records,
        "scored": scored,
        "warming": sum(w.get("warming", 0) for w in workers),
        "dlq": sum(w.get("dlq", 0) for w in workers),
        "evicted": sum(w.get("evicted", 0) for w in workers),  # idle streams (state.evict_idle_s)
        "offered_rate_per_s": round(opts.streams * opts.per_stream_rate),
        "worker_seconds": round(result["seconds"], 1),
        "alerts_opened": len(opens),
        "alerts_resolved": sum(e["event"] == "resolve" for e in alerts.events),
        **{k: v for k, v in quality.items() if k != "streams"},
        "plot": str(png),
        "truth": str(opts.out / "truth.json"),
    }


def _truth_match(data, opens: list[dict], steps: int, tolerance: int) -> dict:
    """Event-wise match by time: an opening inside [start, end + tolerance readings]."""

    interval = float(np.median(np.diff(data.ts[0]))) if data.ts.shape[1] > 1 else 60.0
    events = [e for e in data.events if e.start_idx < steps]
    by_stream: dict[str, list[float]] = {}
    for e in opens:
        by_stream.setdefault(e["stream"], []).append(parse_ts(e["ts"]))
    detected, ttd, matched = 0, [], set()
    for ev in events:
        hits = [
            t
            for t in by_stream.get(ev.stream, [])
            if ev.start_ts <= t <= ev.end_ts + tolerance * interval
        ]
        if hits:
            detected += 1
            ttd.append((min(hits) - ev.start_ts) / interval)
            matched.update((ev.stream, t) for t in hits)
    false_pos = sum(1 for s, ts in by_stream.items() for t in ts if (s, t) not in matched)
    precision = detected / max(detected + false_pos, 1)
    recall = detected / max(len(events), 1)
    return {
        "injected_episodes": len(events),
        "detected_episodes": detected,
        "false_alarms": false_pos,
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "median_time_to_detect_readings": float(np.median(ttd)) if ttd else None,
        "streams": sorted({ev.stream for ev in events})[:4],
    }


def _plot(config, data, model_dir: Path, steps: int, path: Path, streams: list[str]) -> Path:
    """Re-score a few streams offline with the same model (the streaming path, so the same
    scores the workers computed) and plot readings, score, threshold, alerts and truth."""

    engine = Engine.build(config, load_model_set(model_dir))
    group = config.groups[0].name
    panels = []
    for stream in streams:
        i = data.streams.index(stream)
        readings = [
            Reading(stream, float(data.ts[i][t]), tuple(data.values[i][t]), group, "demo", 0, t)
            for t in range(steps)
        ]
        rows, _ = replay(engine, readings)
        panels.append(
            PlotStream(
                name=stream,
                ts=np.array([r.ts for r in rows]),
                score=np.array([r.score for r in rows]),
                threshold=config.alerts.enter,
                in_alert=np.array([r.is_anomaly for r in rows]),
                quality_alert=np.array([r.alert_kind == "signal_quality" for r in rows]),
                features=data.values[i][:steps],
                feature_names=data.features,
                events=events_from_labels(data.label[i][:steps], data.anomaly_kind[i][:steps]),
            )
        )
    return plot_streams(
        path,
        panels,
        title="streamlstm demo: readings, score, threshold, "
        "alerts (red; stuck or missing sensor: orange), injected episodes (green)",
    )
