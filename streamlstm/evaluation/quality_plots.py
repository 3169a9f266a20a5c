"""The quality report's plots: small PNGs of scored streams (``evaluation.plots`` draws them)."""

from __future__ import annotations

from pathlib import Path

from streamlstm.evaluation.plots import PlotStream, plot_streams
from streamlstm.evaluation.quality import DETECTORS, SuiteRun, Traced

SMALL = (9.0, 60)  # width (inches), dpi: light images for the repository


def plot_one(traced: Traced, path: Path, threshold: float, names: list[str] | None = None) -> Path:
    """One stream: its readings (min-max) with labelled spans, its score with alert spans."""
    s = traced.eval
    panel = PlotStream(
        s.stream_id, s.ts, traced.score, threshold, s.in_alert, traced.values, names, s.events
    )
    return plot_streams(path, [panel], f"{s.stream_id}: alerts red, labelled green", *SMALL)


def plot_suite(
    suite: SuiteRun, path: Path, threshold: float, kind: str, feature_names: list[str]
) -> Path:
    """The two streams with the most labelled events, under the streaming detector."""
    traced = sorted(suite.by_detector[DETECTORS[0]], key=lambda t: -len(t.eval.events))[:2]
    panels = [
        PlotStream(
            t.eval.stream_id,
            t.eval.ts,
            t.score,
            threshold,
            t.eval.in_alert,
            t.values,
            feature_names,
            t.eval.events,
        )
        for t in traced
    ]
    return plot_streams(path, panels, f"synthetic {kind}: alerts red, labelled green", *SMALL)
