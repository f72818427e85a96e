"""Which failures are the environment's, not the request's: a full volume or an unreachable DB.

Both pass by themselves (space is freed, the database comes back), so the service answers with
a status the client can act on - 507 `insufficient_storage` or 503 `database_unavailable` with
Retry-After - instead of a 500, and keeps no state about them: the next request tries again.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from app.services.errors import ProblemError
from app.settings import Settings

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
NO_SPACE_TEXTS = tuple(os.strerror(n) for n in sorted(NO_SPACE_ERRNOS))
SQLITE_FULL = 13  # sqlite3's SQLITE_FULL result code
PG_DISK_FULL = "53100"  # SQLSTATE disk_full
# SQLite result codes that mean "the file is not usable right now", not "the statement is
# wrong" (SQLite reports a missing table or a syntax error as OperationalError too):
# BUSY, LOCKED, IOERR, CANTOPEN, PROTOCOL
SQLITE_UNAVAILABLE = frozenset({5, 6, 10, 14, 15})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the DBAPI error it wraps, and its causes (a wrapper may hide the real fault)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        todo.extend([getattr(cur, "orig", None), cur.__cause__, cur.__context__])


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from the OS (or named in a C++ library's error), SQLite's "database or
    disk is full", PostgreSQL's disk_full."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS:
            return True
        if getattr(e, "sqlite_errorcode", None) == SQLITE_FULL:
            return True
        if getattr(e, "sqlstate", None) == PG_DISK_FULL:
            return True
        if type(e).__name__ == "OperationalError" and "disk is full" in str(e):
            return True
        if isinstance(e, RuntimeError) and any(text in str(e) for text in NO_SPACE_TEXTS):
            return True  # FAISS's C++ write error names the errno only in its message
    return False


def is_db_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or dropped the connection (not a bad statement).

    SQLAlchemy marks a lost connection (`connection_invalidated`); a refused or timed-out
    connect, a server shutting down and SQLite's locked/unopenable file are OperationalError;
    a full connection pool is sqlalchemy's TimeoutError.
    """
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa.exc.TimeoutError):
        return True
    if not isinstance(exc, sa.exc.OperationalError) or is_disk_full(exc):
        return False
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is None or (code & 0xFF) in SQLITE_UNAVAILABLE


def problem_for(exc: BaseException, settings: Settings) -> ProblemError | None:
    """The problem+json answer for an environmental failure, or None for anything else."""
    if is_disk_full(exc):
        return ProblemError(
            507,
            "insufficient_storage",
            "The server has no space left to store this; retry when space is freed.",
        )
    if is_db_unavailable(exc):
        return ProblemError(
            503,
            "database_unavailable",
            "The database is unavailable; retry later.",
            retry_after=settings.db_retry_after_s,
        )
    return None


@dataclass(frozen=True)
class Volume:
    """A directory the service writes to and the free space of the filesystem holding it."""

    role: str
    path: Path
    free: int


def volumes(settings: Settings) -> list[Volume]:
    """Storage, index and (for SQLite) database directories; one entry per filesystem."""
    dirs = [("storage", settings.storage_dir), ("index", settings.index_dir)]
    url = settings.database_url
    if url.startswith("sqlite:///") and url.removeprefix("sqlite:///") not in ("", ":memory:"):
        dirs.append(("database", Path(url.removeprefix("sqlite:///")).parent))
    out: list[Volume] = []
    seen: dict[int, int] = {}
    for role, path in dirs:
        st = os.statvfs(path)
        dev = os.stat(path).st_dev
        if dev in seen:  # same filesystem: one entry naming every role on it
            prev = out[seen[dev]]
            out[seen[dev]] = Volume(f"{prev.role}+{role}", prev.path, prev.free)
            continue
        seen[dev] = len(out)
        out.append(Volume(role, Path(path), st.f_bavail * st.f_frsize))
    return out


def low_space(settings: Settings) -> list[str]:
    """Why the volumes are too full (empty when all have ENDOSEEK_MIN_FREE_BYTES free).

    A volume with no free byte at all counts even when the guard is off (0): /ready must say
    why writes fail. A directory that cannot be inspected counts too.
    """
    floor = max(settings.min_free_bytes, 1)
    try:
        vols = volumes(settings)
    except OSError as exc:
        return [f"cannot inspect the data directories: {exc.strerror or exc}"]
    return [
        f"{v.role} volume ({v.path}) has {v.free} bytes free, below "
        f"ENDOSEEK_MIN_FREE_BYTES={settings.min_free_bytes}"
        if settings.min_free_bytes
        else f"{v.role} volume ({v.path}) has no free space"
        for v in vols
        if v.free < floor
    ]


def require_space(settings: Settings) -> None:
    """Refuse an upload early (507) while a volume is below ENDOSEEK_MIN_FREE_BYTES.

    With the guard off (0) uploads go ahead and a real ENOSPC answers the same 507.
    """
    if settings.min_free_bytes <= 0:
        return
    reasons = low_space(settings)
    if reasons:
        raise ProblemError(
            507,
            "insufficient_storage",
            "Not enough free space to accept uploads: " + "; ".join(reasons) + ".",
        )
