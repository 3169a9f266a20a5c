"""The chaos oracle: a deterministic scenario on the real broker, a fault-free reference run,
and ``compare`` that says, readably, how a run under faults differs from it.

Scenario: S streams x M readings (two streams with an injected episode that opens alerts),
plus a known number of bad records, each written to an explicit partition so offsets are the
same in every run. An ``Outcome`` holds, per stream, a digest of the final state (h, c and the
calibration columns rounded to 1e-6) and the last applied offset; per partition the next
offset; the alert-id set; the dead letters; and the outcome counts the workers report at the
end (their partitions' ledgers: exactly once across process deaths, so records = the input
topic's records = scored + warming + DLQ).
"""

from __future__ import annotations

import hashlib
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from kafka import KafkaProducer

from streamlstm.adapters.kafka.topics import input_partitions
from streamlstm.adapters.ray.supervisor import Supervisor
from streamlstm.config import Config, from_dict
from streamlstm.records import format_ts
from tests import live_helpers as lh

STREAMS, LENGTH, BAD = 6, 300, 24
EPISODE = (200, 215)  # readings of streams 1 and 4 that carry the injected episode
DIGEST_COLS = ("h", "c", "cal_mu", "cal_dev", "cal_n")
NOISE_RTOL, NOISE_ATOL = 1e-5, 3e-6  # float32 rounding noise, plus one 1e-6 rounding step
PROBE_STREAM = "probe-000"  # not part of the scenario: excluded from every comparison
EXTRA_PREFIX = "extra-"  # streams a case adds after the scenario: excluded too
MAX_RESTARTS = 5  # more restarts than this in one case is a restart loop
WATCH_NOTES: list[str] = []  # what Supervisor.watch saw in the current case


@dataclass
class Scenario:
    records: list[tuple[bytes | None, bytes]]
    bad_reasons: list[str]

    @property
    def n_bad(self) -> int:
        return len(self.bad_reasons)


@dataclass
class Outcome:
    digests: dict[str, str]
    rows: dict[str, dict[str, np.ndarray]]  # the rounded digest columns, for readable diffs
    last_offsets: dict[str, int]
    partition_offsets: dict[int, int]
    alert_ids: set[str]
    dlq_sources: set[tuple[str, str, str]]  # distinct (topic, partition, offset) dead letters
    dlq_messages: int  # may exceed the distinct count: dead letters are at-least-once
    dlq_missing_headers: int
    restarts: int = 0
    recovery_s: float | None = None
    notes: list[str] = field(default_factory=list)
    models: list[dict[str, str]] = field(default_factory=list)  # per worker, at the end
    counted: dict[str, int] | None = None  # final outcome counts, summed (``counted``)
    in_topic: int | None = None  # records in the input topic at the end (probe included)
    counted_durable: dict[str, int] | None = None  # the same as of the last snapshots


def build_scenario() -> tuple[Scenario, object]:
    """The records in produce order and the simulated data (to train the model on)."""
    from streamlstm.simulate.generate import bad_records

    data = lh.simulated(STREAMS, LENGTH, seed=11, rate=0.0)
    for i in (1, 4):
        data.values[i][EPISODE[0] : EPISODE[1], 0] += 45.0  # hr +45 bpm
        data.values[i][EPISODE[0] : EPISODE[1], 1] -= 9.0  # spo2 -9 points
    records = lh.records_of(data)
    bad = bad_records(np.random.default_rng(5), BAD)
    step = len(records) // (BAD + 1)
    for k, (key, value, _) in enumerate(bad):
        records.insert(step * (k + 1) + k, (key, value))
    return Scenario(records, [reason for _, _, reason in bad]), data


def chaos_config(bootstrap: str, tmp: Path, **overrides) -> Config:
    """The live test config with small polls, so a run has many polls and checkpoints."""
    tree = lh.live_config(bootstrap, tmp, workers=2).model_dump()
    tree["kafka"]["max_poll_records"] = 200
    for dotted, value in overrides.items():
        node = tree
        *path, last = dotted.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return from_dict(tree)


