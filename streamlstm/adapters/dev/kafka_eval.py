"""``streamlstm evaluate --through-kafka``: a labelled file replayed through the live pipeline.

The offline path (``commands/replay.score_file``) feeds the file's readings straight into the
scoring engine. This one sends the same readings through a real broker into the workers of
``streamlstm run`` (``adapters.ray.supervise``: Ray actors, their own Kafka consumers and
producers) and rebuilds the replay rows from the alerts and DLQ topics, so the two paths can
be held to the same report. Steps:

1. the model: ``--model``, or trained on ``--train-fraction`` exactly as offline, saved and
   shipped to the actors as bytes the way ``streamlstm run --model`` ships it;
2. Kafka: the configured/``$KAFKA_BOOTSTRAP`` cluster, else a local broker on free ports;
3. fresh topics, consumer group and snapshot folder for this run: a live deployment's input
   topics never receive replayed data, and no earlier snapshot is restored into this run;
4. produce the readings in the offline replay order, keyed by stream (one partition each);
5. run the workers until every partition's position reaches its end offset, then drain;
6. read the alerts and DLQ topics to their end offsets and rebuild the rows.
"""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import torch
from kafka import KafkaAdminClient

from streamlstm.adapters.dev.kafka_eval_records import (
    dlq_sources,
    encode_readings,
    produce_in_order,
    read_to_end,
    rows_from_alerts,
)
from streamlstm.adapters.devkafka.broker import DevKafka, resolve_bootstrap
from streamlstm.adapters.kafka.client import ensure_topics
from streamlstm.adapters.kafka.options import client_options
from streamlstm.adapters.ray.supervise import StopFlag, supervise
from streamlstm.adapters.ray.workers import model_files
from streamlstm.config import Config, from_dict
from streamlstm.datafiles import FileData
from streamlstm.evaluation.replay import ReplayRow, read_usable
from streamlstm.train.checkpoint import save_model
from streamlstm.train.models import train_models

log = logging.getLogger(__name__)

TP = tuple[str, int]
STALL_S = 120.0  # no progress this long while records are left: the workers are stuck


@dataclass
class KafkaEval:
    data: FileData
    rows: list[ReplayRow]
    summary: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        s = self.summary
        return (
            f"through Kafka: {s['produced']} readings -> {s['topics']} ({s['partitions']} "
            f"partitions) on {s['broker']}; `streamlstm run` workers ({s['workers']} Ray "
            f"actors) processed {s['processed']}/{s['produced']}; DLQ {s['dlq']}; "
            f"{s['alert_events']} alert events ({s['alerts_opened']} opened); "
            f"{s['seconds']:.1f} s"
        )


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def model_files_for(
    config: Config,
    data: FileData,
    model_dir: str | None,
    train_fraction: float,
    device: torch.device,
    out: Path,
    quiet: bool,
) -> dict[str, dict[str, bytes]]:
    """The model as the offline path gets it (loaded, or trained the same way), as files."""

    if model_dir:
        return model_files(model_dir)
    models, metrics = train_models(config, data, train_fraction, device, quiet)
    for group, model in models.items():
        save_model(out / group, model, metrics[group], {"source": "evaluate --through-kafka"})
    return model_files(out)


def eval_config(config: Config, bootstrap: str, work: Path) -> Config:
    """The run's own topics, group id and snapshot folder; no metrics port, no retraining."""
    tag = uuid.uuid4().hex[:8]
    tree = config.model_dump()  # secrets stay SecretStr objects, never printed
    k = tree["kafka"]
    renamed = {t: f"{t}.eval-{tag}" for t in k["input_topics"]}
    k.update(
        bootstrap=bootstrap,
        input_topics=list(renamed.values()),
        alerts_topic=f"{k['alerts_topic']}.eval-{tag}",
        dlq_topic=f"{k['dlq_topic']}.eval-{tag}",
        group_id=f"{k['group_id']}-eval-{tag}",
    )
    for group in tree["groups"]:
        group["topics"] = [renamed.get(t, t) for t in group["topics"]]
    tree["checkpoint"]["dir"] = str(work / "snapshots")
    tree["metrics"]["enabled"] = False
    tree["retrain"]["enabled"] = False
    return from_dict(tree)


