"""``streamlstm scale``: change the number of workers of a running ``streamlstm run``."""

from __future__ import annotations

import argparse
import json

from streamlstm.commands.common import add_config_args, load_config, operator_name


def add_parser(sub) -> None:
    p = sub.add_parser(
        "scale",
        help="change the number of running workers (partitions move by snapshot hand-off)",
        description="Write the wanted worker count to the checkpoint storage "
        "(checkpoint.dir, which every node of a cluster reaches); the running supervisor "
        "of the same config (kafka.group_id) picks it up within seconds and moves "
        "partitions by snapshot hand-off: each moved partition's old worker drains it "
        "(final snapshot and commit), its new worker restores it. Only workers whose "
        "partitions change restart; the count stays in force across supervisor restarts "
        "until --clear (back to ray.workers). At most one worker per input partition runs.",
        epilog="example: streamlstm scale -c configs/vitals.yaml --workers 3",
    )
    add_config_args(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--workers", type=int, help="the wanted number of workers (>= 1)")
    which.add_argument("--clear", action="store_true", help="drop the request: back to ray.workers")
    p.set_defaults(func=scale)


def scale(args: argparse.Namespace) -> int:
    from streamlstm.adapters.ops.scale_control import ScaleControl

    config = load_config(args)
    control = ScaleControl(config.checkpoint.dir, config.kafka.group_id)
    if args.clear:
        was = control.clear()
        print(json.dumps({"cleared": was, "workers": config.ray.workers, "file": control.where}))
        return 0
    if args.workers < 1:
        print(f"streamlstm scale: --workers must be >= 1, got {args.workers}")
        return 2
    record = control.request(args.workers, operator_name())
    print(json.dumps(record | {"file": control.where}))
    return 0
