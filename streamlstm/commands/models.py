"""``streamlstm models list|show|promote|rollback``: the model registry by hand."""

from __future__ import annotations

import argparse
import json

from streamlstm.commands.common import add_config_args, load_config
from streamlstm.records import format_ts


def add_parser(sub) -> None:
    p = sub.add_parser(
        "models",
        help="list, show, promote or roll back model versions in the registry",
        description="The model registry (retrain.registry, or --registry): every version "
        "of every group with its status (candidate, promoted, rejected, retired), its "
        "training data range, loss curve and validation numbers.",
        epilog="examples: streamlstm models list -c configs/vitals.yaml; "
        "streamlstm models show -c configs/vitals.yaml vitals vitals-1a2b3c4d; "
        "streamlstm models rollback -c configs/vitals.yaml vitals",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("list", "every version of every group"),
        ("show", "one version: entry, loss curve, validation"),
        ("promote", "make a version current (the current one is retired)"),
        ("rollback", "back to the previously promoted version"),
    ):
        a = actions.add_parser(name, help=text, description=text)
        add_config_args(a)
        a.add_argument("--registry", help="registry directory (default: retrain.registry)")
        if name != "list":
            a.add_argument("group")
        if name in ("show", "promote"):
            a.add_argument("version")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: Ray and Kafka load only when this command runs, not for --help
    from streamlstm.adapters.retrain.registry import ModelRegistry, RegistryError

    config = load_config(args)
    registry = ModelRegistry(args.registry or config.retrain.registry)
    try:
        if args.action == "list":
            _list(registry)
        elif args.action == "show":
            _show(registry, args.group, args.version)
        elif args.action == "promote":
            entry = registry.promote(args.group, args.version)
            print(f"{args.group}: {entry['version']} promoted")
        else:
            entry = registry.rollback(args.group)
            print(f"{args.group}: rolled back to {entry['version']}")
    except RegistryError as exc:
        print(f"streamlstm models: {exc}")
        return 2
    return 0


def _list(registry) -> None:
    groups = registry.groups()
    if not groups:
        print(f"no models in {registry.root}")
        return
    header = ("group", "version", "status", "created", "error", "alerts/10k")
    print("{:<10} {:<20} {:<10} {:<20} {:>8} {:>10}".format(*header))
    for group in groups:
        for e in registry.entries(group):
            cand = (e.get("validation") or {}).get("candidate") or {}
            print(
                f"{group:<10} {e['version']:<20} {e['status']:<10} "
                f"{format_ts(e['created_at'])[:19]:<20} "
                f"{cand.get('mean_error', float('nan')):>8.4f} "
                f"{cand.get('alerts_per_10k', float('nan')):>10.2f}"
            )


def _show(registry, group: str, version: str) -> None:
    entry = registry.entry(group, version)
    metrics = registry.version_json(group, version, "metrics.json") or {}
    print(json.dumps({**entry, "metrics": metrics}, indent=2, default=str))
    curve = metrics.get("train_loss") or []
    if curve:
        print("loss by epoch: " + " ".join(f"{x:.4f}" for x in curve))
