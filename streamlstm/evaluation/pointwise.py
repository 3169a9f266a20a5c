"""Point-wise detection metrics and episode coverage: what the event-wise metrics cannot see.

Pure numpy, no I/O. The input is the same ``StreamEval`` the event-wise metrics take; only
its per-reading ``in_alert`` flags (an alert is open on that reading) and its labelled
``events`` are read, so both views come from one scoring path.

  * A reading is *anomalous* when it lies inside a labelled event, *normal* otherwise.
  * Point-wise precision, recall and F1 over all readings of all streams together, with
    ``in_alert`` as the prediction; no point adjustment.
  * False-alarm rate (FAR): normal readings inside an open alert / all normal readings.
  * Missed-alarm rate (MAR): anomalous readings outside every alert / all anomalous readings.
  * Coverage of an episode (a labelled event): the share of its readings during which an
    alert is open. Median and 10th percentile over episodes (p10: how badly the worst tenth
    is covered), also per anomaly kind; ``alerted`` counts episodes with any alert reading.

0/0 is reported as 0; coverage statistics of no episode are None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamlstm.evaluation.metrics import UNKNOWN_KIND, Event, StreamEval


@dataclass(frozen=True)
class Coverage:
    """Coverage of a set of episodes: how many, how many saw any alert, median and p10."""

    episodes: int
    alerted: int
    median: float | None
    p10: float | None


@dataclass(frozen=True)
class PointReport:
    """Point-wise results; the definitions are in the module docstring."""

    readings: int
    anomalous: int
    tp: int  # anomalous readings inside an alert
    fp: int  # normal readings inside an alert
    fn: int  # anomalous readings outside every alert
    precision: float
    recall: float
    f1: float
    far: float
    mar: float
    coverage: Coverage
    per_kind: dict[str, Coverage]


def episode_coverage(s: StreamEval) -> list[tuple[str, float]]:
    """(kind, share of the episode's readings inside an alert) per labelled event of ``s``."""
    return [
        (ev.kind or UNKNOWN_KIND, float(s.in_alert[ev.start_idx : ev.end_idx + 1].mean()))
        for ev in s.events
    ]


def _truth(s: StreamEval) -> np.ndarray:
    mask = np.zeros(len(s.ts), dtype=bool)
    for ev in s.events:
        mask[ev.start_idx : ev.end_idx + 1] = True
    return mask


def _ratio(num: int | float, den: int | float) -> float:
    return float(num / den) if den else 0.0


def summarise_coverage(shares: Sequence[float]) -> Coverage:
    """Coverage statistics of episodes with these shares (0..1 each)."""
    if not shares:
        return Coverage(0, 0, None, None)
    x = np.asarray(shares, dtype=np.float64)
    return Coverage(len(x), int((x > 0).sum()), float(np.median(x)), float(np.percentile(x, 10)))


def pointwise_metrics(per_stream: Sequence[StreamEval]) -> PointReport:
    """Point-wise metrics and coverage over all streams (definitions in the module docstring)."""
    tp = fp = fn = readings = anomalous = 0
    shares: list[tuple[str, float]] = []
    for s in per_stream:
        truth = _truth(s)
        tp += int((s.in_alert & truth).sum())
        fp += int((s.in_alert & ~truth).sum())
        fn += int((~s.in_alert & truth).sum())
        readings += len(truth)
        anomalous += int(truth.sum())
        shares += episode_coverage(s)
    p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    kinds = sorted({k for k, _ in shares})
    return PointReport(
        readings=readings,
        anomalous=anomalous,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=p,
        recall=r,
        f1=_ratio(2 * p * r, p + r),
        far=_ratio(fp, readings - anomalous),
        mar=_ratio(fn, anomalous),
        coverage=summarise_coverage([c for _, c in shares]),
        per_kind={k: summarise_coverage([c for kk, c in shares if kk == k]) for k in kinds},
    )


def scored_part(s: StreamEval, first: int) -> StreamEval:
    """``s`` without its first ``first`` readings (a protocol's training / warm-up part).

    Events are shifted to the new indices and clipped to what remains; an event wholly
    inside the dropped part is dropped with it.
    """
    if first < 0:
        raise ValueError("first must be >= 0")
    n = len(s.ts)
    events = [
        Event(max(ev.start_idx - first, 0), ev.end_idx - first, ev.kind)
        for ev in s.events
        if ev.end_idx >= first
    ]
    keep = slice(min(first, n), n)
    return StreamEval(s.stream_id, s.ts[keep], s.alert_open[keep], s.in_alert[keep], events)


# --- reporting -------------------------------------------------------------------------------


def _coverage_dict(c: Coverage) -> dict:
    return {"episodes": c.episodes, "alerted": c.alerted, "median": c.median, "p10": c.p10}


def pointwise_to_dict(r: PointReport) -> dict:
    """JSON-friendly: plain ints/floats/None; coverage and per-kind coverage as objects."""
    out = {k: v for k, v in vars(r).items() if k not in ("coverage", "per_kind")}
    out["coverage"] = _coverage_dict(r.coverage)
    out["per_kind"] = {k: _coverage_dict(c) for k, c in r.per_kind.items()}
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def format_pointwise(r: PointReport) -> str:
    """A compact text block, printed after the event-wise report."""
    c = r.coverage
    lines = [
        f"point-wise over {r.readings} readings ({r.anomalous} anomalous)",
        f"  precision {r.precision:.3f}  recall {r.recall:.3f}  F1 {r.f1:.3f}",
        f"  false-alarm rate {_pct(r.far)}  missed-alarm rate {_pct(r.mar)}",
        f"  coverage: {c.alerted}/{c.episodes} episodes with any alert, "
        f"median {_pct(c.median)}, p10 {_pct(c.p10)}",
    ]
    if len(r.per_kind) > 1 or (r.per_kind and UNKNOWN_KIND not in r.per_kind):
        width = max(len(k) for k in r.per_kind) + 2
        lines.append(f"  {'kind':<{width}}alerted/episodes  coverage median  p10")
        lines += [
            f"  {k:<{width}}{f'{v.alerted}/{v.episodes}':<18}{_pct(v.median):<17}{_pct(v.p10)}"
            for k, v in r.per_kind.items()
        ]
    return "\n".join(lines)
