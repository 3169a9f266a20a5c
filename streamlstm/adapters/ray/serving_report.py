"""What the running workers serve, written beside the registry for ``models list``.

The registry knows which version is promoted; only the supervisor knows what each worker
scores with right now, and which promoted version is still warming in shadow on a worker.
Every ``REPORT_S`` it writes that to ``<registry>/.serving/<kafka.group_id>.json`` (one file
per deployment sharing the registry), so an operator sees it without a metrics stack.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import ray

log = logging.getLogger(__name__)

REPORT_S = 15.0  # how often the supervisor rewrites the report


def worker_models(actors: list[Any], timeout_s: float = 2.0) -> list[dict[str, str] | None]:
    """The version each worker scores each group with; None for one that did not answer.
    One wait for all of them: hung workers cost the supervisor loop ``timeout_s`` once."""
    refs = [actor.models.remote() for actor in actors]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
    answered = set(ready)
    out: list[dict[str, str] | None] = []
    for ref in refs:
        try:
            out.append(ray.get(ref) if ref in answered else None)
        except ray.exceptions.RayError:  # dead, restarting or not started
            out.append(None)
    return out


def serving_record(
    per_worker: list[dict[str, str] | None], targets: dict[str, str | None]
) -> dict[str, Any]:
    """Per worker, what it serves and what it warms in shadow (a promoted ``targets``
    version it does not serve yet)."""
    workers = []
    for index, models in enumerate(per_worker):
        if models is None:
            workers.append({"worker": index, "serves": None, "staged": {}})
            continue
        staged = {g: v for g, v in targets.items() if v and models.get(g) not in (None, v)}
        workers.append({"worker": index, "serves": dict(models), "staged": staged})
    return {
        "at": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "workers": workers,
    }


def report_serving(registry: Any, name: str, actors: list[Any], targets: dict) -> None:
    """Write the report; a registry that refuses it costs the report, never scoring."""
    try:
        registry.control.report_serving(name, serving_record(worker_models(actors), targets))
    except OSError as exc:
        log.warning("could not write the serving report to the registry: %s", exc)
