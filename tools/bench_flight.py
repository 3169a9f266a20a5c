"""What the flight recorder costs per poll (docs/reliability.md, "Poison records").

``python tools/bench_flight.py [--records 200] [--partitions 2] [--dir DIR] [--polls 20000]``
times, per poll, what the loop adds: ``took`` (the poll's first and last offset per
partition, from the loop's ``PollIndex``, built once per poll; one pwrite), four stage
``lap``s (a pwrite each) and ``landed`` (one). Prints
JSON: microseconds per poll, the median of 5 repeats, with the file and without (NoFlight).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from streamlstm.adapters.ops.flight import FlightFile
from streamlstm.records import RawRecord
from streamlstm.stream.flight import NoFlight
from streamlstm.stream.poll_index import PollIndex

LAPS = ("decode", "group", "step", "alerts")


def per_poll_us(recorder, records: list[RawRecord], polls: int) -> float:
    started = time.perf_counter()
    for _ in range(polls):
        recorder.took(PollIndex.of(records).poll())
        for stage in LAPS:
            recorder.lap(stage)
        recorder.landed()
    return (time.perf_counter() - started) / polls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--polls", type=int, default=20_000)
    ap.add_argument("--dir", default=None, help="where the file goes (default: a temp dir)")
    args = ap.parse_args()
    records = [
        RawRecord("vitals", i % args.partitions, i, b"k", b"{}") for i in range(args.records)
    ]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        flight = FlightFile.open(Path(tmp) / "flight.bin")
        with_file = [per_poll_us(flight, records, args.polls) for _ in range(5)]
        without = [per_poll_us(NoFlight(), records, args.polls) for _ in range(5)]
        flight.close()
    print(
        json.dumps(
            {
                "records_per_poll": args.records,
                "partitions_per_poll": args.partitions,
                "polls": args.polls,
                "us_per_poll_file": round(statistics.median(with_file), 2),
                "us_per_poll_noflight": round(statistics.median(without), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
