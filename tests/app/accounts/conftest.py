"""Fixtures of the account tests: a migrated database on SQLite and on PostgreSQL, and a
real slapd (skipped locally without it, a failure in CI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.db import migrate
from app.db.session import create_db_engine, create_session_factory
from tests.ldap_server import PEOPLE, Slapd, start_slapd


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of its own for one test, on each engine."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'accounts.db'}"
    else:
        url = request.getfixturevalue("fresh_pg_url")
    migrate.upgrade(url)
    return url


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(db_url)
    yield create_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = start_slapd(tmp_path_factory.mktemp("slapd"), PEOPLE)
    yield server
    server.stop()