def score_through_kafka(
    config: Config,
    path: str,
    model_dir: str | None,
    train_fraction: float,
    device: torch.device,
    quiet: bool = False,
    bootstrap: str | None = None,
) -> KafkaEval:
    """Read the file, get the model, replay it through Kafka and the live workers."""

    data = read_usable(path, config)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streamlstm-eval-") as tmp:
        work = Path(tmp)
        files = model_files_for(
            config, data, model_dir, train_fraction, device, work / "model", quiet
        )
        address = bootstrap or resolve_bootstrap(config.kafka.bootstrap)
        broker = None if address else DevKafka(work / "kafka")
        summary: dict[str, Any] = {"broker": "a local broker" if broker else address}
        cfg = None
        try:
            if broker is not None:
                _progress("kafka: starting a local broker on free ports...")
                t0 = time.monotonic()
                address = broker.start()
                _progress(
                    f"kafka: {address} (local broker, ready in {time.monotonic() - t0:.1f} s)"
                )
            cfg = eval_config(config, address, work)
            rows = _replay(cfg, data, files, quiet, summary)
        finally:
            if broker is not None:
                broker.stop()
            elif cfg is not None:
                _drop_topics(config, cfg)
    summary["seconds"] = time.monotonic() - started
    return KafkaEval(data, rows, summary)


def _replay(cfg: Config, data: FileData, files: dict, quiet: bool, summary: dict) -> list:

    k = cfg.kafka
    wanted = {t: k.input_partitions for t in k.input_topics}
    options = client_options(k)
    ensure_topics(
        k.bootstrap, {**wanted, k.alerts_topic: k.input_partitions, k.dlq_topic: 1}, options
    )
    inputs = list(k.input_topics)  # a group without topics takes any input topic
    topics = {g.name: [t for t in g.topics if t in inputs] or inputs for g in cfg.groups}
    records = encode_readings(data.readings, cfg, topics)
    sources = produce_in_order(k.bootstrap, records, options, quiet)
    ends: dict[TP, int] = {}
    for t, p, offset in sources:
        ends[(t, p)] = max(ends.get((t, p), 0), offset + 1)
    result = _run_workers(cfg, files, ends, quiet)
    events = [orjson.loads(m.value) for m in read_to_end(cfg, k.alerts_topic)]
    dropped = dlq_sources(read_to_end(cfg, k.dlq_topic))
    rows = rows_from_alerts(data.readings, sources, events, dropped, cfg.alerts.enter)
    summary.update(
        produced=len(records),
        topics=", ".join(k.input_topics),
        partitions=len(wanted) * k.input_partitions,
        workers=len(result["workers"]),
        processed=_processed(result["workers"], ends),
        dlq=len(dropped),
        alert_events=len(events),
        alerts_opened=sum(e["event"] == "open" for e in events),
        restarts=result["restarts"],
    )
    return rows


def _processed(stats: list[dict], ends: dict[TP, int]) -> int:
    positions: dict[str, int] = {}
    for s in stats:
        positions.update(s.get("positions", {}))
    return sum(min(positions.get(f"{t}:{p}", 0), end) for (t, p), end in ends.items())


def _run_workers(cfg: Config, files: dict, ends: dict[TP, int], quiet: bool) -> dict:
    """``streamlstm run``'s supervisor loop until every produced offset was processed.

    Done = every partition's next offset (a worker's position, advanced only after the
    batch is scored and its alerts sent) reached the end offset of what was produced.
    Stopping then drains the workers: alerts flushed, snapshot, commit.
    """
    import ray
    from tqdm import tqdm

    total = sum(ends.values())
    stop, seen = StopFlag(), {"done": -1, "at": 0.0}

    def on_status(stats: list[dict]) -> None:
        done, now = _processed(stats, ends), time.monotonic()
        bar.update(done - bar.n)
        if done > seen["done"]:
            seen.update(done=done, at=now)
        if done >= total or now - seen["at"] > STALL_S:
            stop.event.set()

    _progress(f"workers: the `streamlstm run` supervisor, {cfg.ray.workers} Ray actor(s)")
    bar = tqdm(total=total, desc="workers", unit="reading", disable=quiet, file=sys.stderr)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    ours = not ray.is_initialized()
    try:
        result = supervise(
            cfg, cfg.kafka.bootstrap, files, stop, on_status=on_status, status_every_s=0.5
        )
    finally:
        bar.close()
        if ours:
            ray.shutdown()
        if threading.current_thread() is threading.main_thread():
            for sig, handler in handlers.items():  # supervise installs its own for the drain
                signal.signal(sig, handler)
    done = _processed(result["workers"], ends)
    if done < total:
        raise SystemExit(
            f"streamlstm evaluate: the workers stopped after {done} of {total} readings "
            "(interrupted, stalled, or a worker did not drain): no report"
        )
    return result


def _drop_topics(config: Config, cfg: Config) -> None:
    """On an existing cluster, delete this run's topics (best effort: they hold only copies)."""

    k = cfg.kafka
    try:
        admin = KafkaAdminClient(bootstrap_servers=k.bootstrap, **client_options(config.kafka))
        try:
            admin.delete_topics([*k.input_topics, k.alerts_topic, k.dlq_topic])
        finally:
            admin.close()
    except Exception as exc:  # cleanup must not hide the run's own outcome
        log.warning("could not delete the evaluation topics %s: %s", k.input_topics, exc)
