from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.kafka_fixtures"]


@pytest.fixture(scope="session", autouse=True)
def free_metrics_port() -> Iterator[None]:
    """Commands run by tests serve metrics on a free port, not the default 9464 (which a
    demo on the same machine may hold)."""
    previous = os.environ.get("STREAMLSTM__METRICS__PORT")
    os.environ["STREAMLSTM__METRICS__PORT"] = "0"
    yield
    if previous is None:
        os.environ.pop("STREAMLSTM__METRICS__PORT", None)
    else:
        os.environ["STREAMLSTM__METRICS__PORT"] = previous


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A real local Ray for the session ($RAY_ADDRESS joins an existing cluster instead)."""
    import ray

    from streamlstm.adapters.ray.supervisor import RAY_ENV

    os.environ.update(RAY_ENV)  # the local Ray's processes inherit it, as `init_ray` arranges
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], namespace="streamlstm-tests")
    else:
        ray.init(
            num_cpus=2, include_dashboard=False, namespace="streamlstm-tests", log_to_driver=False
        )
    try:
        yield
    finally:
        ray.shutdown()


# --- the chaos report: `make chaos` ends with a table (case, result, recovery time) ------
_chaos_rows: list[tuple[str, str, float]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "chaos" not in report.keywords:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _chaos_rows.append((report.nodeid.split("::")[-1], report.outcome, report.duration))


def pytest_terminal_summary(terminalreporter) -> None:
    if not _chaos_rows:
        return
    from pathlib import Path

    from tests.chaos_support import report_table

    root = Path(__file__).resolve().parents[1]
    table = report_table(_chaos_rows, root)
    terminalreporter.write_sep("=", "chaos report (runs/chaos-report.md)")
    terminalreporter.write_line(table)
