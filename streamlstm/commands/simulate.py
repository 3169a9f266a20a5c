"""``streamlstm simulate``: a labelled synthetic CSV of vitals or plant-sensor streams."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from streamlstm.records import format_ts
from streamlstm.simulate.generate import (
    KINDS,
    SUSTAINED_KINDS,
    generate,
    rfc3339,
    write_csv,
    write_truth_json,
)
from streamlstm.simulate.sustained import LENGTH, MIN_STREAM

if TYPE_CHECKING:
    from streamlstm.simulate.generate import SimulatedData

_VITALS_ONLY = [k for k in KINDS["vitals"] if k not in KINDS["sensors"]]
_SPAN = f"{LENGTH[0]}-{LENGTH[1]} readings ({LENGTH[0] / 60:.1f}-{LENGTH[1] / 60:.0f} h at 60 s)"
DESCRIPTION = f"""\
Generate realistic multivariate streams with labelled anomalies.

Normal data: per-stream baselines, a daily rhythm, correlated AR noise, monitor
rounding and rare missing cells. After the first quarter of each stream (left clean
for training and warm-up), about 0-3 short events per stream, 100+ readings apart:
{", ".join(KINDS["sensors"])},
and for vitals also {" and ".join(_VITALS_ONLY)}.

Sustained faults: in streams of {MIN_STREAM:,}+ readings, about half also hold one episode of
{_SPAN} that stays until treated or repaired, in free time
between the short events, which do not move for it:
vitals {", ".join(SUSTAINED_KINDS["vitals"])} (spo2 down, hr and rr up;
sbp and dbp down, hr up); sensors {", ".join(SUSTAINED_KINDS["sensors"])} (flow and power
down, pressure and vibration up; vibration grows and stays, power and bearing temperature
rise). Every event is labelled over its whole segment, onset and recovery included.
"""

EXAMPLES = """\
examples:
  streamlstm simulate --out data/vitals.csv --truth data/vitals-truth.json
  streamlstm simulate --kind sensors --streams 50 --length 5000 --seed 3 --out data/plant.csv
  streamlstm simulate --streams 200 --interval-s 1 --out data/fast.csv
  streamlstm simulate --bootstrap 127.0.0.1:9092 --topic icu.vitals --streams 200 \
      --rate 800 --duration 300 --truth truth.json --bad-fraction 0.001
  streamlstm simulate --bootstrap 127.0.0.1:9092 --topic icu.vitals --streams 200 \
      --rate 8000 --duration 60 --readings-per-record 10

The CSV has columns stream,timestamp,<features...>,label,anomaly_kind, rows sorted by
timestamp then stream, RFC 3339 UTC timestamps and empty cells for missing values. The same
--seed always gives the same file. In Kafka mode the streams start one interval after the
newest reading already in the topic, so a rerun continues them in order.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a labelled synthetic CSV (ICU vitals or plant sensors)",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Two modes: --out writes a CSV; --bootstrap/--topic produce the same readings to Kafka.
    p.add_argument("--out", metavar="FILE.csv", help="CSV file to write (file mode)")
    kafka = p.add_argument_group("Kafka mode")
    kafka.add_argument("--bootstrap", metavar="HOST:PORT", help="produce to this Kafka")
    kafka.add_argument("--topic", help="input topic (created if missing)")
    kafka.add_argument(
        "--rate",
        type=float,
        default=200.0,
        help="readings per second over all streams (default 200)",
    )
    kafka.add_argument(
        "--duration", type=float, default=60.0, help="seconds to produce for (default 60)"
    )
    kafka.add_argument(
        "--bad-fraction",
        type=float,
        default=0.0,
        help="share of extra malformed records (they go to the DLQ)",
    )
    kafka.add_argument(
        "--readings-per-record",
        type=int,
        default=1,
        metavar="N",
        help="readings of a stream per Kafka record: 1 = one each (default), N > 1 = "
        "batched records (columnar arrays, epoch-millisecond times)",
    )
    p.add_argument(
        "--kind",
        choices=["vitals", "sensors"],
        default="vitals",
        help="vitals: hr,spo2,rr,sbp,dbp,temp per bed; sensors: temperature,"
        "pressure,flow,vibration,power per pump (default vitals)",
    )
    p.add_argument(
        "--streams", type=int, default=20, metavar="N", help="number of streams (default 20)"
    )
    p.add_argument(
        "--length", type=int, default=2000, metavar="L", help="readings per stream (default 2000)"
    )
    p.add_argument("--seed", type=int, default=7, metavar="S", help="random seed (default 7)")
    p.add_argument(
        "--interval-s",
        type=float,
        default=60.0,
        metavar="SEC",
        help="seconds between readings of a stream (default 60)",
    )
    p.add_argument(
        "--truth", metavar="FILE.json", help="also write the ground-truth events as JSON"
    )
    p.add_argument(
        "--no-sustained",
        dest="sustained",
        action="store_false",
        help="leave out the sustained faults (the data of versions before them)",
    )
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    # Imported here so that building the CLI parser stays cheap.

    if not args.out and not (args.bootstrap and args.topic):
        args.parser.error("give --out FILE.csv, or --bootstrap and --topic for Kafka")
    if args.streams < 1 or args.length < 1 or args.interval_s <= 0:
        args.parser.error("--streams and --length must be >= 1 and --interval-s > 0")
    if args.bootstrap:
        return _to_kafka(args)
    data = generate(
        args.kind, args.streams, args.length, args.seed, args.interval_s, sustained=args.sustained
    )
    write_csv(data, _parent_made(args.out))
    if args.truth:
        write_truth_json(data, _parent_made(args.truth))
    print(summary(data, args.out, args.truth))
    return 0


