"""``streamlstm models list|show|promote|rollback|pin|unpin|pause|resume``: the model
registry by hand, and an operator's hold on scheduled retraining."""

from __future__ import annotations

import argparse
import json
from typing import Any

from streamlstm.commands.common import add_config_args, load_config, operator_name
from streamlstm.records import format_ts

ACTIONS = (
    ("list", "every version of every group, pins and the schedule's pause"),
    ("show", "one version: entry, loss curve, validation"),
    ("promote", "make a version current (the current one is retired; a pin is released)"),
    ("rollback", "back to the previously promoted version, and pin it there"),
    ("pin", "keep the current version: scheduled rounds train but do not promote"),
    ("unpin", "let scheduled rounds promote again"),
    ("pause", "start no scheduled retrain rounds until resume"),
    ("resume", "scheduled retrain rounds run again"),
)
WITH_GROUP = {"show", "promote", "rollback", "pin", "unpin"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "models",
        help="list, show, promote, roll back or pin model versions; pause retraining",
        description="The model registry (retrain.registry, or --registry): every version "
        "of every group with its status (candidate, promoted, rejected, retired), its "
        "training data range, loss curve and validation numbers. A rollback pins the group "
        "to the version it returns to: scheduled rounds still train and gate, but do not "
        "promote until `models unpin` or an explicit `models promote`. `models pause` "
        "stops scheduled rounds from starting (the state lives in the registry, so every "
        "supervisor using it sees it).",
        epilog="examples: streamlstm models list -c configs/vitals.yaml; "
        "streamlstm models show -c configs/vitals.yaml vitals vitals-1a2b3c4d; "
        "streamlstm models rollback -c configs/vitals.yaml vitals; "
        "streamlstm models unpin -c configs/vitals.yaml vitals; "
        "streamlstm models pause -c configs/vitals.yaml --reason 'sensor recalibration'",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in ACTIONS:
        a = actions.add_parser(name, help=text, description=text)
        add_config_args(a)
        a.add_argument("--registry", help="registry directory (default: retrain.registry)")
        if name in WITH_GROUP:
            a.add_argument("group")
        if name in ("show", "promote"):
            a.add_argument("version")
        if name == "promote":
            a.add_argument(
                "--force",
                action="store_true",
                help="promote a version the validation gate rejected (recorded in its entry)",
            )
        if name in ("pin", "pause"):
            a.add_argument("--reason", default="", help="why, recorded beside who and when")
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
        else:
            print(_change(registry, args, operator_name()))
    except RegistryError as exc:
        print(f"streamlstm models: {exc}")
        return 2
    return 0


def _change(registry, args: argparse.Namespace, by: str) -> str:
    """Carry out a changing action; returns the line to print."""
    action, group = args.action, getattr(args, "group", None)
    if action == "promote":
        entry = registry.promote(group, args.version, by, force=args.force)
        forced = " (forced over the gate's rejection)" if entry.get("forced") else ""
        return f"{group}: {entry['version']} promoted{forced}"
    if action == "rollback":
        entry = registry.rollback(group, by)
        return (
            f"{group}: rolled back to {entry['version']}, pinned there: scheduled rounds "
            f"will not promote until `streamlstm models unpin {group}`"
        )
    if action == "pin":
        pin = registry.pin(group, by, args.reason or "models pin")
        return f"{group}: pinned to {pin['version']}"
    if action == "unpin":
        was = registry.control.unpin(group)
        return f"{group}: unpinned (was {was['version']})" if was else f"{group}: not pinned"
    if action == "pause":
        registry.control.pause(by, args.reason)
        return "scheduled retrain rounds paused (streamlstm models resume)"
    was = registry.control.resume()
    return "scheduled retrain rounds resumed" if was else "scheduled retrain rounds were not paused"


def _list(registry) -> None:
    pause = registry.control.paused()
    if pause:
        print(f"scheduled retraining paused {_who_when(pause)}")
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
    for group in groups:
        pin = registry.control.pinned(group)
        if pin:
            print(f"{group}: pinned to {pin['version']} {_who_when(pin)}")
    for name, report in sorted(registry.control.serving().items()):
        print(_serving_lines(name, report))


def _serving_lines(name: str, report: dict[str, Any]) -> str:
    """What a supervisor reported its workers serve (and warm in shadow)."""
    head = (
        f"served by {name} (supervisor pid {report.get('pid')} on {report.get('host')}, "
        f"reported {format_ts(float(report['at']))}):"
    )
    lines = [head]
    for w in report.get("workers", []):
        if w.get("serves") is None:
            lines.append(f"  worker {w['worker']}: did not answer")
            continue
        serves = ", ".join(f"{g} {v}" for g, v in sorted(w["serves"].items())) or "no model"
        staged = ", ".join(f"{g} {v}" for g, v in sorted(w.get("staged", {}).items()))
        lines.append(
            f"  worker {w['worker']}: {serves}"
            + (f"; warming {staged} in shadow" if staged else "")
        )
    return "\n".join(lines)


def _who_when(record: dict[str, Any]) -> str:
    text = f"by {record.get('by') or 'an operator'} at {format_ts(float(record['at']))}"
    return text + (f" ({record['reason']})" if record.get("reason") else "")


def _show(registry, group: str, version: str) -> None:
    entry = registry.entry(group, version)
    metrics = registry.version_json(group, version, "metrics.json") or {}
    print(json.dumps({**_iso_times(entry), "metrics": metrics}, indent=2, default=str))
    curve = metrics.get("train_loss") or []
    if curve:
        print("loss by epoch: " + " ".join(f"{x:.4f}" for x in curve))


def _iso_times(value: Any) -> Any:
    """Epoch-second fields (``created_at``, ``promoted_at``, ``at`` ...) as RFC 3339 UTC."""
    if isinstance(value, list):
        return [_iso_times(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {
        k: format_ts(v)
        if (k == "at" or k.endswith("_at")) and isinstance(v, int | float)
        else _iso_times(v)
        for k, v in value.items()
    }
