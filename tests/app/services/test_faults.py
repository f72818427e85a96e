"""Which real errors count as a full volume (507) or an unreachable database (503)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.services import faults
from app.services.errors import ProblemError
from app.settings import Settings
from tests.app.server import free_port


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path / 'db' / 'x.db'}",
        storage_dir=tmp_path,
        index_dir=tmp_path,
        **kw,
    )


def _raised(engine: sa.Engine, sql: str) -> sa.exc.SQLAlchemyError:
    with pytest.raises(sa.exc.SQLAlchemyError) as info, engine.connect() as conn:
        conn.execute(sa.text(sql))
    return info.value


def test_os_no_space_and_faiss_write_error_are_disk_full() -> None:
    assert faults.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert faults.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not faults.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    wrapped = RuntimeError("write error in x.faiss: 1 != 2 (No space left on device)")
    assert faults.is_disk_full(wrapped)
    assert not faults.is_disk_full(RuntimeError("write error in x.faiss: bad magic"))


def test_sqlite_statement_errors_are_not_an_outage(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        for sql in ("SELECT * FROM no_such_table", "SELEC 1"):
            exc = _raised(engine, sql)
            assert isinstance(exc, sa.exc.OperationalError)  # SQLite's class for both
            assert not faults.is_db_unavailable(exc) and not faults.is_disk_full(exc)
            assert faults.problem_for(exc, _settings(tmp_path)) is None
    finally:
        engine.dispose()


def test_refused_postgres_connection_is_503_with_retry_after(tmp_path: Path) -> None:
    engine = sa.create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x",
        connect_args={"connect_timeout": 2},
    )
    try:
        exc = _raised(engine, "SELECT 1")
    finally:
        engine.dispose()
    assert faults.is_db_unavailable(exc) and not faults.is_disk_full(exc)
    problem = faults.problem_for(exc, _settings(tmp_path, db_retry_after_s=7))
    assert problem is not None
    assert (problem.status, problem.code, problem.extra) == (
        503,
        "database_unavailable",
        {"retry_after": 7},
    )


def test_low_space_names_each_filesystem_once(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    assert faults.low_space(_settings(tmp_path, min_free_bytes=1)) == []
    huge = 1 << 62
    (reason,) = faults.low_space(_settings(tmp_path, min_free_bytes=huge))
    assert reason.startswith("storage+index+database volume") and str(huge) in reason
    with pytest.raises(ProblemError) as info:
        faults.require_space(_settings(tmp_path, min_free_bytes=huge))
    assert (info.value.status, info.value.code) == (507, "insufficient_storage")
    faults.require_space(_settings(tmp_path, min_free_bytes=0))  # the guard off: no refusal
