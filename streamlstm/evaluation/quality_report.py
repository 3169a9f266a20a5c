"""Markdown tables for ``docs/quality.md`` from ``evaluation.metrics`` (pure text)."""

from __future__ import annotations

from collections.abc import Sequence

from streamlstm.evaluation.metrics import UNKNOWN_KIND, EventReport, StreamEval, event_metrics
from streamlstm.evaluation.pointwise import Coverage, PointReport, pointwise_metrics

Row = Sequence[str]


def table(header: Row, rows: Sequence[Row]) -> str:
    """A GitHub markdown table; the first column is left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _num(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def _ttd(r: EventReport) -> str:
    return (
        f"{_num(r.ttd_readings_median, '.0f')} / {_num(r.ttd_readings_p90, '.0f')} "
        f"({_num(r.ttd_seconds_median, '.0f')} s / {_num(r.ttd_seconds_p90, '.0f')} s)"
    )


SUMMARY_HEADER = (
    "detector",
    "events",
    "detected",
    "false alarms",
    "precision",
    "recall",
    "F1",
    "point-adjusted F1 (comparison)",
    "TTD median / p90, readings (seconds)",
    "false alarms / stream-day",
)


def summary_rows(reports: dict[str, EventReport], nab: dict[str, dict[str, float]]) -> list[Row]:
    """One row per detector; NAB columns appended when ``nab`` has the detector."""
    rows = []
    for name, r in reports.items():
        row = [
            name,
            str(r.n_events),
            str(r.tp),
            str(r.fp),
            _num(r.precision),
            _num(r.recall),
            f"**{r.f1:.3f}**",
            _num(r.pa_f1),
            _ttd(r),
            _num(r.fa_per_stream_day, ".2f"),
        ]
        if name in nab:
            row += [_num(nab[name].get(p), ".1f") for p in NAB_COLUMNS]
        rows.append(row)
    return rows


NAB_COLUMNS = ("standard", "reward_low_FP", "reward_low_FN")
NAB_HEADER = tuple(f"NAB {p}" for p in NAB_COLUMNS)


def per_kind_rows(reports: dict[str, EventReport]) -> tuple[Row, list[Row]]:
    """Recall per anomaly kind (rows) and detector (columns), as detected/total and ratio."""
    kinds = sorted({k for r in reports.values() for k in r.per_kind})
    header = ("anomaly kind", *reports)
    rows = []
    for kind in kinds:
        cells = [kind]
        for r in reports.values():
            kr = r.per_kind.get(kind)
            cells.append("–" if kr is None else f"{kr.recall:.2f} ({kr.detected}/{kr.total})")
        rows.append(cells)
    return header, rows


def per_series_rows(
    evals: dict[str, list[StreamEval]],
    nab_per_series: dict[str, dict[str, float | None]],
    tolerance: int,
) -> tuple[Row, list[Row]]:
    """Per stream: windows, then for each detector detected/windows, false alarms, NAB std."""
    names = list(evals)
    header = ["series", "windows"]
    for n in names:
        header += [f"{n}: detected", "FP", "NAB std"]
    first = evals[names[0]]
    rows = []
    for i, s in enumerate(first):
        cells = [s.stream_id, str(len(s.events))]
        for n in names:
            r = event_metrics([evals[n][i]], tolerance)
            cells += [
                f"{r.tp}/{r.n_events}",
                str(r.fp),
                _num(nab_per_series[n][s.stream_id], ".1f"),
            ]
        rows.append(cells)
    return tuple(header), rows


POINT_HEADER = (
    "detector",
    "readings (anomalous)",
    "precision",
    "recall",
    "F1",
    "false-alarm rate",
    "missed-alarm rate",
    "episodes with any alert",
    "coverage median / p10",
)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _coverage(c: Coverage) -> str:
    return f"{_pct(c.median)} / {_pct(c.p10)}"


def pointwise_rows(reports: dict[str, PointReport]) -> list[Row]:
    """One row per detector: point-wise P/R/F1, FAR, MAR and episode coverage."""
    return [
        [
            name,
            f"{r.readings} ({r.anomalous})",
            _num(r.precision),
            _num(r.recall),
            f"**{r.f1:.3f}**",
            _pct(r.far),
            _pct(r.mar),
            f"{r.coverage.alerted}/{r.coverage.episodes}",
            _coverage(r.coverage),
        ]
        for name, r in reports.items()
    ]


def coverage_kind_rows(reports: dict[str, PointReport]) -> tuple[Row, list[Row]]:
    """Coverage median / p10 per anomaly kind (rows) and detector (columns)."""
    kinds = sorted({k for r in reports.values() for k in r.per_kind})
    rows = []
    for kind in kinds:
        cells = [kind]
        for r in reports.values():
            c = r.per_kind.get(kind)
            cells.append("–" if c is None else _coverage(c))
        rows.append(cells)
    return ("anomaly kind", *reports), rows


def pointwise_tables(evals: dict[str, list[StreamEval]]) -> list[str]:
    """The point-wise table and, when episodes have kinds, coverage per kind (markdown)."""
    reports = {d: pointwise_metrics(e) for d, e in evals.items()}
    out = [
        "Point-wise (each reading: is an alert open?) and coverage (the share of each "
        "labelled episode's readings inside an open alert; median and p10 over episodes):",
        table(POINT_HEADER, pointwise_rows(reports)),
    ]
    header, rows = coverage_kind_rows(reports)
    if rows and [r[0] for r in rows] != [UNKNOWN_KIND]:
        out += ["Coverage median / p10 per anomaly kind:", table(header, rows)]
    return out
