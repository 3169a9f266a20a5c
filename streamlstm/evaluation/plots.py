"""One PNG showing a few scored streams: features, score vs threshold, alerts and labels.

matplotlib is imported inside ``plot_streams`` (importing this module stays cheap and
side-effect free) and drawn through a bare ``Figure`` on the Agg canvas, so no pyplot global
state or GUI backend is touched, whatever the caller's backend is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamlstm.evaluation.metrics import Event, events_from_labels

MAX_STREAMS = 6
MAX_FEATURES = 8  # more lines than this is unreadable in a 2-inch panel
MIN_SPAN = 0.003  # narrowest shaded span, as a fraction of the x range (~3 px)
ALERT_COLOUR = "tab:red"
QUALITY_COLOUR = "tab:orange"  # a stuck or missing sensor's alert: not a high score
LABEL_COLOUR = "tab:green"


@dataclass
class PlotStream:
    """One stream to draw; arrays aligned with ``ts`` (epoch s). ``threshold`` may be a scalar.

    ``events`` are the labelled anomalies (``events_from_labels`` / ``events_from_windows``).
    """

    name: str
    ts: np.ndarray
    score: np.ndarray
    threshold: np.ndarray | float
    in_alert: np.ndarray
    features: np.ndarray | None = None  # (n, f)
    feature_names: list[str] | None = None
    events: list[Event] = field(default_factory=list)
    # Readings inside a signal-quality alert (a stuck or missing sensor), a subset of
    # ``in_alert``: drawn in their own colour, as such an alert opens whatever the score.
    quality_alert: np.ndarray | None = None


def _date_numbers(ts: np.ndarray) -> np.ndarray:
    """Matplotlib date numbers (days), so lines and span bars share one float x unit."""
    import matplotlib.dates as mdates

    ms = (np.asarray(ts, dtype=np.float64) * 1e3).astype("int64").astype("datetime64[ms]")
    return np.asarray(mdates.date2num(ms), dtype=np.float64)


def _normalise(features: np.ndarray) -> np.ndarray:
    """Min-max per feature to [0, 1] so unlike units share one panel; constant -> 0.5."""
    x = np.asarray(features, dtype=np.float64)
    lo, hi = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(hi > lo, (x - lo) / span, 0.5)


def _event_mask(n: int, events: list[Event]) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for ev in events:
        mask[ev.start_idx : ev.end_idx + 1] = True
    return mask


def _shade(ax: Any, x: np.ndarray, mask: np.ndarray, colour: str, alpha: float) -> None:
    """One bar per run of ``mask``, full panel height, in a single artist (fast).

    Each bar is at least ``MIN_SPAN`` of the x range wide: a one-reading alert or label in a
    multi-day stream would otherwise be a sub-pixel sliver.
    """
    runs = events_from_labels(mask)
    if not runs:
        return
    half = float(np.median(np.diff(x))) / 2 if len(x) > 1 else 0.5
    min_w = MIN_SPAN * max(float(x[-1] - x[0]), 2 * half)
    bars = []
    for ev in runs:
        lo, hi = x[ev.start_idx] - half, x[ev.end_idx] + half
        w = max(hi - lo, min_w)
        bars.append(((lo + hi - w) / 2, w))
    ax.broken_barh(
        bars, (0, 1), transform=ax.get_xaxis_transform(), color=colour, alpha=alpha, linewidth=0
    )


def _draw_features(ax: Any, x: np.ndarray, s: PlotStream) -> None:
    if s.features is None or np.size(s.features) == 0:
        ax.text(0.5, 0.5, "no features", transform=ax.transAxes, ha="center", color="grey")
    else:
        feats = _normalise(np.asarray(s.features).reshape(len(x), -1)[:, :MAX_FEATURES])
        names = s.feature_names or [f"f{j}" for j in range(feats.shape[1])]
        for j in range(feats.shape[1]):
            ax.plot(x, feats[:, j], linewidth=0.8, label=names[j])
        ax.legend(loc="upper left", fontsize=7, ncol=min(feats.shape[1], 4), framealpha=0.6)
    _shade(ax, x, _event_mask(len(x), s.events), LABEL_COLOUR, 0.2)
    ax.set_ylabel("features\n(min-max)", fontsize=8)
    ax.set_title(s.name, fontsize=10, loc="left")


def _use_log(score: np.ndarray) -> bool:
    """Log y when scores are positive and span more than two decades (spikes flatten the rest)."""
    finite = score[np.isfinite(score)]
    return finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > 100


def _draw_score(ax: Any, x: np.ndarray, s: PlotStream) -> None:
    from matplotlib.patches import Patch

    score = np.asarray(s.score, dtype=np.float64)
    thr = np.broadcast_to(np.asarray(s.threshold, dtype=np.float64), score.shape)
    in_alert = np.asarray(s.in_alert, dtype=bool)
    quality = np.zeros_like(in_alert)
    if s.quality_alert is not None:
        quality = np.asarray(s.quality_alert, dtype=bool) & in_alert
    _shade(ax, x, in_alert & ~quality, ALERT_COLOUR, 0.25)
    _shade(ax, x, quality, QUALITY_COLOUR, 0.3)
    _shade(ax, x, _event_mask(len(x), s.events), LABEL_COLOUR, 0.2)
    ax.plot(x, score, color="tab:blue", linewidth=0.8, label="score")
    ax.plot(x, thr, color="black", linestyle="--", linewidth=0.9, label="threshold")
    if _use_log(score):
        ax.set_yscale("log")
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Patch(color=ALERT_COLOUR, alpha=0.25, label="alert"),
        Patch(color=LABEL_COLOUR, alpha=0.2, label="labelled"),
    ]
    if quality.any():
        handles.append(Patch(color=QUALITY_COLOUR, alpha=0.3, label="sensor alert (stuck/missing)"))
    ax.legend(handles=handles, loc="upper left", fontsize=7, ncol=5, framealpha=0.6)
    ax.set_ylabel("score", fontsize=8)


def plot_streams(
    path: str | Path,
    streams: list[PlotStream],
    title: str = "",
    width: float = 14.0,
    dpi: int = 90,
) -> Path:
    """Write one PNG: per stream (first ``MAX_STREAMS``) a features panel over a score panel.

    ``width`` (inches) and ``dpi`` set the size; the report uses small ones to stay light.
    """
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = streams[:MAX_STREAMS]
    if not shown:
        raise ValueError("nothing to plot")
    fig = Figure(figsize=(width, 3.6 * len(shown) + 0.6), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 * len(shown), 1, squeeze=False)[:, 0]
    for k, s in enumerate(shown):
        x = _date_numbers(s.ts)
        top, bottom = axes[2 * k], axes[2 * k + 1]
        bottom.sharex(top)
        _draw_features(top, x, s)
        _draw_score(bottom, x, s)
        for ax in (top, bottom):
            ax.xaxis_date()
            locator = mdates.AutoDateLocator()
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        top.tick_params(labelbottom=False)
    if title:
        fig.suptitle(title, fontsize=12)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
