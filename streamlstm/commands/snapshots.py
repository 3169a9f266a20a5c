"""``streamlstm snapshots``: an operator's actions on a partition's snapshot position."""

from __future__ import annotations

import argparse
import json
import time

from streamlstm.commands.common import add_config_args, load_config, operator_name


def add_parser(sub) -> None:
    p = sub.add_parser(
        "snapshots",
        help="move a partition's snapshot position past an offset; show its history",
        description="A partition's position is its newest snapshot's next offset (the "
        "workers seek there on start; Kafka's group offsets do not move it). `skip` writes a "
        "snapshot with the same state whose next offset is --offset + 1, under a newly "
        "claimed fencing generation, and records who, when and why in the partition's "
        "history. Stop `streamlstm run` first: a worker still holding the partition is "
        "fenced (it stops, writes nothing) and is not restarted until `run` starts again. "
        "The skipped records are not scored and not dead-lettered; they stay in the topic.",
        epilog="example: streamlstm snapshots skip -c configs/vitals.yaml --topic icu.vitals "
        "--partition 3 --offset 18452 --reason 'crashes the decoder, see INC-42'",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    skip = actions.add_parser("skip", help="move the position past --offset")
    show = actions.add_parser("history", help="print the partition's recorded actions")
    for q in (skip, show):
        add_config_args(q)
        q.add_argument("--topic", required=True)
        q.add_argument("--partition", type=int, required=True)
    skip.add_argument("--offset", type=int, required=True, help="the last offset to skip")
    skip.add_argument("--reason", default="", help="why (kept in the history)")
    skip.set_defaults(func=skip_past)
    show.set_defaults(func=show_history)


def _store(args: argparse.Namespace):
    from streamlstm.adapters.ops.storage import SnapshotStore

    config = load_config(args)
    return SnapshotStore(config.checkpoint.dir, config.checkpoint.keep)


def skip_past(args: argparse.Namespace) -> int:
    store, tp = _store(args), (args.topic, args.partition)
    saved = store.load(tp)
    blobs, position = saved if saved is not None else ({}, 0)
    if args.offset < position:
        print(
            f"streamlstm snapshots skip: {args.topic}:{args.partition} is at offset {position} "
            f"already, past --offset {args.offset}; nothing to skip"
        )
        return 2
    generation = store.claim(tp)  # a worker still on the partition writes nothing more
    store.save(
        tp, _skipped_in_ledger(blobs, args.offset + 1 - position), args.offset + 1, generation
    )
    entry = {
        "action": "skip",
        "at": time.time(),
        "by": operator_name(),
        "from_offset": position,
        "to_offset": args.offset + 1,
        "skipped_records": args.offset + 1 - position,
        "generation": generation,
        "reason": args.reason,
        "had_snapshot": saved is not None,
    }
    store.record(tp, entry)
    print(json.dumps({"topic": args.topic, "partition": args.partition} | entry))
    return 0


def show_history(args: argparse.Namespace) -> int:
    for entry in _store(args).history((args.topic, args.partition)):
        print(json.dumps(entry, sort_keys=True))
    return 0


def _skipped_in_ledger(blobs: dict[str, bytes], skipped: int) -> dict[str, bytes]:
    """The partition's outcome counts (``stream/ledger.py``) with the skipped records: its
    records below the new position are then counted or skipped, each once."""
    from streamlstm.stream.ledger import LEDGER_BLOB, Ledger

    ledger = Ledger.from_blob(blobs[LEDGER_BLOB]) if LEDGER_BLOB in blobs else Ledger()
    ledger.add("skipped", (), skipped)
    return blobs | {LEDGER_BLOB: ledger.to_blob()}
