"""Log levels of third-party loggers whose lines a user cannot act on.

Set by the command line (``cli.main``) in the driver, and by Ray in every worker process
(``worker_process_setup_hook``, see ``adapters/ray/supervisor.py``): the actors log to
their own processes, and Ray forwards those lines to the driver's terminal. ``-v`` (the
driver's ``STREAMLSTM_VERBOSE_LOGS``) leaves them all on.
"""

from __future__ import annotations

import logging
import os

VERBOSE_ENV = "STREAMLSTM_VERBOSE_LOGS"

# logger -> level below which its lines are dropped (our own loggers are never listed).
QUIET = {
    # Every connection at INFO; its warnings and errors still show.
    "kafka": logging.WARNING,
    # "Task ... blocking the event loop": kafka-python's own debugging aid, printed whenever
    # its I/O thread is descheduled for 0.1 s, which a busy machine does all the time. A
    # worker that really stalls shows in its poll/commit heartbeats and the health checks.
    "kafka.net.selector": logging.ERROR,
    # "Matplotlib is building the font cache": a one-time cache on first use.
    "matplotlib.font_manager": logging.ERROR,
    # "Token authentication is enabled for this Ray cluster", on every local ray.init: Ray
    # turns it on by default, and it stays on (README "Security"). Setting RAY_AUTH_MODE in
    # the process instead would not do: Ray caches its config before ray.init reads it.
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
}


def quiet_third_party(verbose: bool | None = None) -> None:
    """Apply ``QUIET`` (unless verbose: then those loggers log at DEBUG like the rest)."""
    if verbose is None:
        verbose = os.environ.get(VERBOSE_ENV) == "1"
    for name, level in QUIET.items():
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else level)
