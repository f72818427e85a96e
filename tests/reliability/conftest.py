"""Fixtures of the reliability battery (issue 9); reuses the service and job test helpers."""

from __future__ import annotations

import pytest

from app.db import migrate
from tests.app.conftest import synthetic_images  # noqa: F401 - re-exported fixture
from tests.app.jobs.conftest import bundle_b  # noqa: F401 - re-exported fixture

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database for one module, once per backend: a tmp SQLite file, then a
    fresh PostgreSQL database (the batteries must hold on what production runs)."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_module_url")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'battery.db'}"
    migrate.upgrade(url)
    return url
