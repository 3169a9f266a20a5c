"""Writing one dead letter: what a refused write and a failed one each mean for the loop."""

from __future__ import annotations

import dataclasses
import logging

from streamlstm.records import RawRecord, Rejection
from streamlstm.stream.ports import Metrics, Sink, UndeliverableRecord

log = logging.getLogger(__name__)


def send_dead_letter(
    sink: Sink, metrics: Metrics, rec: RawRecord, rej: Rejection, batch_index: int | None
) -> None:
    """Send ``rec`` to the DLQ with its rejection. A reading of a batched record goes alone:
    the record's bytes, its index in a header. A write the sink refuses for good (too large
    even cut) is logged and counted, and the loop goes on; any other failure (broker down,
    no metadata) is the sink's, not the record's: it is raised as it came, the worker
    restarts and replays the record, and it is no failure of the record's stage (poison.py)."""
    if batch_index is not None:
        rec = dataclasses.replace(rec, batch_index=batch_index)
    where = f"{rec.topic}:{rec.partition}@{rec.offset}"
    try:
        sink.send_dlq(rec, rej.stage, rej.reason)
    except UndeliverableRecord as exc:
        # Raising would restart the worker onto this same record, forever: log it (its
        # coordinates find it in the input topic), count it, and go on.
        log.error("DLQ write of %s (reason %s) refused, record skipped: %s", where, rej.reason, exc)
        metrics.dead_letter_failed(rej.reason)
    except Exception as exc:
        log.error("DLQ write of %s (reason %s) failed: %s", where, rej.reason, exc)
        raise
