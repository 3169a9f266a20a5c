"""``streamlstm evaluate``: detection quality on labelled data through the streaming path.

Also the summary and plot helpers ``streamlstm replay`` prints when its input has labels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from streamlstm.datafiles import FileData
from streamlstm.evaluate import (
    StreamEval,
    event_metrics,
    events_from_labels,
    events_from_windows,
    format_report,
    report_to_dict,
)
from streamlstm.nab import NabSeries, nab_report
from streamlstm.pipeline import ReplayRow, rows_by_stream


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="event-wise precision/recall/F1, time to detect and NAB score on labelled data",
        description="Score a labelled file through the same streaming path as the live worker "
        "and report event-wise detection quality (no point adjustment), per-kind recall, time "
        "to detect, false alarms per stream-day and, with --windows, the NAB score.",
        epilog="example: streamlstm evaluate -c configs/univariate.yaml --input series.csv "
        "--windows combined_windows.json --plot out/series.png",
    )
    from streamlstm.commands.common import add_config_args, add_device_arg

    add_config_args(p)
    p.add_argument("--input", required=True, help="CSV with a label column, or a series")
    p.add_argument("--windows", help="NAB-style windows JSON {file name: [[start, end], ...]}")
    p.add_argument("--model", help="model directory (default: train on --train-fraction)")
    p.add_argument("--train-fraction", type=float, default=0.15)
    p.add_argument(
        "--tolerance",
        type=int,
        default=10,
        help="readings after an event in which an opening still counts",
    )
    p.add_argument("--plot", help="PNG of up to 4 streams")
    p.add_argument("--plot-dir", help="folder for one PNG per stream (<stream>.png)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--retrain-every",
        type=int,
        default=0,
        metavar="N",
        help="evaluate as deployed: every N readings replayed (all streams together) retrain on "
        "the preceding normal data (retrain.lookback_s, readings inside this replay's alerts "
        "left out), gate and hot-swap after the shadow warm-up, as live (default 0: off)",
    )
    p.add_argument(
        "--through-kafka",
        action="store_true",
        help="replay the file through a real Kafka broker into the `streamlstm run` workers "
        "(Ray actors) and rebuild the report from their alerts topic; the same report as "
        "offline. Starts a local broker unless --bootstrap, kafka.bootstrap or "
        "$KAFKA_BOOTSTRAP names one (there, fresh topics are made and deleted after)",
    )
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="with --through-kafka: the Kafka")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamlstm.commands.common import load_config, pick_device
    from streamlstm.commands.replay import score_file

    config = load_config(args)
    rounds = through = None
    if args.retrain_every < 0:
        raise SystemExit("streamlstm evaluate: --retrain-every must be >= 0")
    if args.through_kafka and args.retrain_every:
        raise SystemExit("streamlstm evaluate: --through-kafka and --retrain-every are exclusive")
    # The three ways to score the file share their inputs; each returns the replay rows.
    source = {
        "config": config,
        "path": args.input,
        "model_dir": args.model,
        "train_fraction": args.train_fraction,
        "device": pick_device(args.device),
        "quiet": args.json,
    }
    if args.through_kafka:
        from streamlstm.adapters.kafka_eval import score_through_kafka

        through = score_through_kafka(**source, bootstrap=args.bootstrap)
        data, rows = through.data, through.rows
    elif args.retrain_every:
        from streamlstm.commands.retrain_eval import score_file_retraining

        data, rows, rounds = score_file_retraining(**source, every=args.retrain_every)
    else:
        data, rows = score_file(**source)
    windows = _windows_for(args.windows, args.input) if args.windows else None
    per_stream = stream_evals(rows, data, windows)
    report = event_metrics(per_stream, args.tolerance)
    nab = None
    if windows is not None:
        nab = nab_report([NabSeries(s.ts, s.alert_open, windows, s.stream_id) for s in per_stream])
    if args.json:
        extra = {} if rounds is None else {"retrain_rounds": [r.to_dict() for r in rounds]}
        if through is not None:
            extra["through_kafka"] = through.summary
        print(json.dumps({**report_to_dict(report), "nab": nab, **extra}))
    else:
        if through is not None:
            print(through.describe())
        print(format_report(report, nab))
        if rounds is not None:
            from streamlstm.retrain_replay import format_rounds

            print(format_rounds(rounds))
    if args.plot:
        plot_rows(args.plot, rows, data, feature_names(config, data), per_stream)
        print(f"plot: {args.plot}")
    if args.plot_dir:
        paths = plot_each(args.plot_dir, rows, data, feature_names(config, data), per_stream)
        if not args.json:  # keep --json output parseable
            print(f"plots: {len(paths)} in {args.plot_dir}")
    return 0


def _windows_for(path: str, series: str) -> list[tuple[float, float]]:
    from streamlstm.records import parse_ts

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
    from streamlstm.plots import PlotStream, plot_streams

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
                features=np.array([data.readings[r.offset].values for r in rs], dtype=float),
                feature_names=features,
                events=events.get(stream, []),
            )
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    plot_streams(
        path,
        panels,
        title="streamlstm: readings, score, threshold, alerts (red), labelled anomalies (green)",
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
