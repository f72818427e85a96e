"""Staff accounts: create, list, disable, enable, reset password; check a local password.

Every change that should end a person's access also ends their UI sessions (disable, reset,
role change). Directory (LDAP) users get a row on first sign-in: it carries their current
role and lets an admin disable them here even while the directory still says yes.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.accounts import lockout, passwords
from app.accounts.roles import check_role, scopes_for
from app.db.models import UiSessionRow, User
from app.db.types import utcnow
from app.services import audit

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,127}$")
SOURCES = ("local", "ldap")


class AccountError(Exception):
    """An account request that cannot be done (unknown user, duplicate, bad name)."""


@dataclass(frozen=True)
class Account:
    """A signed-in person, as the UI session keeps it (never the password)."""

    user_id: uuid.UUID
    username: str
    name: str
    role: str

    @property
    def scopes(self) -> frozenset[str]:
        return scopes_for(self.role)


def normalise(username: str) -> str:
    """Lower-cased, trimmed user name, or AccountError for characters we do not accept."""
    value = username.strip().lower()
    if not USERNAME.fullmatch(value):
        raise AccountError(
            "a user name is 1-128 letters, digits, '.', '_', '@' or '-' (starting with a "
            "letter or digit)"
        )
    return value


def find(db: Session, username: str) -> User | None:
    """The account named `username` (case-insensitive), or None (also for unusable names)."""
    try:
        name = normalise(username)
    except AccountError:
        return None
    return db.scalar(sa.select(User).where(User.username == name))


def get(db: Session, ident: str) -> User:
    """An account by user name or id, else AccountError."""
    row = find(db, ident)
    if row is None:
        try:
            row = db.get(User, uuid.UUID(ident))
        except ValueError:
            row = None
    if row is None:
        raise AccountError(f"no user {ident!r}")
    return row


def create(
    db: Session,
    username: str,
    role: str,
    password: str,
    *,
    display_name: str = "",
    min_length: int = 12,
) -> User:
    """A new local account (flushed, not committed)."""
    name = normalise(username)
    if find(db, name) is not None:
        raise AccountError(f"user {name!r} exists")
    passwords.check_new(password, min_length)
    now = utcnow()
    row = User(
        username=name,
        display_name=display_name.strip() or name,
        role=check_role(role),
        source="local",
        password_hash=passwords.hash_password(password),
        password_changed_at=now,
    )
    db.add(row)
    db.flush()
    audit.record(db, None, "user.create", name, {"role": row.role}, user_id=row.id)
    return row


def list_all(db: Session) -> list[User]:
    return list(db.scalars(sa.select(User).order_by(User.username)))


def end_sessions(db: Session, user_id: uuid.UUID) -> int:
    """Sign the user out of every browser (sign-out everywhere). Not committed."""
    return db.execute(sa.delete(UiSessionRow).where(UiSessionRow.user_id == user_id)).rowcount


def disable(db: Session, ident: str) -> User:
    """Disable an account and end its sessions (not committed)."""
    row = get(db, ident)
    if row.disabled_at is None:
        row.disabled_at = utcnow()
    end_sessions(db, row.id)
    audit.record(db, None, "user.disable", row.username, user_id=row.id)
    return row


def enable(db: Session, ident: str) -> User:
    row = get(db, ident)
    row.disabled_at = None
    audit.record(db, None, "user.enable", row.username, user_id=row.id)
    return row


def reset_password(
    db: Session, ident: str, password: str, *, min_length: int = 12, action: str = "user.reset"
) -> User:
    """Set a new password, lift any lockout and end every session (not committed)."""
    row = get(db, ident)
    if row.source != "local":
        raise AccountError(f"{row.username!r} signs in through the directory; reset it there")
    passwords.check_new(password, min_length)
    row.password_hash = passwords.hash_password(password)
    row.password_changed_at = utcnow()
    end_sessions(db, row.id)
    db.flush()
    lockout.clear(db, lockout.account_key(row.username))
    audit.record(db, None, action, row.username, user_id=row.id)
    return row


def set_role(db: Session, ident: str, role: str) -> User:
    """Change a role; open sessions pick it up on their next request (not committed)."""
    row = get(db, ident)
    if row.source != "local":
        raise AccountError(f"{row.username!r} takes its role from its directory groups")
    row.role = check_role(role)
    audit.record(db, None, "user.role", row.username, {"role": row.role}, user_id=row.id)
    return row


def check_local(db: Session, username: str, password: str) -> User | None:
    """The local account if `password` is right (upgrading an old hash), else None; the
    caller refuses a disabled one. Takes the time of one verification either way."""
    row = find(db, username)
    if row is None or row.source != "local":
        passwords.burn_time()
        return None
    ok, rehash = passwords.verify(row.password_hash, password)
    if not ok:
        return None
    if rehash:
        row.password_hash = passwords.hash_password(password)
    return row


def upsert_directory_user(db: Session, username: str, display_name: str, role: str) -> User:
    """The row of a directory user who just signed in, created or updated with the role the
    directory's groups give now (flushed, not committed)."""
    name = normalise(username)
    row = find(db, name)
    if row is None:
        row = User(username=name, source="ldap", role=check_role(role))
        db.add(row)
    elif row.source != "ldap":
        raise AccountError(f"{name!r} is a local account")
    row.role = check_role(role)
    row.display_name = display_name.strip() or name
    db.flush()
    return row


def as_account(row: User) -> Account:
    return Account(row.id, row.username, row.display_name or row.username, row.role)
