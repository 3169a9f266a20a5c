"""Leave-one-category-out selection on plain numbers (no NAB data)."""

from __future__ import annotations

import pytest

from streamlstm.evaluation.loco import leave_one_category_out
from streamlstm.evaluation.nab import NabTally


def _scores(**per_category: float) -> dict[str, NabTally]:
    """Tallies of 10 windows each (null 0, perfect 10), so a score s is raw s / 10."""
    return {k: NabTally(raw=s / 10, null=0.0, perfect=10.0) for k, s in per_category.items()}


def test_a_setting_that_wins_only_where_it_was_found_loses_on_the_left_out_category() -> None:
    tallies = {
        "today": _scores(a=50, b=50, c=50),
        "overfit": _scores(a=95, b=30, c=45),  # a big gain on a, worse elsewhere
        "steady": _scores(a=55, b=55, c=55),
    }
    result = leave_one_category_out(tallies, "today")
    by_fold = {f.left_out: f for f in result.folds}
    assert [f.left_out for f in result.folds] == ["a", "b", "c"]
    assert (by_fold["a"].chosen, by_fold["a"].chosen_here) == ("steady", pytest.approx(55))
    assert by_fold["a"].chosen_on_others == pytest.approx(55)
    assert (by_fold["a"].best, by_fold["a"].best_here) == ("overfit", pytest.approx(95))
    # Chosen on a + c (where a's gain dominates), it loses to the baseline on b and c.
    assert by_fold["b"].chosen == "overfit" and by_fold["b"].chosen_on_others == pytest.approx(70)
    assert by_fold["b"].chosen_here == pytest.approx(30)
    assert by_fold["b"].baseline_here == pytest.approx(50)
    assert by_fold["c"].chosen == "overfit" and by_fold["c"].chosen_here == pytest.approx(45)
    assert result.chosen_total == pytest.approx(100 * 13 / 30)
    assert result.baseline_total == pytest.approx(50)


def test_other_categories_are_scored_pooled_not_averaged() -> None:
    # b has ten times a's windows: on a + b pooled "wide" wins, on a mean "narrow" would.
    tallies = {
        "today": {"a": NabTally(0.5, 0, 1), "b": NabTally(5, 0, 10), "c": NabTally(0, 0, 1)},
        "narrow": {"a": NabTally(1, 0, 1), "b": NabTally(4, 0, 10), "c": NabTally(0, 0, 1)},
        "wide": {"a": NabTally(0, 0, 1), "b": NabTally(6, 0, 10), "c": NabTally(1, 0, 1)},
    }
    fold_c = leave_one_category_out(tallies, "today").folds[2]
    assert fold_c.left_out == "c" and fold_c.chosen == "wide"
    assert fold_c.chosen_on_others == pytest.approx(100 * 6 / 11)


def test_a_tie_keeps_the_baseline() -> None:
    tallies = {"today": _scores(a=40, b=60), "same": _scores(a=40, b=60)}
    assert {f.chosen for f in leave_one_category_out(tallies, "today").folds} == {"today"}


def test_inputs_that_cannot_be_folded_are_refused() -> None:
    with pytest.raises(ValueError, match="two categories"):
        leave_one_category_out({"today": _scores(a=1)}, "today")
    with pytest.raises(ValueError, match="'other' has categories"):
        leave_one_category_out({"today": _scores(a=1, b=2), "other": _scores(a=1)}, "today")
    with pytest.raises(ValueError, match="baseline"):
        leave_one_category_out({"x": _scores(a=1, b=2)}, "today")


def test_nab_tallies_add_up_and_have_no_score_without_windows() -> None:
    total = NabTally(1, -2, 3) + NabTally(2, -1, 1)
    assert total == NabTally(3, -3, 4)
    assert total.score() == pytest.approx(100 * 6 / 7)
    assert NabTally().score() is None
