"""``WorkingRows``: a poll's rows of the state table, gathered once for all its sub-steps.

A poll's sub-steps step prefixes of its working rows (``poll_plan``), one after another, each
on the state the one before left. Gathering the rows from the table and scattering them
back around every sub-step cost a copy of every column twice per sub-step, whatever its
size: with batched records, (readings per record) times per poll. Here the state is
gathered when the poll starts and written back when it ends; in between, a sub-step reads
and writes slices of it. A dense table whose streams come in row order needs no gather at
all: the working state is then views into the table's columns.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from streamlstm.detect.columns import Col
from streamlstm.detect.state import StateTable
from streamlstm.detect.step import restart


class WorkingRows:
    def __init__(self, table: StateTable, rows: np.ndarray):
        self.table = table
        self.n = len(rows)
        self.first = _first_of_run(rows)
        if self.first is None:
            self.rows_t: Tensor | None = torch.as_tensor(rows, device=table.device)
            self.base: dict[str, Tensor] | None = None
            self.state = table.gather(self.rows_t)
        else:
            self.rows_t = None
            self.base = table.view(self.first, self.first + self.n)
            self.state = dict(self.base)

    def rows(self, lo: int, hi: int) -> dict[str, Tensor]:
        """Working rows lo..hi-1 as a state dict for ``TensorStep`` (views, no copy)."""
        if lo == 0 and hi == self.n:
            return dict(self.state)
        return {name: t[lo:hi] for name, t in self.state.items()}

    def put(self, lo: int, hi: int, given: dict[str, Tensor], stepped: dict[str, Tensor]):
        """Keep what the step left in ``stepped`` (the dict ``rows(lo, hi)`` gave as
        ``given``): a column it changed in place is already kept, one it replaced is
        taken over (all rows) or copied into its slice."""
        whole = lo == 0 and hi == self.n
        for name, value in stepped.items():
            if value is given[name]:
                continue
            if whole:
                self.state[name] = value
            else:
                self.state[name][lo:hi].copy_(value)

    def restart(self, positions: np.ndarray) -> None:
        """Working rows ``positions`` start afresh (``Detector``'s rebaseline): LSTM state,
        window, warm-up and the normaliser's counts."""
        mask = torch.zeros(self.n, dtype=torch.bool, device=self.table.device)
        mask[torch.as_tensor(positions, device=self.table.device)] = True
        restart(self.state, mask)
        self.state[Col.N_OBS] = torch.where(mask.unsqueeze(1), 0.0, self.state[Col.N_OBS])

    def close(self) -> None:
        """Write the working state back into the table."""
        if self.base is None:
            assert self.rows_t is not None
            self.table.scatter(self.rows_t, self.state)
        else:
            assert self.first is not None
            self.table.write_back(self.first, self.base, self.state)


def _first_of_run(rows: np.ndarray) -> int | None:
    """The first row when ``rows`` are consecutive ascending (r, r + 1, ...), else None."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all():
        return int(rows[0])
    return None
