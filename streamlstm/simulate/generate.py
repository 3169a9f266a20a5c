"""Synthetic labelled streams: ICU patient-monitor vitals and plant sensors (pure numpy).

Normal data (``simulate.normal``) has structure a model must learn; labelled anomalies
(``simulate.anomalies``, and in streams of 1,200+ readings the hours-long faults of
``simulate.sustained``) are placed after the first quarter of each stream (``simulate.plans``).
This module puts them together and writes them out: CSV, ground-truth JSON, or
input-contract records.

Every stream draws from its own three generators (normal data, short anomalies, sustained
faults) spawned from the seed, so a stream does not depend on how many others are generated,
the same seed with ``anomaly_rate=0`` gives the identical data without its anomalies, and
sustained faults only fill free time between the short events: with ``sustained=False`` the
data is what the simulator made before they existed.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from streamlstm.simulate.anomalies import KINDS, Event, Plan, apply_deltas, apply_flatlines
from streamlstm.simulate.normal import DECIMALS, FEATURES, VITAL_RANGES, finish, normal_values
from streamlstm.simulate.plans import plan_events
from streamlstm.simulate.sustained import SUSTAINED_KINDS, place_sustained

__all__ = ["FEATURES", "KINDS", "SUSTAINED_KINDS", "VITAL_RANGES", "Event", "SimulatedData"]
__all__ += ["bad_records"]
__all__ += ["generate", "rfc3339", "to_records", "to_rows", "write_csv", "write_truth_json"]

MISSING_RATE = 0.002  # cells lost in normal operation


@dataclass
class SimulatedData:
    """Arrays are stacked over streams: ``values[i]`` is stream ``streams[i]``, shape (L, F)."""

    domain: str  # vitals | sensors
    features: list[str]
    streams: list[str]
    ts: np.ndarray  # (S, L) float64 epoch seconds
    values: np.ndarray  # (S, L, F) float64, NaN = missing
    label: np.ndarray  # (S, L) int8, 1 inside an event
    anomaly_kind: np.ndarray  # (S, L) object: the event's kind, '' when normal
    events: list[Event]
    noise_sd: np.ndarray  # (S, F) each stream's normal noise sigma, the unit of anomaly sizes


def generate(
    kind: str,
    n_streams: int,
    length: int,
    seed: int,
    interval_s: float = 60.0,
    start_ts: float = 1_767_225_600.0,
    anomaly_rate: float = 1.0,
    sustained: bool = True,
) -> SimulatedData:
    """Streams of ``length`` readings every ``interval_s`` seconds from ``start_ts``.

    ``anomaly_rate``: expected short events per 1,000 readings after each stream's first
    quarter (Poisson; at 1.0 a 2,000-reading stream has 0-3, about a fifth have none; 0 =
    clean). At 1.0 about half the streams of ``sustained.MIN_STREAM`` readings or more also
    hold one sustained fault of 400-900 readings, where the short events leave room for one
    (the share scales with the rate, up to all of them).
    ``sustained=False`` leaves them out: the data the simulator made before they existed.
    """
    if kind not in FEATURES:
        raise ValueError(f"kind must be one of {sorted(FEATURES)}, not {kind!r}")
    if n_streams < 1 or length < 1 or interval_s <= 0 or anomaly_rate < 0:
        raise ValueError("need n_streams >= 1, length >= 1, interval_s > 0, anomaly_rate >= 0")
    features = FEATURES[kind]
    normal_rngs, anomaly_rngs, sustained_rngs = _stream_rngs(seed, kind, n_streams)
    ts = start_ts + interval_s * np.arange(length, dtype=np.float64)
    raw, noise_sd = normal_values(kind, normal_rngs, ts)
    missing = np.stack([rng.random((length, len(features))) < MISSING_RATE for rng in normal_rngs])
    rate_long = anomaly_rate if sustained else 0.0
    placed = [
        _place(kind, noise_sd[i], length, (anomaly_rate, rate_long), (rng, sustained_rngs[i]))
        for i, rng in enumerate(anomaly_rngs)
    ]
    for i, plans in enumerate(placed):
        apply_deltas(raw[i], plans)
    values = finish(kind, raw)
    streams = _stream_ids(kind, n_streams)
    label = np.zeros((n_streams, length), dtype=np.int8)
    anomaly_kind = np.full((n_streams, length), "", dtype=object)
    events = []
    for i, plans in enumerate(placed):
        apply_flatlines(values[i], plans)  # after rounding, so a stuck value repeats exactly
        events += _label(streams[i], ts, features, plans, label[i], anomaly_kind[i])
    # Normal missingness stays outside events, where the anomaly alone decides the values.
    values[missing & (label[:, :, None] == 0)] = np.nan
    all_ts = np.tile(ts, (n_streams, 1))
    return SimulatedData(
        kind, list(features), streams, all_ts, values, label, anomaly_kind, events, noise_sd
    )


Rngs = list[np.random.Generator]


def _stream_rngs(seed: int, kind: str, n: int) -> tuple[Rngs, Rngs, Rngs]:
    """Three independent generators per stream: normal data, short anomalies, sustained
    faults. A SeedSequence's k-th child does not depend on how many are spawned, so the
    first two are the ones streams had before the third was added."""
    seqs = np.random.SeedSequence([seed, list(FEATURES).index(kind)]).spawn(n)
    triples = [[np.random.default_rng(s) for s in seq.spawn(3)] for seq in seqs]
    return [t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples]


def _place(
    kind: str,
    sd: np.ndarray,
    length: int,
    rates: tuple[float, float],
    rngs: tuple[np.random.Generator, np.random.Generator],
) -> list[tuple[int, Plan]]:
    """One stream's placed plans, in order. ``rates``: short events, sustained faults (0 =
    none); ``rngs``: their generators. The short events come first and never move."""
    short = plan_events(rngs[0], KINDS[kind], FEATURES[kind], sd, length, rates[0])
    return place_sustained(rngs[1], kind, sd, short, length, rates[1])


def _stream_ids(kind: str, n: int) -> list[str]:
    unit, item = ("icu", "bed") if kind == "vitals" else ("plant", "pump")
    return [f"{unit}{i // 100 + 1}-{item}{i % 100 + 1:03d}" for i in range(n)]


def _label(
    stream: str,
    ts: np.ndarray,
    features: list[str],
    placed: list[tuple[int, Plan]],
    label: np.ndarray,
    kinds: np.ndarray,
) -> list[Event]:
    """Mark each placed plan's whole segment in ``label``/``kinds``; return its Event."""
    events = []
    for start, plan in placed:
        end = start + plan.length - 1
        label[start : end + 1] = 1
        kinds[start : end + 1] = plan.kind
        names = tuple(features[c] for c in plan.cols)
        span = (start, end, float(ts[start]), float(ts[end]))
        events.append(Event(stream, plan.kind, *span, names, plan.detail))
    return events


