"""Engine and session factory; SQLite gets WAL, foreign keys and a busy timeout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
# SQLite's default page cache is 2 MB per connection; the B-tree interior pages of a 1M-photo
# archive (embeddings alone: ~16 MB of them) then thrash, and every search by id pays extra
# page reads. The cache only grows with the pages a connection actually reads.
SQLITE_CACHE_KIB = 65_536
# libpq TCP keepalives: a server that vanished without closing the socket is noticed in
# about idle + interval x count seconds instead of the kernel's two hours.
PG_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Per-connection SQLite settings: concurrent readers, enforced FKs, wait on locks,
    a page cache large enough for the hot B-tree pages."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cur.close()


def create_db_engine(url: str, *, connect_timeout_s: int = 5, **kw: Any) -> sa.Engine:
    """An engine for `url`; SQLite connections get the pragmas above, server databases a
    bounded connect."""
    if url.startswith("sqlite"):
        kw.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        kw.setdefault("pool_size", 20)
        kw.setdefault("max_overflow", 20)
        engine = sa.create_engine(url, **kw)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A dead server must fail requests fast (503) and a restarted one be found again without
    # a restart of ours: pre-ping replaces connections the server dropped, a connect timeout
    # bounds a connect to an unreachable host, TCP keepalives notice a peer that vanished
    # mid-query.
    kw.setdefault("pool_pre_ping", True)
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    if url.startswith("postgresql"):
        args = kw.setdefault("connect_args", {})
        args.setdefault("connect_timeout", connect_timeout_s)
        for name, value in PG_KEEPALIVES.items():
            args.setdefault(name, value)
    return sa.create_engine(url, **kw)


def create_session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (routes read them afterwards)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
