"""``streamlstm validate-config``: print the effective config or name what is wrong."""

from __future__ import annotations

import argparse

import yaml

from streamlstm.commands.common import add_config_args, load_config
from streamlstm.config import effective


def add_parser(sub) -> None:
    p = sub.add_parser(
        "validate-config",
        help="check a config file and print the effective config (secrets masked)",
        description="Validate a YAML config and print the effective config with defaults "
        "filled in and secrets masked. Exits 2 naming the offending key on an unknown key, a "
        "wrong type or an out-of-range value. Environment overrides: "
        "STREAMLSTM__SECTION__KEY=value (e.g. STREAMLSTM__KAFKA__BOOTSTRAP=host:9092).",
    )
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    print(yaml.safe_dump(effective(config), sort_keys=False), end="")
    return 0
