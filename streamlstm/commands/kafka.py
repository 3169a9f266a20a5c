"""``streamlstm kafka up|down|status``: the local single-node Kafka broker for development."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from streamlstm.adapters.devkafka import broker as devkafka
from streamlstm.adapters.devkafka import shared as devkafka_shared


def add_parser(sub) -> None:
    p = sub.add_parser(
        "kafka",
        help="start, stop or inspect the local development Kafka broker",
        description="Manage one local Apache Kafka broker (KRaft, single node) that outlives "
        "the command. Its jars are fetched from Maven Central once (needs Java 17+ and Maven) "
        "and cached in $STREAMLSTM_CACHE (default ~/.cache/streamlstm). Commands that need "
        "Kafka use $KAFKA_BOOTSTRAP or kafka.bootstrap from the config instead when set.",
        epilog="example: export KAFKA_BOOTSTRAP=$(streamlstm kafka up)",
    )
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])
    actions = p.add_subparsers(dest="kafka_command", metavar="ACTION")
    up = actions.add_parser(
        "up",
        help="start the broker unless it is running; print its bootstrap address",
        description="Start the local broker in the background (reusing its data across runs) "
        "unless one already answers, then print its bootstrap address (host:port).",
    )
    up.add_argument("--timeout", type=float, default=60, help="seconds to wait for readiness")
    up.set_defaults(func=run_up)
    down = actions.add_parser(
        "down",
        help="stop the broker",
        description="Stop the local broker gracefully "
        "(SIGTERM, then SIGKILL after 20 s). Its data stays for the next `up`.",
    )
    down.set_defaults(func=run_down)
    status = actions.add_parser(
        "status",
        help="print the broker's state as JSON",
        description="Print JSON: running, answers (metadata requests succeed), pid, "
        "bootstrap, data_dir.",
    )
    status.set_defaults(func=run_status)


def _quiet_client_logs() -> None:
    # kafka-python 3 logs every connection at INFO; the readiness probe would flood stderr.
    logger = logging.getLogger("kafka")
    if logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.WARNING)


def run_up(args: argparse.Namespace) -> int:
    _quiet_client_logs()
    try:
        print(devkafka_shared.up(timeout_s=args.timeout))
    except devkafka.DevKafkaError as exc:
        print(f"streamlstm kafka up: {exc}", file=sys.stderr)
        return 1
    return 0


def run_down(_args: argparse.Namespace) -> int:
    if not devkafka_shared.down():
        print("streamlstm kafka down: no local broker was running", file=sys.stderr)
    return 0


def run_status(_args: argparse.Namespace) -> int:
    _quiet_client_logs()
    state = devkafka_shared.status()
    print(json.dumps(state, indent=2))
    return 0 if state["running"] else 1
