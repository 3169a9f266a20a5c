"""Leave-one-category-out (LOCO): is a setting chosen on some data good on data it never saw?

Pure Python, no I/O. The input is, per candidate setting (a name) and per category of data,
a *tally*: something that adds up over categories and turns into a score, higher better
(``evaluation.nab.NabTally``: a NAB score over the other categories is the score of their
summed tallies, not a mean of per-category scores).

For each category: choose the candidate that scores best on all *other* categories (ties go
to the earlier candidate, so the baseline, listed first, wins a tie), then report that
candidate's score on the left-out category beside the baseline's and beside the best any
candidate got there (which is hindsight: a choice made looking at the answers). A setting
that wins only on the category it was found on shows as a fold where the chosen candidate
scores below the baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Tally(Protocol):
    def __add__(self, other, /): ...

    def score(self) -> float | None: ...


T = TypeVar("T", bound=Tally)


@dataclass(frozen=True)
class LocoFold:
    """One left-out category: the candidate the others chose and how it did here."""

    left_out: str
    chosen: str
    chosen_on_others: float | None
    chosen_here: float | None
    baseline_here: float | None
    best: str  # the best candidate on this category itself (hindsight)
    best_here: float | None


@dataclass(frozen=True)
class LocoResult:
    folds: list[LocoFold]
    chosen_total: float | None  # each fold's chosen candidate on its left-out category, pooled
    baseline_total: float | None  # the baseline on every category, pooled


def _total(tallies: Sequence[T]) -> T:
    total = tallies[0]
    for t in tallies[1:]:
        total = total + t
    return total


def _best(scores: Mapping[str, float | None]) -> str:
    """The highest score (the first of equals); a candidate without a score never wins."""
    ranked = [(s, -i, name) for i, (name, s) in enumerate(scores.items()) if s is not None]
    if not ranked:
        return next(iter(scores))
    return max(ranked)[2]


def leave_one_category_out(tallies: Mapping[str, Mapping[str, T]], baseline: str) -> LocoResult:
    """``tallies[candidate][category]``; every candidate must have every category, and at
    least two categories are needed (one to choose on, one to test on)."""
    if baseline not in tallies:
        raise ValueError(f"baseline {baseline!r} is not among the candidates {list(tallies)}")
    categories = list(tallies[baseline])
    if len(categories) < 2:
        raise ValueError(f"LOCO needs at least two categories, got {categories}")
    for name, per_category in tallies.items():
        if set(per_category) != set(categories):
            raise ValueError(f"candidate {name!r} has categories {sorted(per_category)}")
    order = [baseline] + [c for c in tallies if c != baseline]
    folds, chosen_tallies = [], []
    for left_out in categories:
        others = [c for c in categories if c != left_out]
        on_others = {c: _total([tallies[c][k] for k in others]).score() for c in order}
        chosen = _best(on_others)
        here = {c: tallies[c][left_out].score() for c in order}
        best = _best(here)
        folds.append(
            LocoFold(
                left_out, chosen, on_others[chosen], here[chosen], here[baseline], best, here[best]
            )
        )
        chosen_tallies.append(tallies[chosen][left_out])
    return LocoResult(
        folds,
        _total(chosen_tallies).score(),
        _total([tallies[baseline][k] for k in categories]).score(),
    )
