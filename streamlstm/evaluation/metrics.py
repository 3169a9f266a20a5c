"""Evaluation of a scored run: event-wise detection metrics and a text report.

Pure numpy, no I/O. Inputs are one stream's detector output in time order (``ts`` epoch s,
``alert_open`` True on the reading where an alert opens, ``in_alert`` True inside an open
alert) and ground truth as ``Event``s (inclusive reading ranges), built from per-reading labels
(``events_from_labels``) or NAB-style time windows (``events_from_windows``).

Event-wise metrics (``event_metrics``), no point adjustment:
  * event *detected*: an alert opens while the event is under way, or, for an event shorter
    than the tolerance, within ``tolerance`` readings of its start: at an index in
    ``[start_idx, max(end_idx, start_idx + tolerance)]``. An opening after a long event's
    end is the return to normal (a drift that snaps back, a pump put right) being noticed,
    not the event: counting it let a detector that followed a slow fault all the way score
    it as found;
  * false positive: an opening outside every event's ``[start_idx, end_idx + tolerance]``;
    several openings inside one event count once and are never false positives, nor is
    one just after an event's end (it is caused by the event, whether or not it counts);
  * precision = detected / (detected + fp), i.e. matched openings with each event counted at
    most once; recall = detected / events; F1 their harmonic mean; 0/0 is reported as 0;
  * per-kind recall: kind -> detected/total (events without a kind under ``"unknown"``);
  * time to detect (TTD) per detected event: first matching opening - ``start_idx``, in
    readings and seconds, clipped at 0; median and p90 pooled over streams;
  * false alarms per stream-day: fp / sum of the streams' covered spans (ts[-1] - ts[0]) in
    days of 86 400 s;
  * point-adjusted F1, a comparison field only: point-wise over ``in_alert``, where an event
    with any ``in_alert`` reading counts all its readings as detected (it flatters long
    alerts, which is why the headline numbers are event-wise).

The NAB score is in ``evaluation.nab``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DAY_S = 86_400.0
UNKNOWN_KIND = "unknown"


@dataclass(frozen=True)
class Event:
    """A labelled anomaly covering readings ``start_idx..end_idx`` inclusive."""

    start_idx: int
    end_idx: int
    kind: str | None = None


@dataclass
class StreamEval:
    """One stream's detector output (aligned arrays, time order) and its labelled events."""

    stream_id: str
    ts: np.ndarray
    alert_open: np.ndarray
    in_alert: np.ndarray
    events: list[Event]

    def __post_init__(self) -> None:
        self.ts = np.asarray(self.ts, dtype=np.float64)
        self.alert_open = np.asarray(self.alert_open, dtype=bool)
        self.in_alert = np.asarray(self.in_alert, dtype=bool)
        n = len(self.ts)
        if len(self.alert_open) != n or len(self.in_alert) != n:
            raise ValueError(f"{self.stream_id}: ts, alert_open, in_alert lengths differ")
        for ev in self.events:
            if not 0 <= ev.start_idx <= ev.end_idx < n:
                raise ValueError(f"{self.stream_id}: event {ev} outside 0..{n - 1}")


@dataclass(frozen=True)
class KindRecall:
    detected: int
    total: int

    @property
    def recall(self) -> float:
        return _ratio(self.detected, self.total)


@dataclass
class EventReport:
    """Event-wise results; the definitions are in the module docstring."""

    tolerance: int
    n_streams: int
    n_events: int
    tp: int  # detected events
    fn: int  # missed events
    fp: int  # alert openings outside every event range
    precision: float
    recall: float
    f1: float
    per_kind: dict[str, KindRecall]
    ttd_readings: list[int]
    ttd_seconds: list[float]
    ttd_readings_median: float | None
    ttd_readings_p90: float | None
    ttd_seconds_median: float | None
    ttd_seconds_p90: float | None
    stream_days: float
    fa_per_stream_day: float | None  # None when no time span is covered
    pa_precision: float
    pa_recall: float
    pa_f1: float


