"""How many torch intra-op threads a process uses: its own CPU share, not the machine's.

Every command that runs torch (and every Ray worker) sizes its thread pool here, so two
processes on one machine do not both spin a thread per core: with both at the machine's
full count, a second busy torch process made ``bench step`` 40x slower on 2 cores
(issue 19).
"""

from __future__ import annotations

import math
import os

import torch


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask (taskset, a container's cpuset),
    further cut by a cgroup v2 CPU quota when one is set (``cpu.max``, e.g. docker --cpus)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def set_threads(requested: int | None = None, share: float | None = None) -> int:
    """Set torch's intra-op threads and return the number: ``requested`` when given, else
    ``share`` CPUs (a Ray actor's ``num_cpus``, rounded, at least 1) when given, else
    every CPU this process may use (``available_cpus``); never more than that."""
    if requested is not None:
        threads = requested
    elif share is not None:
        threads = round(share)
    else:
        threads = available_cpus()
    threads = max(1, min(int(threads), available_cpus()))
    torch.set_num_threads(threads)
    return threads