def partition_of(key: bytes | None, index: int, partitions: int) -> int:
    """Explicit and stable: keyless bad records would otherwise land at random."""
    return (zlib.crc32(key) if key is not None else index) % partitions


def produce(cfg: Config, records: list[tuple[bytes | None, bytes]], first: int = 0) -> None:
    """``first`` is the index of ``records[0]`` in the scenario (keeps keyless placement)."""
    parts = cfg.kafka.input_partitions
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap, linger_ms=5, acks="all")
    for i, (key, value) in enumerate(records, start=first):
        producer.send(
            cfg.kafka.input_topics[0], key=key, value=value, partition=partition_of(key, i, parts)
        )
    producer.flush()
    producer.close()


def start(cfg: Config, files: dict, env: dict[str, str] | None = None) -> Supervisor:
    """A supervisor whose worker actors get ``env`` (crash points) through their runtime_env."""
    options = {"runtime_env": {"env_vars": env}} if env else None
    sup = Supervisor(
        cfg,
        cfg.kafka.bootstrap,
        files,
        input_partitions(cfg, cfg.kafka.bootstrap),
        actor_options=options,
    )
    sup.start()
    return sup


def positions(sup: Supervisor) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in sup.stats():
        out.update(s.get("positions", {}))
    return out


def input_tps(cfg: Config) -> list[tuple[str, int]]:
    return [(cfg.kafka.input_topics[0], p) for p in range(cfg.kafka.input_partitions)]


def counter(sup: Supervisor, name: str, labels: tuple[str, ...] | None = None) -> float:
    """A worker metric counter summed over the workers (drains their counts)."""
    total = 0.0
    for report in sup.metrics():
        for key, got, value in (report or {}).get("counts", {}).get("counters", []):
            if key == name and (labels is None or tuple(got) == labels):
                total += value
    return total


def by_partition(pos: dict[str, int]) -> dict[int, int]:
    """Topic names differ between runs (one topic per run): key by partition number."""
    return {int(tp.rsplit(":", 1)[1]): o for tp, o in pos.items()}


def wait_caught_up(sup: Supervisor, cfg: Config, timeout_s: float = 120.0) -> float:
    """Watch (restarting dead workers) until every partition reaches its end; returns when."""
    ends = lh.end_offsets(cfg)
    deadline = time.monotonic() + timeout_s
    pos: dict[str, int] = {}
    while time.monotonic() < deadline:
        WATCH_NOTES.extend(sup.watch())
        assert sup.restarts <= MAX_RESTARTS, f"restart loop: {sup.restarts} restarts"
        pos = positions(sup)
        if all(pos.get(tp, -1) >= end for tp, end in ends.items()):
            return time.time()
        time.sleep(0.2)
    raise AssertionError(f"positions {pos} did not reach {ends} in {timeout_s} s")


