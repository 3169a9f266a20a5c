"""The live loop over small protocols: poll -> parse -> score -> emit -> (flush -> snapshot ->
commit). Kafka, snapshot storage and metrics are injected; nothing here imports them.

The order inside ``checkpoint`` is the delivery guarantee, stated once:

1. ``sink.flush()``: every alert and DLQ record produced so far is acknowledged;
2. ``store.save()``: each partition's state + next offset is durable (atomic write);
3. ``source.commit()``: only now does Kafka's committed offset move past those records.

A crash anywhere leaves a snapshot no newer than the committed offset; on restart a
partition restores its newest complete snapshot and seeks to its next offset, so no reading
is applied twice or skipped, and re-scored readings re-open alerts with the same ids.

Outcome counts follow the state: each partition's ``Ledger`` (records, readings by outcome,
dead letters by reason, alert events) covers its records below its next offset, is saved in
its snapshot and restored with it, so a replayed record is counted once (``ledger.py``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import numpy as np

from streamlstm.detect.detector import Scored
from streamlstm.record_parser import RecordParser
from streamlstm.records import RawRecord, Rejection, offset_of
from streamlstm.stream.crashpoints import CrashPoints
from streamlstm.stream.dead_letter import send_dead_letter
from streamlstm.stream.decode import decode_poll
from streamlstm.stream.engine import Engine
from streamlstm.stream.eviction import StreamHomes
from streamlstm.stream.flight import FlightRecorder, NoFlight
from streamlstm.stream.ledger import Ledger, Ledgers
from streamlstm.stream.partition_state import partition_blobs, restore_partition
from streamlstm.stream.poison import PoisonLedger
from streamlstm.stream.poll_index import PollIndex
from streamlstm.stream.polled import at_record, group_columns, where
from streamlstm.stream.ports import (
    TP,
    Counters,
    LatencyWindow,
    Metrics,
    NoMetrics,
    Sink,
    SnapshotStore,
    Source,
    StageTimes,
)

__all__ = ["TP", "CrashPoints", "Metrics", "Sink", "SnapshotStore", "Source", "StreamWorker"]

log = logging.getLogger(__name__)


class StreamWorker:
    """Scores the partitions assigned to it; one per Ray actor (or process, or test)."""

    def __init__(
        self,
        engine: Engine,
        parser: RecordParser,
        source: Source,
        sink: Sink,
        store: SnapshotStore,
        clock: Callable[[], float],
        interval_s: float,
        metrics: Metrics | None = None,
        crash: CrashPoints | None = None,
        wall_clock: Callable[[], float] | None = None,
        counters: Counters | None = None,
        timer: Callable[[], float] | None = None,
        max_streams: int | None = None,
        poison: PoisonLedger | None = None,
        flight: FlightRecorder | None = None,
    ):
        self.engine, self.parser = engine, parser
        self.source, self.sink, self.store = source, sink, store
        self.clock, self.interval_s = clock, interval_s
        self.metrics = metrics or NoMetrics()
        self.crash = crash or CrashPoints(None)
        self.wall_clock = wall_clock  # epoch seconds; enables append-to-score latency
        self.latency = LatencyWindow()
        self.next_offset: dict[TP, int] = {}  # next offset to read, per assigned partition
        self.ledgers = Ledgers()  # per partition, outcome counts of its records below next_offset
        # each stream's partition, each partition's streams; at most max_streams of them
        self.homes = StreamHomes(max_streams)
        self.counters = counters or Counters()  # the caller's survive a restart of the loop
        self.stages = StageTimes(self.counters, timer)  # seconds per stage, with a timer
        self._last_checkpoint = clock()
        self._dirty = False
        self._staged: deque = deque()  # (model, shadow_readings) from other threads
        self.poison = poison or PoisonLedger(None)  # the caller's survives a restart
        # and the flight recorder's outlives the process (flight.py)
        self.flight = flight or NoFlight()
        self.stages.on_lap = self.flight.lap

    def request_stage(self, model, shadow_readings: int) -> None:
        """Thread-safe: the loop stages ``model`` in shadow before its next poll."""
        self._staged.append((model, shadow_readings))

    def stage_pending(self) -> bool:
        """A requested model not yet warming (the loop takes it before its next poll)."""
        return bool(self._staged)

    # --- assignment ---------------------------------------------------------------------
    def assign(self, partitions: list[TP]) -> dict[TP, int]:
        """Restore each partition's newest snapshot and seek past it; returns start offsets."""
        restored: dict[TP, Ledger] = {}
        for tp in partitions:
            saved = self.store.load(tp)
            streams: set[tuple[str, str]] = set()
            start, restored[tp] = 0, Ledger()
            if saved is None:
                self.metrics.restored("cold")
            else:
                streams, restored[tp] = restore_partition(self.engine, self.metrics, tp, saved[0])
                start = saved[1]
            self.next_offset[tp] = start
            self.homes.restored(tp, streams)
            self.source.seek(tp[0], tp[1], start)
        self.ledgers.restored(restored)
        return dict(self.next_offset)

    # --- the loop -----------------------------------------------------------------------
    def run_once(self, timeout_s: float, max_records: int) -> int:
        """One poll; returns the number of records handled.

        Bounded in records, not readings: a batched record's readings run as consecutive
        sub-steps of the detector, one row per record each, so the records per poll are the
        rows per tensor step, and fewer of them make every step slower per reading."""
        while self._staged:
            model, shadow_readings = self._staged.popleft()
            self.engine.stage(model, shadow_readings)
        self.stages.start()
        records = self.source.poll(timeout_s, self.poison.poll_size(max_records))
        if records:
            self.stages.lap("fetch")
            self.counters.polls += 1
            self.crash.hit("after_poll")  # only where records were taken: a crash loses them
            index = PollIndex.of(records)
            poll = index.poll()
            self.flight.took(poll)  # a process death from here on is counted
            failure = self.poison.poison(records)
            try:
                if failure is not None:
                    self._poisoned(records[0], failure.stage)
                else:
                    self.crash.on_records(records)
                    self._handle(records, index)
            except Exception:
                # Landed first: a death between the two loses this count, never doubles it.
                self.flight.landed()
                if self.poison.failed_poll(poll, self.stages.last):
                    self.flight.keep(self.poison.state())
                raise
            self.flight.landed()
            if self.poison.passed(self.next_offset):
                self.flight.keep(self.poison.state())
        if self.clock() - self._last_checkpoint >= self.interval_s:
            self.checkpoint()
        return len(records)

    def _handle(self, records: list[RawRecord], index: PollIndex) -> None:
        c, stages = self.counters, self.stages
        self.ledgers.drop_pending()  # what a failed poll counted
        next_offset = index.advanced(self.next_offset)
        fresh_record = index.fresh(self.next_offset)
        tps, tp_of_record = index.tps, index.tp_of  # counts per partition
        decoded = decode_poll(self.parser, records)
        for i, index, rej in decoded.rejected:
            self._dlq(records[i], rej, index)
        stages.lap("decode")
        refused: list[tuple[int, str]] = []  # other_partition, too_many_streams
        polled = {
            group: group_columns(group, cols, records, fresh_record, self.homes.refusal, refused)
            for group, cols in decoded.groups.items()
        }
        for i, reason in refused:
            self._dlq(records[i], Rejection.of(reason))
        stages.lap("group")
        results = self.engine.score_groups(
            {g: p.cols for g, p in polled.items() if len(p.cols.streams)}
        )
        stages.lap("step")
        batched = {where(records[i]) for i in decoded.batched}
        fresh = [r for r, new in zip(records, fresh_record, strict=True) if new]
        if self.wall_clock is not None and fresh:
            now = self.wall_clock()
            lat = now - np.fromiter((r.timestamp_ms for r in fresh), float, len(fresh)) / 1e3
            self.latency.add(lat)
            self.metrics.latencies(lat)
        self.crash.hit("after_score")
        for group, scored in results.items():
            got = polled[group]
            for i, rej in scored.rejected:
                i_rec = int(got.record[i])
                index = offset_of(int(got.cols.offsets[i]))[1]
                self._dlq(records[i_rec], rej, index if i_rec in decoded.batched else None)
            self._count_scored(got.fresh, scored, tps, tp_of_record[got.record])
            for event in scored.events:
                event = at_record(event, batched)
                self.sink.send_alert(event.stream.encode(), event.to_json())
                if self._fresh(*event.source):
                    self.ledgers.count(
                        event.source[:2], "alert_events", (event.event, event.severity)
                    )
        for k, n in enumerate(np.bincount(tp_of_record[fresh_record], minlength=len(tps))):
            self.ledgers.count(tps[k], "records", (), int(n))
        # Counted and advanced only now, so progress read from another thread (stats) never
        # reports a batch that is still being scored.
        self.ledgers.publish()
        self.next_offset = next_offset
        while self.engine.switched:
            group, old, new = self.engine.switched.pop(0)
            log.warning("%s: model %s took over from %s after its shadow warm-up", group, new, old)
            c.swaps += 1
        self._dirty = True
        stages.lap("alerts")

    def _fresh(self, topic: str, partition: int, offset: int) -> bool:
        """Not in the partition's ledger yet: at or past its next offset. The source starts
        at the restored next offset, so this holds for every record a worker polls; a
        record delivered again below it is not counted twice."""
        return offset >= self.next_offset.get((topic, partition), 0)

    def _count_scored(self, new: np.ndarray, sc: Scored, tps: list[TP], tp_of: np.ndarray) -> None:
        """``new`` (N,) bool per reading passed to the detector: its record is fresh;
        ``tp_of`` (N,) the index of the reading's partition in ``tps``."""
        index = np.asarray(sc.index, dtype=np.int64)
        fresh = new[index]  # per scored reading
        warming = np.asarray(sc.warming, dtype=bool)
        which = tp_of[index]
        for outcome, counted in (("warming", fresh & warming), ("scored", fresh & ~warming)):
            for k, n in enumerate(np.bincount(which[counted], minlength=len(tps))):
                self.ledgers.count(tps[k], "readings", (outcome,), int(n))
        self.counters.replayed += sc.replayed
        self.metrics.scores(np.asarray(sc.score)[fresh & ~warming])

    def evict_idle(self, idle_s: float) -> int:
        """Drop the streams whose last reading is ``idle_s`` older than their partition's
        newest reading; the next snapshot leaves them out, and one that returns starts cold."""
        evicted = self.homes.evict_idle(self.engine.tables, idle_s)
        if evicted:
            self.counters.evicted += evicted
            self.metrics.evicted(evicted)
            self._dirty = True
        return evicted

    def _poisoned(self, rec: RawRecord, stage: str) -> None:
        """``rec`` failed ``stage`` ``poison.after`` times: to the DLQ, and move past it."""
        tp = (rec.topic, rec.partition)
        log.error("%s:%d@%d failed %s again: dead-lettered as poison", *tp, rec.offset, stage)
        self.ledgers.drop_pending()
        self._dlq(rec, Rejection(stage, "poison"))
        if self._fresh(*tp, rec.offset):
            self.ledgers.count(tp, "records")
        self.ledgers.publish()
        self.next_offset[tp] = max(self.next_offset.get(tp, 0), rec.offset + 1)
        self._dirty = True

    def _dlq(self, rec: RawRecord, rej: Rejection, batch_index: int | None = None) -> None:
        """Send to the DLQ (again, in a replay: at least once), count it once. A reading of
        a batched record goes alone: the record's bytes, its index in a header."""
        try:
            send_dead_letter(self.sink, self.metrics, rec, rej, batch_index)
        except Exception:
            self.stages.last = "produce"  # the sink's failure, not the record's stage's
            raise
        if not self._fresh(rec.topic, rec.partition, rec.offset):
            return
        tp = (rec.topic, rec.partition)
        self.ledgers.count(tp, "readings", ("dlq",))
        self.ledgers.count(tp, "dlq", (rej.reason,))

    def checkpoint(self) -> None:
        """flush alerts -> durable snapshot per partition -> commit offsets (in that order)."""
        started = self.clock()
        self._last_checkpoint = started
        if not self._dirty:
            return
        self.stages.start()
        self.sink.flush(30.0)
        self.stages.lap("produce")
        self.crash.hit("after_flush")
        try:
            for tp, offset in self.next_offset.items():
                blobs = partition_blobs(
                    self.engine, self.homes.streams_of.get(tp, set()), self.ledgers.blob(tp)
                )
                self.store.save(tp, blobs, offset)
                # Its outcomes are durable now: whichever process restarts, it restores them.
                self.ledgers.saved(tp)
                self.crash.hit("after_snapshot_partition")
        except OSError as exc:
            # Disk full or store down: the committed offset must not pass the last durable
            # snapshot, so nothing is committed. Still dirty: the next checkpoint retries, and
            # Kafka keeps the records until then. (Raising would restart the actor in a loop.)
            log.error("snapshot failed, offsets not committed; retrying next checkpoint: %s", exc)
            self.metrics.snapshot_failed()
            return
        self.stages.lap("snapshot")
        self.crash.hit("after_snapshot")
        committed = dict(self.next_offset)
        self.source.commit(committed)
        self.stages.lap("commit")
        self._dirty = False
        self.counters.checkpoints += 1
        self.metrics.checkpointed(self.clock() - started, committed)

    def totals(self, durable: bool = False) -> Ledger:
        """Summed over the assigned partitions: live (every record below next_offset), or as
        of each partition's last durable snapshot."""
        return self.ledgers.totals(durable)
