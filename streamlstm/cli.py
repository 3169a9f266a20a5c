"""The ``streamlstm`` command line. Each subcommand lives in ``streamlstm.commands.<name>``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from streamlstm.adapters.kafka.login import KafkaAuthFailed
from streamlstm.adapters.ops.logs import VERBOSE_ENV, quiet_third_party
from streamlstm.config import ConfigError
from streamlstm.datafiles import InputFileError

# Order is the order in --help.
COMMANDS = [
    "demo",
    "simulate",
    "train",
    "retrain",
    "models",
    "replay",
    "evaluate",
    "quality",
    "run",
    "scale",
    "snapshots",
    "kafka",
    "validate_config",
    "bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamlstm",
        description="Streaming anomaly detection for sensor and patient-monitor streams: "
        "Kafka in, Ray workers with carried LSTM-autoencoder state, alerts out.",
        epilog="Start with `streamlstm demo`. Every command has --help.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"streamlstm.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"streamlstm.commands.{name}":
                raise
            continue  # a command not built yet
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"  # Ray's worker processes read it (adapters/ops/logs.py)
    quiet_third_party(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"streamlstm: {exc}", file=sys.stderr)
        return 2
    except InputFileError as exc:
        print(f"streamlstm: {exc}", file=sys.stderr)
        return 2
    except KafkaAuthFailed as exc:  # one line naming the config keys, not a traceback
        print(f"streamlstm: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
