from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.kafka_fixtures"]


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A real local Ray for the session ($RAY_ADDRESS joins an existing cluster instead)."""
    import ray

    from streamlstm.adapters.supervisor import RAY_ENV

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