def rfc3339(ts: np.ndarray | float) -> np.ndarray:
    """Epoch seconds -> 'YYYY-MM-DDTHH:MM:SS.mmmZ' (a vectorised ``records.format_ts``)."""
    ms = np.round(np.asarray(ts) * 1000.0).astype("datetime64[ms]")
    return np.char.add(np.datetime_as_string(ms, unit="ms"), "Z")


def _order(data: SimulatedData) -> tuple[np.ndarray, np.ndarray]:
    """(stream index, reading index) of every reading, by timestamp then stream id."""
    rank = np.argsort(np.argsort(np.array(data.streams)))
    length = data.ts.shape[1]
    flat = np.lexsort((np.repeat(rank, length), data.ts.ravel()))
    return flat // length, flat % length


def to_rows(data: SimulatedData) -> Iterator[dict]:
    """One dict per reading (stream, timestamp, features, label, anomaly_kind); None = NaN."""
    stamps = rfc3339(data.ts)
    for i, t in zip(*_order(data), strict=True):
        row: dict = {"stream": data.streams[i], "timestamp": str(stamps[i, t])}
        for name, v in zip(data.features, data.values[i, t].tolist(), strict=True):
            row[name] = None if math.isnan(v) else v
        row["label"] = int(data.label[i, t])
        row["anomaly_kind"] = data.anomaly_kind[i, t]
        yield row


def _cell(name: str, v: float | None) -> str:
    return "" if v is None else f"{v:.{DECIMALS.get(name, 3)}f}"


def write_csv(data: SimulatedData, path: str | Path) -> None:
    """stream,timestamp,<features...>,label,anomaly_kind; empty cell = missing."""
    header = ["stream", "timestamp", *data.features, "label", "anomaly_kind"]
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in to_rows(data):
            cells = [_cell(f, row[f]) for f in data.features]
            writer.writerow(
                [row["stream"], row["timestamp"], *cells, row["label"], row["anomaly_kind"]]
            )


