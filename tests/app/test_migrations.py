"""Migrations run up and down, and agree with the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.db import migrate
from app.db.models import Base
from app.db.session import create_db_engine

TABLES = {
    "procedures",
    "images",
    "models",
    "embeddings",
    "labels",
    "jobs",
    "api_keys",
    "dicom_frames",
    "audit_events",
    "videos",
    "video_frames",
    "video_images",
    "video_segments",
    "users",
    "ui_sessions",
    "login_throttle",
}


def _tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _diff(url: str) -> list:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def _up_down_up(url: str) -> None:
    migrate.upgrade(url)
    assert _tables(url) == TABLES
    assert _diff(url) == []
    migrate.downgrade(url)
    assert _tables(url) == set()
    migrate.upgrade(url)
    assert _tables(url) == TABLES


def test_sqlite_up_down_and_models_agree(sqlite_url: str) -> None:
    _up_down_up(sqlite_url)


@pytest.mark.postgres
def test_postgres_up_down_and_models_agree(pg_url: str) -> None:
    _up_down_up(pg_url)
    migrate.downgrade(pg_url)