def events_from_labels(
    label: Sequence[int] | np.ndarray, kind: Sequence[str | None] | np.ndarray | None = None
) -> list[Event]:
    """Maximal runs of ``label == 1``; an event's kind is the most common kind in its run."""
    lab = np.asarray(label).astype(bool)
    edges = np.diff(np.concatenate(([0], lab.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [Event(int(s), int(e), _run_kind(kind, s, e)) for s, e in zip(starts, ends, strict=True)]


def _run_kind(kind: Sequence[str | None] | np.ndarray | None, s: int, e: int) -> str | None:
    if kind is None:
        return None
    named = [str(k) for k in kind[s : e + 1] if k is not None and str(k) != ""]
    return Counter(named).most_common(1)[0][0] if named else None


def events_from_windows(
    ts: Sequence[float] | np.ndarray,
    windows: Sequence[tuple[float, float]],
    kind: str | None = None,
) -> list[Event]:
    """Readings with ``start_ts <= ts <= end_ts`` per window (as NAB's scorer selects them).

    Windows covering no reading are dropped; overlapping windows are rejected because both
    the event matching and NAB's scorer assume each reading is in at most one window.
    """
    t = np.asarray(ts, dtype=np.float64)
    out: list[Event] = []
    for start, end in sorted(windows):
        s = int(np.searchsorted(t, start, "left"))
        e = int(np.searchsorted(t, end, "right")) - 1
        if s > e:
            continue
        if out and s <= out[-1].end_idx:
            raise ValueError(f"window {(start, end)} overlaps the previous one")
        out.append(Event(s, e, kind))
    return out


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    p, r = _ratio(tp, n_pred), _ratio(tp, n_true)
    return p, r, _ratio(2 * p * r, p + r)


def _quantile(values: list[float] | list[int], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _match_stream(s: StreamEval, tolerance: int) -> tuple[list[int | None], int]:
    """First matching opening per event (None = missed) and the count of unmatched openings."""
    opens = np.flatnonzero(s.alert_open)
    matched = np.zeros(len(opens), dtype=bool)
    first: list[int | None] = []
    for ev in s.events:
        lo = int(np.searchsorted(opens, ev.start_idx, "left"))
        caused = int(np.searchsorted(opens, ev.end_idx + tolerance, "right"))
        until = max(ev.end_idx, ev.start_idx + tolerance)  # the last index that detects it
        found = int(np.searchsorted(opens, until, "right"))
        matched[lo:caused] = True
        first.append(int(opens[lo]) if found > lo else None)
    return first, int((~matched).sum())


def _point_adjusted(per_stream: Sequence[StreamEval]) -> tuple[float, float, float]:
    tp = fp = fn = 0
    for s in per_stream:
        truth = np.zeros(len(s.ts), dtype=bool)
        pred = s.in_alert.copy()
        for ev in s.events:
            span = slice(ev.start_idx, ev.end_idx + 1)
            truth[span] = True
            if s.in_alert[span].any():
                pred[span] = True
        tp += int((pred & truth).sum())
        fp += int((pred & ~truth).sum())
        fn += int((~pred & truth).sum())
    return _prf(tp, tp + fp, tp + fn)


def event_metrics(per_stream: Sequence[StreamEval], tolerance: int = 0) -> EventReport:
    """Event-wise detection metrics over all streams (definitions in the module docstring)."""
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    kinds: dict[str, list[int]] = {}
    ttd_r: list[int] = []
    ttd_s: list[float] = []
    n_events = detected = fp = 0
    days = 0.0
    for s in per_stream:
        first, n_fp = _match_stream(s, tolerance)
        fp += n_fp
        days += float(s.ts[-1] - s.ts[0]) / DAY_S if len(s.ts) else 0.0
        n_events += len(s.events)
        for ev, hit in zip(s.events, first, strict=True):
            tally = kinds.setdefault(ev.kind or UNKNOWN_KIND, [0, 0])
            tally[1] += 1
            if hit is None:
                continue
            tally[0] += 1
            detected += 1
            ttd_r.append(max(hit - ev.start_idx, 0))
            ttd_s.append(max(float(s.ts[hit] - s.ts[ev.start_idx]), 0.0))
    p, r, f1 = _prf(detected, detected + fp, n_events)
    pa_p, pa_r, pa_f1 = _point_adjusted(per_stream)
    return EventReport(
        tolerance=tolerance,
        n_streams=len(per_stream),
        n_events=n_events,
        tp=detected,
        fn=n_events - detected,
        fp=fp,
        precision=p,
        recall=r,
        f1=f1,
        per_kind={k: KindRecall(d, t) for k, (d, t) in sorted(kinds.items())},
        ttd_readings=ttd_r,
        ttd_seconds=ttd_s,
        ttd_readings_median=_quantile(ttd_r, 50),
        ttd_readings_p90=_quantile(ttd_r, 90),
        ttd_seconds_median=_quantile(ttd_s, 50),
        ttd_seconds_p90=_quantile(ttd_s, 90),
        stream_days=days,
        fa_per_stream_day=fp / days if days > 0 else None,
        pa_precision=pa_p,
        pa_recall=pa_r,
        pa_f1=pa_f1,
    )


# --- reporting -------------------------------------------------------------------------------


def report_to_dict(report: EventReport) -> dict:
    """JSON-friendly: plain ints/floats/None, per-kind as detected/total/recall."""
    out = {k: v for k, v in vars(report).items() if k != "per_kind"}
    out["per_kind"] = {
        k: {"detected": v.detected, "total": v.total, "recall": v.recall}
        for k, v in report.per_kind.items()
    }
    return out


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def format_report(report: EventReport, nab: dict[str, float] | None = None) -> str:
    """A compact text table of the headline numbers (and NAB scores when given)."""
    r = report
    lines = [
        f"events {r.n_events} in {r.n_streams} streams ({r.stream_days:.2f} stream-days), "
        f"tolerance {r.tolerance} readings",
        f"  detected {r.tp}  missed {r.fn}  false alarms {r.fp}",
        f"  precision {r.precision:.3f}  recall {r.recall:.3f}  F1 {r.f1:.3f}",
        f"  point-adjusted F1 {r.pa_f1:.3f} (P {r.pa_precision:.3f} R {r.pa_recall:.3f}; "
        "comparison only)",
        f"  time to detect: median {_fmt(r.ttd_readings_median)} readings / "
        f"{_fmt(r.ttd_seconds_median)} s, p90 {_fmt(r.ttd_readings_p90)} readings / "
        f"{_fmt(r.ttd_seconds_p90)} s",
        f"  false alarms per stream-day {_fmt(r.fa_per_stream_day, '.3f')}",
    ]
    if r.per_kind:
        width = max(len(k) for k in r.per_kind) + 2
        lines.append(f"  {'kind':<{width}}detected/total  recall")
        lines += [
            f"  {k:<{width}}{f'{v.detected}/{v.total}':<16}{v.recall:.3f}"
            for k, v in r.per_kind.items()
        ]
    if nab:
        lines.append("  NAB " + "  ".join(f"{k} {v:.1f}" for k, v in nab.items()))
    return "\n".join(lines)