def to_records(data: SimulatedData) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) in the input contract: {"stream", "ts", "values": {"hr": 72, ...}}."""
    whole = {f for f in data.features if DECIMALS.get(f, 3) == 0}  # sent as JSON integers
    for row in to_rows(data):
        values = {f: _json_number(row[f], f in whole) for f in data.features}
        record = {"stream": row["stream"], "ts": row["timestamp"], "values": values}
        yield row["stream"].encode(), json.dumps(record, separators=(",", ":")).encode()


def _json_number(v: float | None, whole: bool) -> float | int | None:
    return int(v) if whole and v is not None else v


def write_truth_json(data: SimulatedData, path: str | Path) -> None:
    """``{"domain", "features", "streams", "events": [...]}``; event times in RFC 3339."""
    events = [
        {**asdict(e), "start_ts": str(rfc3339(e.start_ts)), "end_ts": str(rfc3339(e.end_ts))}
        for e in data.events
    ]
    doc = {"domain": data.domain, "features": data.features, "streams": data.streams}
    Path(path).write_text(json.dumps({**doc, "events": events}, indent=1) + "\n", "utf-8")


def bad_records(
    rng: np.random.Generator, n: int, kind: str = "vitals"
) -> list[tuple[bytes | None, bytes, str]]:
    """``n`` malformed (key, value, expected rejection reason) records, each case in turn.

    The cycle starts at a random case, so repeated ``n=1`` calls vary too; with
    ``n >= len(BAD_CASES)`` every case appears. ``kind`` picks the feature names used.
    """
    feature, prefix = ("hr", "icu9-bed") if kind == "vitals" else ("flow", "plant9-pump")
    first, out = int(rng.integers(len(BAD_CASES))), []
    for i in range(n):
        reason, make = BAD_CASES[(first + i) % len(BAD_CASES)]
        stream = f"{prefix}{int(rng.integers(1000)):03d}"
        ts = f"2026-01-0{int(rng.integers(1, 10))}T{int(rng.integers(24)):02d}:00:00.000Z"
        record = {"stream": stream, "ts": ts, "values": {feature: int(rng.integers(40, 140))}}
        key, value = make(record)
        out.append((key, value, reason))
    return [out[i] for i in rng.permutation(len(out))]


def _dump(record: object) -> bytes:
    return json.dumps(record).encode()


def _key(record: dict) -> bytes:
    return record["stream"].encode()


def _without(record: dict, field: str) -> dict:
    return {k: v for k, v in record.items() if k != field}


def _bad_utf8(r: dict) -> bytes:
    return _dump(r).replace(_key(r), _key(r) + b"\xff\xfe")


def _as_text(r: dict) -> bytes:
    return _dump({**r, "values": {k: str(v) for k, v in r["values"].items()}})


def _non_finite(r: dict, literal: bytes) -> bytes:
    # json.dumps writes NaN for a float nan; swap in the literal wanted.
    return _dump({**r, "values": dict.fromkeys(r["values"], math.nan)}).replace(b"NaN", literal)


Maker = Callable[[dict], tuple[bytes | None, bytes]]
BAD_CASES: tuple[tuple[str, Maker], ...] = (
    ("not_json", lambda r: (_key(r), _dump(r)[:-7])),  # truncated
    ("bad_unicode", lambda r: (_key(r), _bad_utf8(r))),
    ("not_object", lambda r: (None, _dump([r]))),
    ("no_stream", lambda r: (_key(r), _dump(_without(r, "stream")))),
    ("key_mismatch", lambda r: (_key(r) + b"-other", _dump(r))),
    ("no_timestamp", lambda r: (_key(r), _dump(_without(r, "ts")))),
    ("bad_timestamp", lambda r: (_key(r), _dump({**r, "ts": r["ts"].replace("T", " at ")}))),
    ("absurd_timestamp", lambda r: (_key(r), _dump({**r, "ts": "1970-01-01T00:00:05.000Z"}))),
    ("absurd_timestamp", lambda r: (_key(r), _dump({**r, "ts": r["ts"].replace("2026", "2200")}))),
    ("no_features", lambda r: (_key(r), _dump({**r, "values": {"heart_rate": 72, "bp": 80}}))),
    ("bad_value", lambda r: (_key(r), _as_text(r))),
    ("non_finite", lambda r: (_key(r), _non_finite(r, b"NaN"))),
    ("non_finite", lambda r: (_key(r), _non_finite(r, b"-Infinity"))),
    ("oversized", lambda r: (_key(r), _dump({**r, "note": "x" * 70_000}))),  # > 64 KiB
)
