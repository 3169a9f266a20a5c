"""Per-stream evaluation rows from replay output, the printed summary and the plots of
``streamlstm evaluate`` and ``streamlstm replay``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from streamlstm.datafiles import FileData
from streamlstm.evaluation.metrics import (
    StreamEval,
    event_metrics,
    events_from_labels,
    events_from_windows,
    format_report,
)
from streamlstm.evaluation.plots import PlotStream, plot_streams
from streamlstm.evaluation.pointwise import format_pointwise, pointwise_metrics
from streamlstm.evaluation.replay import ReplayRow, rows_by_stream
from streamlstm.records import parse_ts


def windows_for(path: str, series: str) -> list[tuple[float, float]]:

    table = json.loads(Path(path).read_text())
    name = Path(series).name
    key = next((k for k in table if k == name or k.endswith("/" + name)), None)
    if key is None:
        raise SystemExit(f"streamlstm evaluate: {name} is not in {path}")
    return [(parse_ts(a), parse_ts(b)) for a, b in table[key]]


def stream_evals(
    rows: list[ReplayRow], data: FileData, windows: list[tuple[float, float]] | None = None
) -> list[StreamEval]:
    out = []
    for stream, rs in rows_by_stream(rows).items():
        ts = np.array([r.ts for r in rs])
        if windows is not None:
            events = events_from_windows(ts, windows)
        else:
            events = events_from_labels(
                [data.labels[r.offset] for r in rs], [data.kinds[r.offset] or None for r in rs]
            )
        out.append(
            StreamEval(
                stream,
                ts,
                np.array([r.alert_event == "open" for r in rs]),
                np.array([r.is_anomaly for r in rs]),
                events,
            )
        )
    return out


def summarise(
    rows: list[ReplayRow], data: FileData, tolerance: int, plot: str | None, features: list[str]
) -> str:
    per_stream = stream_evals(rows, data)
    text = format_report(event_metrics(per_stream, tolerance))
    text += "\n" + format_pointwise(pointwise_metrics(per_stream))
    if plot:
        plot_rows(plot, rows, data, features, per_stream)
        text += f"\nplot: {plot}"
    return text


def feature_names(config, data: FileData) -> list[str]:
    group = data.readings[0].group if data.readings else config.groups[0].name
    return list(config.group(group).features)


def plot_rows(
    path: str,
    rows: list[ReplayRow],
    data: FileData,
    features: list[str],
    per_stream: list[StreamEval] | None = None,
    max_streams: int = 4,
) -> None:
    """Readings, score, threshold, alert spans (and labelled events) of a few streams.

    Streams with labelled events come first, so the picture shows what was to be found.
    """

    by_stream: dict[str, list[ReplayRow]] = {}
    for r in rows:
        by_stream.setdefault(r.stream, []).append(r)
    events = {s.stream_id: s.events for s in per_stream or []}
    order = sorted(by_stream, key=lambda s: (-len(events.get(s, [])), s))[:max_streams]
    panels = []
    for stream in order:
        rs = by_stream[stream]
        panels.append(
            PlotStream(
                name=stream,
                ts=np.array([r.ts for r in rs]),
                score=np.array([r.score for r in rs]),
                threshold=rs[0].threshold,
                in_alert=np.array([r.is_anomaly for r in rs]),
                quality_alert=np.array([r.alert_kind == "signal_quality" for r in rs]),
                features=np.array([data.readings[r.offset].values for r in rs], dtype=float),
                feature_names=features,
                events=events.get(stream, []),
            )
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    plot_streams(
        path,
        panels,
        title="streamlstm: readings, score, threshold, alerts (red; stuck or missing sensor: "
        "orange), labelled anomalies (green)",
    )


def plot_each(
    folder: str,
    rows: list[ReplayRow],
    data: FileData,
    features: list[str],
    per_stream: list[StreamEval],
) -> list[Path]:
    """One PNG per stream: readings, score, threshold, alert spans, labelled events."""
    import re

    by_stream: dict[str, list[ReplayRow]] = {}
    for r in rows:
        by_stream.setdefault(r.stream, []).append(r)
    paths = []
    for s in per_stream:
        # stream ids may hold characters a file name must not
        path = Path(folder) / (re.sub(r"[^A-Za-z0-9_.-]", "_", s.stream_id) + ".png")
        plot_rows(str(path), by_stream[s.stream_id], data, features, [s], max_streams=1)
        paths.append(path)
    return paths
