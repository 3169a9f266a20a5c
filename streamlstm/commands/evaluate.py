"""``streamlstm evaluate``: detection quality on labelled data through the streaming path.

Also the summary and plot helpers ``streamlstm replay`` prints when its input has labels.
"""

from __future__ import annotations

import argparse
import json

from streamlstm.commands.common import (
    add_config_args,
    add_device_arg,
    add_threads_arg,
    add_tolerance_arg,
    load_config,
    pick_device,
    set_threads,
)
from streamlstm.commands.replay import check_train_rows
from streamlstm.evaluation.metrics import (
    event_metrics,
    format_report,
    report_to_dict,
)
from streamlstm.evaluation.nab import NabSeries, nab_report
from streamlstm.evaluation.pointwise import format_pointwise, pointwise_metrics, pointwise_to_dict
from streamlstm.evaluation.replay import score_file
from streamlstm.evaluation.retrain_replay import format_rounds, score_file_retraining
from streamlstm.evaluation.summary import (
    feature_names,
    plot_each,
    plot_rows,
    stream_evals,
    windows_for,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="event-wise and point-wise precision/recall/F1, coverage, time to detect and NAB "
        "score on labelled data",
        description="Score a labelled file through the same streaming path as the live worker "
        "and report event-wise detection quality (no point adjustment), per-kind recall, time "
        "to detect, false alarms per stream-day, point-wise precision/recall/F1, false- and "
        "missed-alarm rates, the coverage of each labelled episode by open alerts and, with "
        "--windows, the NAB score.",
        epilog="example: streamlstm evaluate -c configs/univariate.yaml --input series.csv "
        "--windows combined_windows.json --plot out/series.png",
    )

    add_config_args(p)
    p.add_argument("--input", required=True, help="CSV with a label column, or a series")
    p.add_argument("--windows", help="NAB-style windows JSON {file name: [[start, end], ...]}")
    p.add_argument("--model", help="model directory (default: train on --train-fraction)")
    p.add_argument("--train-fraction", type=float, default=0.15)
    p.add_argument(
        "--train-rows",
        type=int,
        metavar="N",
        help="without --model: train on the first N readings of each stream instead",
    )
    add_tolerance_arg(p)
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
    add_threads_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    set_threads(args.threads)
    config = load_config(args)
    rounds = through = None
    if args.retrain_every < 0:
        raise SystemExit("streamlstm evaluate: --retrain-every must be >= 0")
    if args.through_kafka and args.retrain_every:
        raise SystemExit("streamlstm evaluate: --through-kafka and --retrain-every are exclusive")
    check_train_rows(args.train_rows)
    if args.train_rows and (args.through_kafka or args.retrain_every):
        raise SystemExit("streamlstm evaluate: --train-rows goes with a plain replay only")
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
        # lazy: Ray and Kafka load only when this command runs, not for --help
        from streamlstm.adapters.dev.kafka_eval import score_through_kafka

        through = score_through_kafka(**source, bootstrap=args.bootstrap)
        data, rows = through.data, through.rows
    elif args.retrain_every:
        data, rows, rounds = score_file_retraining(**source, every=args.retrain_every)
    else:
        data, rows, _ = score_file(**source, train_rows=args.train_rows)
    windows = windows_for(args.windows, args.input) if args.windows else None
    per_stream = stream_evals(rows, data, windows)
    report = event_metrics(per_stream, args.tolerance)
    points = pointwise_metrics(per_stream)  # the same alert flags, seen reading by reading
    nab = None
    if windows is not None:
        nab = nab_report([NabSeries(s.ts, s.alert_open, windows, s.stream_id) for s in per_stream])
    if args.json:
        extra = {} if rounds is None else {"retrain_rounds": [r.to_dict() for r in rounds]}
        if through is not None:
            extra["through_kafka"] = through.summary
        pointwise = pointwise_to_dict(points)
        print(json.dumps({**report_to_dict(report), "pointwise": pointwise, "nab": nab, **extra}))
    else:
        if through is not None:
            print(through.describe())
        print(format_report(report, nab))
        print(format_pointwise(points))
        if rounds is not None:
            print(format_rounds(rounds))
    if args.plot:
        plot_rows(args.plot, rows, data, feature_names(config, data), per_stream)
        print(f"plot: {args.plot}")
    if args.plot_dir:
        paths = plot_each(args.plot_dir, rows, data, feature_names(config, data), per_stream)
        if not args.json:  # keep --json output parseable
            print(f"plots: {len(paths)} in {args.plot_dir}")
    return 0
