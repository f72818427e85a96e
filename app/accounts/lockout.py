"""Sign-in throttle shared by every server process (table login_throttle).

Two counters per attempt: the account (consecutive failures within `login_lockout_s` lock it
for `login_lockout_s`) and the client address (failures per minute, a password-spraying
brake). Each update is one atomic UPDATE, so two processes counting at once lose nothing.
Keys are SHA-256 digests: what someone typed as a user name (maybe a password) is not stored.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import LoginThrottle
from app.db.types import UTCDateTime, utcnow


@dataclass(frozen=True)
class Rule:
    """`max_failures` within `window_s` lock the key for `lock_s`."""

    max_failures: int
    window_s: float
    lock_s: float


def account_key(username: str) -> str:
    return "u:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()[:64]


def address_key(address: str) -> str:
    return "a:" + hashlib.sha256(address.encode()).hexdigest()[:64]


def locked_for(db: Session, key: str, now: datetime | None = None) -> int:
    """Whole seconds `key` stays locked (0: not locked)."""
    now = now or utcnow()
    until = db.scalar(sa.select(LoginThrottle.locked_until).where(LoginThrottle.key == key))
    if until is None or until <= now:
        return 0
    return max(1, math.ceil((until - now).total_seconds()))


def fail(db: Session, key: str, rule: Rule, now: datetime | None = None) -> bool:
    """Count one failure of `key`; True when this failure locked it. Commits."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=rule.window_s)
    stale = LoginThrottle.window_start < cutoff
    bump = (
        sa.update(LoginThrottle)
        .where(LoginThrottle.key == key)
        .values(
            failures=sa.case((stale, 1), else_=LoginThrottle.failures + 1),
            window_start=sa.case(
                (stale, sa.literal(now, UTCDateTime())), else_=LoginThrottle.window_start
            ),
        )
    )
    if db.execute(bump).rowcount == 0:
        try:
            with db.begin_nested():
                db.add(LoginThrottle(key=key, failures=1, window_start=now))
        except IntegrityError:  # another process inserted it first: count on its row
            db.execute(bump)
    lock = (
        sa.update(LoginThrottle)
        .where(LoginThrottle.key == key, LoginThrottle.failures >= rule.max_failures)
        .values(failures=0, window_start=now, locked_until=now + timedelta(seconds=rule.lock_s))
    )
    locked = db.execute(lock).rowcount > 0
    db.commit()
    return locked


def clear(db: Session, key: str) -> None:
    """Forget the failures and any lock of `key` (successful sign-in, admin reset). Commits."""
    db.execute(sa.delete(LoginThrottle).where(LoginThrottle.key == key))
    db.commit()
