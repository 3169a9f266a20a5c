"""The NAB section of ``docs/quality.md`` (pure text from the runs of ``quality_nab``):
pooled and per-series summaries, per-category scores and the leave-one-category-out tables."""

from __future__ import annotations

from streamlstm.evaluation.loco import LocoResult, leave_one_category_out
from streamlstm.evaluation.metrics import StreamEval, event_metrics
from streamlstm.evaluation.nab import LOSSES, NabTally, nab_report
from streamlstm.evaluation.quality import DETECTORS
from streamlstm.evaluation.quality_nab import (
    NAB_CONFIG,
    TODAY,
    NabData,
    NabScored,
    category_tallies,
    nab_series_of,
)
from streamlstm.evaluation.quality_report import (
    NAB_COLUMNS,
    NAB_HEADER,
    SUMMARY_HEADER,
    Row,
    per_series_rows,
    pointwise_tables,
    summary_rows,
    table,
)


def _score(tallies: list[NabTally]) -> str:
    score = sum(tallies, NabTally()).score()
    return "–" if score is None else f"{score:.1f}"


def _mode_cells(evals: list[StreamEval], nab: NabData, tolerance: int) -> list[str]:
    by_profile = {p: category_tallies(evals, nab, p) for p in NAB_COLUMNS}
    fa = event_metrics(evals, tolerance).fa_per_stream_day
    cells = [_score(list(by_profile[p].values())) for p in NAB_COLUMNS]
    return [f"**{cells[0]}**", *cells[1:], "–" if fa is None else f"{fa:.2f}"]


def _categories(nab: NabData) -> list[tuple[str, list[str]]]:
    """(category, its series) in first-seen order, then ("all", every series)."""
    groups: dict[str, list[str]] = {}
    for stream, category in nab.categories.items():
        groups.setdefault(category, []).append(stream)
    return [*groups.items(), ("all", list(nab.categories))]


def category_rows(scored: NabScored, tolerance: int) -> tuple[Row, list[Row]]:
    """Per category and over all: pooled and per-series NAB scores and false alarms/day."""
    header = ["category", "series", "windows"]
    for mode in ("pooled", "one model per series"):
        header += [f"{mode}: NAB {NAB_COLUMNS[0]}", *NAB_COLUMNS[1:], "false alarms / stream-day"]
    pooled = scored.pooled.evals(DETECTORS[0])
    nab = scored.nab
    rows = []
    for name, streams in _categories(nab):
        keep = set(streams)
        windows = sum(len(nab.windows.get(s, [])) for s in streams)
        cells = [name, str(len(streams)), str(windows)]
        for evals in (pooled, scored.alone):
            cells += _mode_cells([s for s in evals if s.stream_id in keep], nab, tolerance)
        rows.append(cells)
    return tuple(header), rows


def _loss_cells(evals: list[StreamEval], nab: NabData) -> list[str]:
    total = sum(category_tallies(evals, nab).values(), NabTally())
    losses = total.losses()
    if losses is None:
        return ["–"] * (1 + len(LOSSES))
    return [f"**{total.score():.1f}**", *(f"{losses[name]:.1f}" for name in LOSSES)]


def loss_rows(scored: NabScored) -> tuple[Row, list[Row]]:
    """Per category and over all, pooled and per series: the NAB standard score and the
    points of the 100 it falls short by, split into false alarms, missed windows and late
    detections (``NabTally.losses``)."""
    header = ["category"]
    for mode in ("pooled", "one model per series"):
        header += [f"{mode}: NAB standard", *(f"lost to {name}" for name in LOSSES)]
    nab = scored.nab
    rows = []
    for name, streams in _categories(nab):
        cells, keep = [name], set(streams)
        for evals in (scored.pooled.evals(DETECTORS[0]), scored.alone):
            cells += _loss_cells([s for s in evals if s.stream_id in keep], nab)
        rows.append(cells)
    return tuple(header), rows


def loss_text(scored: NabScored) -> list[str]:
    header, rows = loss_rows(scored)
    return [
        "Where the points go (streaming LSTM-AE, NAB standard; `NabTally.losses`): of the 100 "
        "a detector scores that finds every window at its start and nothing else, the points "
        "lost to false alarms (each opening outside the windows, weighted as NAB weighs it), "
        "to missed windows (each costs its credit and its miss penalty) and to detections "
        "that came later in their window than its start. Score and losses add up to 100 "
        "(less a window wholly inside NAB's probationary period, which NAB leaves unscored).",
        table(header, rows),
    ]


def loco_result(scored: NabScored) -> LocoResult:
    tallies = {
        name: category_tallies(run.evals(DETECTORS[0]), scored.nab)
        for name, run in scored.candidates.items()
    }
    return leave_one_category_out(tallies, TODAY)


