"""Server-side sign-in sessions for the web UI, kept in the database (table ui_sessions).

The browser holds only a random id; the table keeps its SHA-256, so a copy of the database
opens no session. Because the rows live in the shared database, every server process behind
one port accepts a session another one made, and a restart signs nobody out.

A session names who signed in: a staff account (user_id) or an API key (key_id, checked once
at sign-in, never stored). It keeps display name, scopes and the CSRF token its forms echo.
Expiry: idle (no request for idle_s) and absolute (absolute_s after sign-in), both on the
database clock of the UTC wall time, so all processes agree. `seen_at` is written at most
every `touch_s` seconds (not on every request): idle expiry is exact to within touch_s.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import UiSessionRow
from app.db.types import utcnow

IDLE_TIMEOUT_S = 30 * 60
ABSOLUTE_TIMEOUT_S = 10 * 3600
MAX_SESSIONS_PER_PRINCIPAL = 20  # the oldest beyond this are signed out


@dataclass
class UiSession:
    """One signed-in browser: who it is and the token its forms must echo."""

    key_id: uuid.UUID | None
    name: str
    scopes: frozenset[str]
    user_id: uuid.UUID | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: datetime = field(default_factory=utcnow)
    seen: datetime = field(default_factory=utcnow)

    def allows(self, scope: str) -> bool:
        """admin implies every scope (same rule as the API's Principal)."""
        return "admin" in self.scopes or scope in self.scopes


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class StoreNotBound(RuntimeError):
    """The store was used before it was given the database (SessionStore.bind)."""


class SessionStore:
    """Sessions in the database, with idle and absolute expiry.

    Built without a database (app/ui/setup.py does), bound on first use to the app's session
    factory (app/ui/security.py: session_store)."""

    def __init__(
        self,
        idle_s: float = IDLE_TIMEOUT_S,
        absolute_s: float = ABSOLUTE_TIMEOUT_S,
        db: sessionmaker[Session] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self._db = db
        self.clock = clock

    @property
    def bound(self) -> bool:
        return self._db is not None

    def bind(self, db: sessionmaker[Session], idle_s: float | None = None,
             absolute_s: float | None = None) -> None:  # fmt: skip
        """Use `db` from now on (and the configured timeouts, when given)."""
        self._db = db
        if idle_s is not None:
            self.idle_s = idle_s
        if absolute_s is not None:
            self.absolute_s = absolute_s

    @property
    def touch_s(self) -> float:
        return min(60.0, self.idle_s / 4)

    def _session(self) -> Session:
        if self._db is None:
            raise StoreNotBound("SessionStore.bind(db) first")
        return self._db()

    def _live(self, now: datetime) -> sa.ColumnElement[bool]:
        return sa.and_(
            UiSessionRow.seen_at > now - timedelta(seconds=self.idle_s),
            UiSessionRow.created_at > now - timedelta(seconds=self.absolute_s),
        )

    def create(
        self,
        key_id: uuid.UUID | None,
        name: str,
        scopes: frozenset[str],
        *,
        user_id: uuid.UUID | None = None,
    ) -> tuple[str, UiSession]:
        """A fresh id (never reused: no session fixation) for a just-verified key or user."""
        if (key_id is None) == (user_id is None):
            raise ValueError("a session belongs to exactly one key or one user")
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        session = UiSession(key_id, name, scopes, user_id, created=now, seen=now)
        owner = UiSessionRow.user_id == user_id if user_id else UiSessionRow.key_id == key_id
        with self._session() as db:
            db.execute(sa.delete(UiSessionRow).where(~self._live(now)))  # expired: everyone's
            kept = db.scalars(
                sa.select(UiSessionRow.id_hash)
                .where(owner)
                .order_by(UiSessionRow.created_at.desc())
                .offset(MAX_SESSIONS_PER_PRINCIPAL - 1)
            ).all()
            if kept:
                db.execute(sa.delete(UiSessionRow).where(UiSessionRow.id_hash.in_(kept)))
            db.add(
                UiSessionRow(
                    id_hash=_digest(sid),
                    user_id=user_id,
                    key_id=key_id,
                    name=name,
                    scopes=sorted(scopes),
                    csrf=session.csrf,
                    created_at=now,
                    seen_at=now,
                )
            )
            db.commit()
        return sid, session

    def get(self, sid: str | None) -> UiSession | None:
        """The live session for `sid` (touching it), or None when unknown or expired."""
        if not sid or len(sid) > 128:
            return None
        now = self.clock()
        with self._session() as db:
            row = db.get(UiSessionRow, _digest(sid))
            if row is None:
                return None
            idle = (now - row.seen_at).total_seconds()
            if idle > self.idle_s or (now - row.created_at).total_seconds() > self.absolute_s:
                db.delete(row)
                db.commit()
                return None
            if idle > self.touch_s:
                row.seen_at = now
                db.commit()
            return UiSession(
                key_id=row.key_id,
                name=row.name,
                scopes=frozenset(row.scopes),
                user_id=row.user_id,
                csrf=row.csrf,
                created=row.created_at,
                seen=row.seen_at,
            )

    def drop(self, sid: str | None) -> None:
        """Sign out: forget the session (unknown ids are fine)."""
        if sid:
            with self._session() as db:
                db.execute(sa.delete(UiSessionRow).where(UiSessionRow.id_hash == _digest(sid)))
                db.commit()

    def drop_key(self, key_id: uuid.UUID) -> int:
        """Forget every session of a key (after it was found revoked)."""
        with self._session() as db:
            n = db.execute(sa.delete(UiSessionRow).where(UiSessionRow.key_id == key_id)).rowcount
            db.commit()
        return n

    def drop_user(self, user_id: uuid.UUID) -> int:
        """Sign a user out everywhere (every browser, every server process)."""
        with self._session() as db:
            n = db.execute(sa.delete(UiSessionRow).where(UiSessionRow.user_id == user_id)).rowcount
            db.commit()
        return n

    def __len__(self) -> int:
        """Live sessions (all processes)."""
        now = self.clock()
        with self._session() as db:
            count = db.scalar(
                sa.select(sa.func.count()).select_from(UiSessionRow).where(self._live(now))
            )
        return int(count or 0)
