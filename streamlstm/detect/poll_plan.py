"""A poll's plan: which of its readings step together, in which order, on which rows.

A stream's readings must run in order, each on the state its previous one left, so a poll
with several readings of a stream (a batched record is k consecutive readings of one) runs
as sub-steps: sub-step k holds the k-th reading of every stream that has more than k. What
does not need to be done per sub-step is done here once per poll, on arrays: the stream ->
row lookup (and new rows), each reading's rank among its stream's, and the order checks.

The order checks depend on each other only through a stream's last applied reading, so
they run rank by rank over host arrays before any step; a reading rejected there is left
out of the plan, and the sub-steps hold accepted readings only.

The working rows are the poll's streams with an accepted reading, those with the most
readings first (ties in input order). Sub-step k's streams are then exactly the first n_k
working rows: every sub-step steps a prefix of one working state, gathered once before the
first sub-step and scattered once after the last (``working.WorkingRows``), and its inputs
are one slice of the poll's inputs laid out in plan order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamlstm.detect.columns import Col
from streamlstm.detect.scored import ReadingColumns, Scored
from streamlstm.detect.state import StateTable
from streamlstm.records import Rejection


@dataclass
class PollPlan:
    rows: np.ndarray  # (R,) int64 working rows (table rows), most readings first
    sizes: list[int]  # n_k: sub-step k steps working rows [0, n_k); non-increasing
    order: np.ndarray | None  # (A,) int64 column index of each accepted reading in plan
    # order (sub-step 0's readings, then sub-step 1's, ...); None: all readings, as given
    dt: np.ndarray  # (A,) float64 seconds since the stream's previous reading, plan order
    new_rows: np.ndarray  # (M,) int64 rows added for new streams: to be initialised

    def index(self) -> np.ndarray:
        """(A,) the column index of each planned reading (``order``, or all of them)."""
        return np.arange(len(self.dt)) if self.order is None else self.order


def plan_poll(table: StateTable, cols: ReadingColumns, out: Scored) -> PollPlan:
    """The plan of ``cols`` on ``table``: rows looked up (new streams get rows), readings
    checked for order (rejections and replays recorded in ``out``, each stream's last
    applied timestamp and position advanced in the table's host columns)."""
    rows, is_new = table.rows_for(cols.streams)
    # The common poll: each stream once. Sorted by poll size, not np.bincount, whose array
    # is as long as the table (a million rows for one poll of a hundred readings).
    once = _distinct(rows)
    rank = np.zeros(len(rows), np.int64) if once else _rank_in_stream(rows)
    accepted, dt = _check_order(table, rows, rank, cols, out)
    if once and accepted.all():  # no index arrays, no copies
        return PollPlan(rows, [len(rows)] if len(rows) else [], None, dt, rows[is_new])
    taken = np.flatnonzero(accepted)
    taken_rows = rows[taken]
    # Working order: most accepted readings first, ties in order of first appearance.
    uniq, first, inverse, count = np.unique(
        taken_rows, return_index=True, return_inverse=True, return_counts=True
    )
    by_count = np.lexsort((first, -count))
    place = np.empty(len(uniq), np.int64)
    place[by_count] = np.arange(len(uniq))
    rank_taken = np.zeros(len(taken), np.int64) if once else _rank_in_stream(taken_rows)
    in_plan = np.lexsort((place[inverse], rank_taken))  # by sub-step, then working row
    sizes = np.bincount(rank_taken).tolist() if len(taken) else []
    order = taken[in_plan]
    return PollPlan(uniq[by_count], sizes, order, dt[order], rows[is_new])


def _distinct(rows: np.ndarray) -> bool:
    """Whether no row appears twice: sorted, no two neighbours equal. Not
    ``len(np.unique(rows)) == len(rows)``: numpy 2's hash-based unique took 620 ms for a
    million rows where the sort takes 5 ms (this machine's CPU), likely most of the host's
    share of a million-stream GPU step (README, Performance)."""
    ordered = np.sort(rows)
    return bool((ordered[1:] != ordered[:-1]).all())


def _rank_in_stream(rows: np.ndarray) -> np.ndarray:
    """(N,) each reading's place among the readings of its row, in input order."""
    n = len(rows)
    by_row = np.argsort(rows, kind="stable")
    sorted_rows = rows[by_row]
    starts = np.r_[True, sorted_rows[1:] != sorted_rows[:-1]] if n else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    rank = np.empty(n, np.int64)
    rank[by_row] = np.arange(n) - group_start
    return rank


def _check_order(
    table: StateTable, rows: np.ndarray, rank: np.ndarray, cols: ReadingColumns, out: Scored
) -> tuple[np.ndarray, np.ndarray]:
    """Skip readings already applied (replays); reject ones older than the stream. Rank by
    rank, as the sub-steps would meet them: a reading is judged against the last reading of
    its stream that was accepted. Returns (accepted (N,) bool, dt (N,) float64: seconds
    since that reading, inf for a new stream)."""
    host = table.host
    last_ts, last_offset = host[Col.LAST_TS], host[Col.LAST_OFFSET]
    accepted = np.zeros(len(rows), bool)
    dt = np.empty(len(rows), np.float64)
    by_rank = np.argsort(rank, kind="stable")
    lo = 0
    for n in np.bincount(rank).tolist() if len(rank) else []:
        idx = by_rank[lo : lo + n] if n < len(rows) else np.arange(n)
        lo += n
        r, ts, offsets = rows[idx], cols.ts[idx], cols.offsets[idx]
        replayed = offsets <= last_offset[r]
        before = last_ts[r]
        late = ~replayed & (ts < before)
        dup = ~replayed & (ts == before)
        keep = ~(replayed | late | dup)
        if not keep.all():
            out.replayed += int(replayed.sum())
            for j in np.flatnonzero(late | dup):
                reason = "out_of_order" if late[j] else "duplicate"
                out.rejected.append((int(idx[j]), Rejection.of(reason)))
            idx, r, ts, offsets, before = idx[keep], r[keep], ts[keep], offsets[keep], before[keep]
        accepted[idx] = True
        dt[idx] = ts - before  # inf for a new stream
        last_ts[r] = ts
        last_offset[r] = offsets
    return accepted, dt