def change_loco_rows(scored: NabScored, undone: dict[str, str]) -> tuple[Row, list[Row]]:
    """Per listed change (``undone``: candidate name -> change), a LOCO of keeping it against
    undoing it: per left-out category, what the other categories choose and what keeping
    it gains on the left-out one (NAB standard, keep minus undo)."""
    today = category_tallies(scored.candidates[TODAY].evals(DETECTORS[0]), scored.nab)
    categories = list(today)
    header = ("change", *(f"{c}: chosen on the others (keep − undo here)" for c in categories))
    header += ("kept by the others / helps the left-out",)
    rows = []
    for name, change in undone.items():
        undo = category_tallies(scored.candidates[name].evals(DETECTORS[0]), scored.nab)
        folds = leave_one_category_out({TODAY: today, name: undo}, TODAY).folds
        cells, kept, helps = [change], 0, 0
        for f in folds:
            gain = None
            if f.baseline_here is not None and undo[f.left_out].score() is not None:
                gain = f.baseline_here - undo[f.left_out].score()
            kept += f.chosen == TODAY
            helps += gain is not None and gain > 0
            choice = "keep" if f.chosen == TODAY else "undo"
            cells.append(f"{choice} ({'–' if gain is None else f'{gain:+.1f}'})")
        rows.append([*cells, f"{kept}/{len(folds)} / {helps}/{len(folds)}"])
    return header, rows


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def loco_text(scored: NabScored, undone: dict[str, str]) -> list[str]:
    """The LOCO tables (all candidates; each change on its own), totals and candidates."""
    if len(scored.candidates) < 2 or len(set(scored.nab.categories.values())) < 2:
        return ["Leave-one-category-out: needs two candidates and two categories; skipped."]
    result = loco_result(scored)
    header = (
        "left-out category",
        "chosen on the other categories",
        "its NAB std there",
        "its NAB std on the left-out one",
        f"{TODAY} on the left-out one",
        "best on the left-out one (hindsight)",
    )
    rows = [
        [
            f.left_out,
            f.chosen,
            _num(f.chosen_on_others),
            f"**{_num(f.chosen_here)}**",
            _num(f.baseline_here),
            f"{f.best} {_num(f.best_here)}",
        ]
        for f in result.folds
    ]
    legend = "; ".join(
        f"*{name}*: `{overrides or 'no override'}`" for name, overrides in scored.overrides.items()
    )
    return [
        "Leave-one-category-out (`evaluation/loco.py`; streaming LSTM-AE, pooled, NAB "
        "standard): for each category, the candidate setting that scores best on the *other* "
        "categories, scored on the left-out one. A setting kept only because it helps the "
        "category it was found on shows as a fold where the chosen candidate falls below "
        f"{TODAY}.",
        table(header, rows),
        f"Over all folds (each left-out category scored with the candidate chosen without "
        f"it, pooled): **{_num(result.chosen_total)}**; {TODAY} everywhere: "
        f"{_num(result.baseline_total)}.",
        f"Candidates: {legend}.",
        *_change_loco_text(scored, undone),
    ]


def _change_loco_text(scored: NabScored, undone: dict[str, str]) -> list[str]:
    if not undone:
        return []
    header, rows = change_loco_rows(scored, undone)
    return [
        "Each listed config change on its own (keep it or undo it, chosen on the other "
        "categories; in brackets what keeping it gains on the left-out category). A change "
        "that holds up is kept by the other categories and helps the left-out one in every "
        "fold:",
        table(header, rows),
    ]


ALONE = "streaming LSTM-AE, one model per series"


def nab_section(scored: NabScored, undone: dict[str, str], tolerance: int, images: str) -> str:
    """The report's NAB section: pooled summary, categories, LOCO, per series, plot links."""
    pooled = scored.pooled
    evals = {d: pooled.evals(d) for d in pooled.by_detector}
    reports = {d: event_metrics(e, tolerance) for d, e in evals.items()}
    order = {s.stream_id: i for i, s in enumerate(evals[DETECTORS[0]])}
    evals[ALONE] = sorted(scored.alone, key=lambda s: order[s.stream_id])
    reports[ALONE] = event_metrics(evals[ALONE], tolerance)
    nab, per_series = {}, {}
    for d, e in evals.items():
        series = nab_series_of(e, scored.nab)
        nab[d] = nab_report(series)
        # A series without windows has no NAB score of its own (a perfect detector scores 0
        # there too); it still counts in the pooled score and the false-alarm columns.
        per_series[d] = {s.name: nab_report([s])["standard"] if s.windows else None for s in series}
    cat_header, cat_rows = category_rows(scored, tolerance)
    series_header, series_rows = per_series_rows(evals, per_series, tolerance)
    return "\n\n".join(
        [
            f"## NAB development subset ({len(scored.nab.files)} series)",
            f"Config `configs/{NAB_CONFIG}` unchanged for every series (threshold fixed by the "
            "config, never fitted to labels). *Pooled* (the first three rows): one model group, "
            "shared weights trained on NAB's probationary period of every series (its first "
            "15 %, at most 750 readings: nothing the score counts), per-series state, "
            f"normalisation and calibration. *{ALONE}*: each series trained and replayed on "
            "its own (`streamlstm replay --train-rows`), as a user replays one file. NAB "
            "scores are normalised over all series (null detector 0, perfect 100); each alert "
            "opening is one NAB detection. The config sets `detector.score_inputs`, so the "
            "LSTM-AE rows also score each reading's distance from the normaliser's forecast, "
            "and `detector.season_periods_s`, so that forecast holds a daily and a weekly "
            "profile, and `detector.split_scale`, so readings below the forecast are measured "
            "in their own std (a two-piece scale).",
            table(SUMMARY_HEADER + NAB_HEADER, summary_rows(reports, nab)),
            "Per NAB category (streaming LSTM-AE), pooled and with one model per series:",
            table(cat_header, cat_rows),
            *loss_text(scored),
            *loco_text(scored, undone),
            *pointwise_tables(evals),
            "Per series (NAB standard score normalised on that series alone):",
            table(series_header, series_rows),
            f"Plots (streaming LSTM-AE, pooled): {images}",
        ]
    )
