"""Arguments and steps several commands share."""

from __future__ import annotations

import argparse
import getpass
import os

import torch
import yaml

from streamlstm import config as config_mod
from streamlstm.config import Config, ConfigError
from streamlstm.threads import set_threads

__all__ = ["set_threads"]  # with add_threads_arg: what a command needs for --threads


def add_config_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "-c",
        "--config",
        required=required,
        metavar="FILE",
        help="YAML config (default: the embedded vitals config)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set alerts.enter=5; a YAML mapping sets only the "
        "keys it names: --set 'training={seed: 1}' (repeatable)",
    )


def load_config(args: argparse.Namespace) -> Config:
    overrides = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError([f"--set {item}: expected KEY=VALUE"])
        overrides[key.strip()] = yaml.safe_load(raw)
    return config_mod.load(args.config, overrides)


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (cuda when present), cpu, cuda, cuda:1 ...",
    )


def add_tolerance_arg(parser: argparse.ArgumentParser) -> None:
    """``--tolerance``, the event-wise rule's one knob (``evaluation/metrics.py``)."""
    parser.add_argument(
        "--tolerance",
        type=int,
        default=10,
        help=(
            "readings from an event's start in which an opening still detects it, for an "
            "event shorter than that; a longer one must be found while under way (default 10)"
        ),
    )


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch intra-op threads (default: the CPUs this process may use, see README)",
    )


def operator_name() -> str:
    """Who ran the command, for the records it leaves (registry entries, scale requests)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container running as a bare uid)
        return f"uid {os.getuid()}"
