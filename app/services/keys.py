"""API keys: random tokens shown once, stored as keyed SHA-256 hashes, with scopes.

A key looks like `esk_<prefix>_<secret>`; the prefix finds the row, the hash of the whole
key is compared in constant time. Keys have 256 bits of entropy, so a fast keyed hash is
enough (no password-style stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import ApiKey
from app.db.types import utcnow

SCOPES = ("ingest", "search", "label", "admin")
KEY_PREFIX = "esk"
# a fixed pepper: domain separation for the hash (the key's own entropy is the secret)
_PEPPER = b"endoseek-api-key-v1"


class KeyRequestError(Exception):
    """Raised for an unusable key request (unknown scope, unknown key)."""


@dataclass(frozen=True)
class Principal:
    """The caller behind a valid key; never holds the key itself."""

    key_id: uuid.UUID
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """admin implies every scope."""
        return "admin" in self.scopes or scope in self.scopes


def hash_key(key: str) -> str:
    """Keyed SHA-256 of a full key, hex."""
    return hmac.new(_PEPPER, key.encode(), hashlib.sha256).hexdigest()


def _split(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def validate_scopes(scopes: list[str]) -> list[str]:
    """Known scopes only, de-duplicated, in canonical order."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise KeyRequestError(f"unknown or missing scope(s): {unknown}; choose from {list(SCOPES)}")
    return [s for s in SCOPES if s in scopes]


def create_key(session: Session, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext key (shown once, never stored)."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(name=name, prefix=prefix, hash=hash_key(key), scopes=validate_scopes(scopes))
    session.add(row)
    session.flush()
    return row, key


# Every request authenticates: the statement is built once (building it cost as much as the
# lookup itself).
_KEY_BY_PREFIX = sa.select(ApiKey).where(ApiKey.prefix == sa.bindparam("prefix"))


def authenticate(session: Session, key: str) -> Principal | None:
    """The principal for a presented key, or None (unknown, malformed, revoked)."""
    prefix = _split(key)
    if prefix is None:
        return None
    row = session.scalar(_KEY_BY_PREFIX, {"prefix": prefix})
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.hash, hash_key(key)):
        return None
    now = utcnow()
    # write last_used_at at most once a minute: keeps the hot path free of writes
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        session.execute(sa.update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        session.commit()
    return Principal(key_id=row.id, name=row.name, scopes=frozenset(row.scopes))


def list_keys(session: Session) -> list[ApiKey]:
    """All keys, oldest first."""
    return list(session.scalars(sa.select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, ident: str) -> ApiKey:
    """Revoke a key by id or prefix."""
    cond = ApiKey.prefix == ident
    try:
        cond = sa.or_(cond, ApiKey.id == uuid.UUID(ident))
    except ValueError:
        pass
    row = session.scalar(sa.select(ApiKey).where(cond))
    if row is None:
        raise KeyRequestError(f"no key with id or prefix {ident!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def ensure_admin(session: Session, name: str = "admin") -> str | None:
    """Create an admin key if no usable one exists; returns it (once) or None."""
    rows = session.scalars(sa.select(ApiKey).where(ApiKey.revoked_at.is_(None)))
    if any("admin" in r.scopes for r in rows):
        return None
    _, key = create_key(session, name, ["admin"])
    return key