def _to_kafka(args: argparse.Namespace) -> int:
    """Produce keyed records at a steady rate; write the truth of what was produced."""
    from kafka import KafkaProducer

    # lazy: Ray and Kafka load only when this command runs, not for --help
    from streamlstm.adapters.dev.sim_producer import produce
    from streamlstm.adapters.dev.topic_tail import newest_reading_ts
    from streamlstm.adapters.kafka.client import ensure_topics

    steps = int(args.duration * args.rate / args.streams) + 1
    ensure_topics(args.bootstrap, {args.topic: 4})
    # A rerun continues after the topic's newest reading: restarting at the same timestamps
    # would make every reading of a stream seen before out of order (all to the DLQ).
    newest = newest_reading_ts(args.bootstrap, args.topic)
    start = {} if newest is None else {"start_ts": newest + args.interval_s}
    # Kafka mode sizes the data to what will be sent, so episodes fall inside the run.
    data = generate(
        args.kind,
        args.streams,
        steps,
        args.seed,
        args.interval_s,
        sustained=args.sustained,
        **start,
    )
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=20, acks="all")
    stats = produce(
        producer,
        args.topic,
        data,
        args.rate,
        args.duration,
        args.bad_fraction,
        args.seed,
        per_record=args.readings_per_record,
    )
    producer.close()
    if args.truth:
        produced = [e for e in data.events if e.end_idx < stats.steps]
        data.events[:] = produced
        write_truth_json(data, _parent_made(args.truth))
    print(
        f"produced {stats.sent} readings ({stats.steps} per stream, from "
        f"{format_ts(float(data.ts.min()))}) and {stats.bad} bad "
        f"records to {args.topic} at {args.bootstrap}"
        + (f"; truth: {args.truth}" if args.truth else "")
    )
    return 0


def _parent_made(path: str) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return Path(path)


def summary(data: SimulatedData, out: str, truth: str | None) -> str:
    """One paragraph: streams, readings, events per kind, where the files went."""

    kinds = Counter(e.kind for e in data.events)
    per_kind = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"
    affected = len({e.stream for e in data.events})
    first, last = rfc3339(data.ts.min()), rfc3339(data.ts.max())
    text = (
        f"Wrote {data.values.shape[0] * data.values.shape[1]:,} readings of "
        f"{len(data.streams)} {data.domain} streams ({data.streams[0]} ... "
        f"{data.streams[-1]}, {first} to {last}) to {out}. {len(data.events)} anomaly "
        f"events on {affected} streams ({per_kind}) label {data.label.mean():.1%} of "
        "readings; the first quarter of each stream is clean."
    )
    return text + (f" Ground truth: {truth}." if truth else "")
