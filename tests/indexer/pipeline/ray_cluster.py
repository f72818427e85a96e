"""One Ray cluster per test session: `ray.init(num_cpus=2)`, offline, shared by every Ray test.

Ray starts in ~5 s and each execution costs ~20 s on this kind of machine, so the Ray tests
are few, use tiny data, and keep the actor pool below the CPU count (actors on every CPU
starved the stage feeding them). Without Ray installed the tests skip locally and fail in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

NUM_CPUS = 2


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """Joins (or starts) the session's local Ray cluster; yields its address for subprocesses."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Ray Data is required in CI (pip install -e '.[dev]'): {exc}")
        pytest.skip(reason=f"Ray Data not installed: {exc}")
    from indexer.pipeline.ray_runner import ray_session

    with ray_session(num_cpus=NUM_CPUS):
        yield ray.get_runtime_context().gcs_address
