"""Fixtures shared by every test package: real data paths and real databases.

PostgreSQL is a real server at 127.0.0.1:5432 (trust auth, user postgres). Each test session
creates its own throw-away database there and drops it at the end. With CI=true a missing
server is a failure, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.paths import SHARED_DATA
from tests.timing import scaled

PG_ADMIN_URL = os.environ.get(
    "ENDOSEEK_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def hyperkvasir_paths() -> list[Path]:
    """The nine real HyperKvasir ileum photos (CC BY 4.0, see ../shared/data/README.md)."""
    paths = sorted((SHARED_DATA / "hyperkvasir" / "ileum").glob("*.jpg"))
    if not paths:
        if os.environ.get("CI") == "true":
            pytest.fail(f"real photos missing under {SHARED_DATA}")
        pytest.skip(reason=f"real photos not found under {SHARED_DATA}")
    return paths


def _pg_available() -> str | None:
    """Return None when PostgreSQL answers, else the reason it does not."""
    try:
        import sqlalchemy as sa

        wait = max(1, round(scaled(10)))  # whole seconds, as libpq wants
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": wait})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"


@contextmanager
def _fresh_pg_database() -> Iterator[str]:
    """Create a throw-away PostgreSQL database; yield its URL; drop it afterwards."""
    import sqlalchemy as sa

    reason = _pg_available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required in CI: {reason}")
        pytest.skip(reason=f"PostgreSQL not reachable: {reason}")
    name = f"endoseek_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session (dropped afterwards)."""
    with _fresh_pg_database() as url:
        yield url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """An empty PostgreSQL database for one test (nothing left by other tests)."""
    with _fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def pg_module_url() -> Iterator[str]:
    """A PostgreSQL database of its own for one test module (no rows from other modules)."""
    with _fresh_pg_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite database file for one test."""
    return f"sqlite:///{tmp_path / 'endoseek.db'}"
