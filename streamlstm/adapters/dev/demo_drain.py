"""The demo's end: the workers score until they reach the input topic's end offsets, however
long a busy machine makes that take, so the summary covers every record produced.

``DrainWatch.check`` is the supervisor loop's status callback: once the simulator has
stopped it reads the end offsets (after flushing the producer), then stops the supervisor
when every partition's next offset has reached them (or the drain timeout passed). The drain
time runs from that first read: the later of the simulator's end and the workers' start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from streamlstm.adapters.kafka.client import KafkaSource
from streamlstm.adapters.kafka.options import client_options
from streamlstm.adapters.kafka.topics import input_partitions
from streamlstm.config import Config

PROGRESS_EVERY_S = 10.0


class DrainWatch:
    def __init__(
        self,
        config: Config,
        bootstrap: str,
        simulator: threading.Thread,
        producer,
        stop: threading.Event,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config, self.bootstrap = config, bootstrap
        self.simulator, self.producer, self.stop = simulator, producer, stop
        self.timeout_s, self.clock = timeout_s, clock
        self.ends: dict[str, int] | None = None  # "topic:partition" -> end offset
        self.ends_read_at: float | None = None
        self.drained_at: float | None = None
        self.behind = 0  # records not yet taken by a worker, at the last check
        self._last_progress = 0.0

    def check(self, stats: list[dict]) -> None:
        if self.simulator.is_alive() or self.stop.is_set():
            return
        now = self.clock()
        if self.ends is None:
            self.producer.flush()
            self.ends_read_at = self._last_progress = now
            self.ends = self._end_offsets()
            print(
                f"simulator done: {sum(self.ends.values())} records in the input topic; "
                "scoring up to its end offsets...",
                flush=True,
            )
        positions: dict[str, int] = {}
        for worker in stats:
            positions.update(worker.get("positions", {}))
        self.behind = sum(max(0, end - positions.get(tp, 0)) for tp, end in self.ends.items())
        if self.behind == 0:
            self.drained_at = now
            self.stop.set()
        elif now - self.ends_read_at >= self.timeout_s:
            print(f"drain timeout: {self.behind} records not scored", flush=True)
            self.stop.set()
        elif now - self._last_progress >= PROGRESS_EVERY_S:
            self._last_progress = now
            print(f"  ... {self.behind} records to go", flush=True)

    def _end_offsets(self) -> dict[str, int]:
        tps = input_partitions(self.config, self.bootstrap)
        source = KafkaSource(
            self.bootstrap, f"{self.config.kafka.group_id}-meta", client_options(self.config.kafka)
        )
        try:
            return {f"{t}:{p}": off for (t, p), off in source.end_offsets(tps).items()}
        finally:
            source.close()

    def report(self) -> dict:
        """For the summary: whether every record was taken, and how long the drain took."""
        drain_s = None
        if self.drained_at is not None and self.ends_read_at is not None:
            drain_s = round(self.drained_at - self.ends_read_at, 1)
        return {
            "in_topic": sum(self.ends.values()) if self.ends else None,
            "drained_to_end_offsets": self.drained_at is not None,
            "records_behind": self.behind,
            "drain_seconds": drain_s,
        }


def reconciled(summary: dict) -> bool:
    """In records: produced = in the topic = taken by the workers. In readings: produced =
    scored + warming + DLQ. A batched record holds several readings, so the two differ; a
    bad record is rejected whole and counts as one reading (one DLQ record)."""
    records = {summary["produced_records"], summary["in_topic"], summary["records_processed"]}
    outcomes = summary["scored"] + summary["warming"] + summary["dlq"]
    return len(records) == 1 and summary["produced"] == outcomes