def wait_durable(sup: Supervisor, timeout_s: float = 60.0) -> None:
    """Until every worker's outcome counts are in its snapshots (a checkpoint after the
    last record): then the exported counters, which advance at checkpoints, show them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = sup.stats()
        if all(s.get("started") and s["durable"]["records"] == s["records"] for s in stats):
            return
        time.sleep(0.2)
    raise AssertionError(f"outcome counts not durable within {timeout_s} s: {stats}")


def probe(sup: Supervisor, cfg: Config, timeout_s: float = 60.0) -> float:
    """Produce one fresh reading and wait until its worker has taken it; returns when."""
    produce(cfg, [probe_record()])
    return wait_caught_up(sup, cfg, timeout_s)


def probe_record() -> tuple[bytes, bytes]:
    """A valid reading of a stream outside the scenario, stamped now."""
    value = b'{"stream":"%s","ts":"%s","values":{"hr":70}}' % (
        PROBE_STREAM.encode(),
        format_ts(time.time()).encode(),
    )
    return PROBE_STREAM.encode(), value


def digest(cols: dict[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray]]:
    rounded = {k: np.round(np.asarray(cols[k], dtype=np.float64), 6) + 0.0 for k in DIGEST_COLS}
    h = hashlib.sha256()
    for k in DIGEST_COLS:
        h.update(k.encode() + rounded[k].tobytes())
    return h.hexdigest()[:16], rounded


def capture_state(sup: Supervisor) -> dict:
    """Per-stream digests and last offsets, per-partition next offsets (probe and a case's
    extra streams excluded)."""
    rows = {
        s: r
        for s, r in sup.state_rows().items()
        if s != PROBE_STREAM and not s.startswith(EXTRA_PREFIX)
    }
    digests, rounded = {}, {}
    for stream, cols in rows.items():
        digests[stream], rounded[stream] = digest(cols)
    return {
        "digests": digests,
        "rows": rounded,
        "last_offsets": {s: int(r["last_offset"]) for s, r in rows.items()},
        "partition_offsets": by_partition(positions(sup)),
    }


def capture_topics(cfg: Config) -> dict:
    """Alert ids (not of a case's extra streams) and dead letters, read back from the broker
    (after the workers drained)."""
    dlq = lh.read_all(cfg.kafka.bootstrap, cfg.kafka.dlq_topic)
    wanted = {"error.stage", "error.reason", "source.topic", "source.partition", "source.offset"}
    sources, missing = set(), 0
    for m in dlq:
        headers = {k: v.decode() for k, v in (m.headers or [])}
        missing += not wanted <= headers.keys()
        sources.add(tuple(headers.get(k, "?") for k in wanted_order()))
    return {
        "alert_ids": {
            e["alert_id"] for e in lh.alert_events(cfg) if not e["stream"].startswith(EXTRA_PREFIX)
        },
        "dlq_sources": sources,
        "dlq_messages": len(dlq),
        "dlq_missing_headers": missing,
    }


def wanted_order() -> tuple[str, str, str]:
    return ("source.topic", "source.partition", "source.offset")


def finish(sup: Supervisor, cfg: Config, healed_at: float | None) -> Outcome:
    """Catch up, capture the state, probe (recovery time from ``healed_at``), drain, read."""
    wait_caught_up(sup, cfg)
    state = capture_state(sup)
    probed_at = probe(sup, cfg)
    restarts, models = sup.restarts, sup.models()
    in_topic = sum(lh.end_offsets(cfg).values())
    final = sup.stop()  # each worker's stats after its drain
    since = healed_at if healed_at is not None else probed_at
    return Outcome(
        **state,
        **capture_topics(cfg),
        restarts=restarts,
        recovery_s=probed_at - since,
        models=models,
        notes=_pop_watch_notes(),
        counted=counted(final),
        counted_durable=counted([w.get("durable", {}) for w in final]),
        in_topic=in_topic,
    )


COUNTED = ("records", "scored", "warming", "dlq")


def counted(final: list[dict]) -> dict[str, int]:
    """The outcome counts of the workers' final stats, summed: every partition's ledger."""
    return {k: sum(int(w.get(k, 0)) for w in final) for k in COUNTED}


def count_diffs(run: Outcome) -> list[str]:
    """Each record counted exactly once, whatever died: records = the input topic's records
    = scored + warming + DLQ (one reading per record in the scenario)."""
    if run.counted is None:
        return []
    c, diffs = run.counted, []
    run.notes.append(
        f"counted {c['records']} records (topic {run.in_topic}) = scored {c['scored']} + "
        f"warming {c['warming']} + DLQ {c['dlq']}"
    )
    if c["records"] != run.in_topic:
        diffs.append(f"counted {c['records']} records, the input topic holds {run.in_topic}")
    if c["records"] != c["scored"] + c["warming"] + c["dlq"]:
        diffs.append(f"counted records != scored + warming + DLQ: {c}")
    if run.counted_durable is not None and run.counted_durable != c:
        diffs.append(f"counted after the drain {c} != durable {run.counted_durable}")
    return diffs


def _pop_watch_notes() -> list[str]:
    """Each distinct thing the supervisor saw (deaths with their cause), with a count."""
    seen: dict[str, int] = {}
    for note in WATCH_NOTES:
        seen[note] = seen.get(note, 0) + 1
    WATCH_NOTES.clear()
    return [f"{n} x{k}" if k > 1 else n for n, k in seen.items()]


def fresh_config(bootstrap: str, tmp: Path, **overrides) -> Config:
    """A new case: its own topics, group and snapshot directory."""
    WATCH_NOTES.clear()
    cfg = chaos_config(bootstrap, tmp / uuid.uuid4().hex[:6], **overrides)
    lh.setup_topics(cfg)
    return cfg


def reference_run(
    bootstrap: str, tmp: Path, scenario: Scenario, files: dict, **overrides
) -> Outcome:
    """The fault-free run every chaos case is compared with (``overrides``: config keys, as
    in ``chaos_config``)."""
    cfg = fresh_config(bootstrap, tmp, **overrides)
    produce(cfg, scenario.records)
    sup = start(cfg, files)
    try:
        started = time.time()
        out = finish(sup, cfg, None)
    except BaseException:
        sup.stop()
        raise
    out.notes.append(f"reference run {time.time() - started:.1f} s")
    return out


def compare(
    ref: Outcome,
    run: Outcome,
    n_bad: int,
    extra_dlq: int = 0,
    same_partition_offsets: bool = True,
) -> list[str]:
    """Readable differences; empty when ``run`` passes. ``extra_dlq``: records the case itself
    adds that must be rejected (duplicates); those also move the partitions' end offsets."""
    diffs: list[str] = []
    if run.digests.keys() != ref.digests.keys():
        diffs.append(f"streams differ: {sorted(run.digests.keys() ^ ref.digests.keys())}")
    for stream in sorted(ref.digests.keys() & run.digests.keys()):
        if run.digests[stream] != ref.digests[stream]:
            diffs.extend(_row_diff(stream, ref.rows[stream], run.rows[stream], run.notes))
        if run.last_offsets[stream] != ref.last_offsets[stream]:
            diffs.append(
                f"{stream}: last applied offset {run.last_offsets[stream]}, "
                f"reference {ref.last_offsets[stream]}"
            )
    if same_partition_offsets and run.partition_offsets != ref.partition_offsets:
        diffs.append(f"partition offsets {run.partition_offsets} != {ref.partition_offsets}")
    missing, extra = ref.alert_ids - run.alert_ids, run.alert_ids - ref.alert_ids
    if missing or extra:
        diffs.append(f"alert ids: {len(missing)} missing, {len(extra)} unexpected")
    if len(run.dlq_sources) != n_bad + extra_dlq:
        diffs.append(f"DLQ holds {len(run.dlq_sources)} distinct records, want {n_bad + extra_dlq}")
    if run.dlq_messages != len(run.dlq_sources):  # allowed: dead letters are at-least-once
        run.notes.append(f"DLQ {run.dlq_messages} messages for {len(run.dlq_sources)} records")
    if run.dlq_missing_headers:
        diffs.append(f"{run.dlq_missing_headers} dead letters lack their headers")
    diffs.extend(count_diffs(run))
    if run.restarts > MAX_RESTARTS:
        diffs.append(f"{run.restarts} restarts: a restart loop")
    if run.recovery_s is None or run.recovery_s > 60.0:
        diffs.append(f"recovery took {run.recovery_s} s (> 60 s)")
    return diffs


def _row_diff(stream: str, want: dict, got: dict, notes: list[str]) -> list[str]:
    """Digests differ: name the columns and how far apart they are.

    A float32 kernel may round differently when the same readings arrive in differently
    sized batches (see ``state.table_rows``), which can flip the 1e-6 rounding of a value:
    such a difference (within float32 noise) is noted, not failed.
    """
    out = []
    for k in DIGEST_COLS:
        if not np.allclose(got[k], want[k], rtol=NOISE_RTOL, atol=NOISE_ATOL):
            delta = float(np.max(np.abs(got[k] - want[k])))
            out.append(f"{stream}: {k} differs by up to {delta:.3g}")
    if not out:
        delta = max(float(np.max(np.abs(got[k] - want[k]), initial=0.0)) for k in DIGEST_COLS)
        notes.append(f"{stream}: digest differs within float32 noise ({delta:.1g})")
    return out
