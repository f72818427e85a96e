"""Audit trail: who (API key id or staff user id) did what (action) to which object, when.

Callers pass the key id they hold. A UI request signed in with a staff account has no key:
app/ui/security.py binds the account as the request's actor (a context variable, copied into
the worker threads FastAPI runs sync routes in), and record() fills it in, so every event
names the user or the key without each view threading the user through.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.db.models import AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who acts in the current request: an API key, a staff user, or both unknown."""

    key_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None


_actor: ContextVar[Actor | None] = ContextVar("endoseek_audit_actor", default=None)


def bind_actor(*, key_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None) -> None:
    """Make `key_id` / `user_id` the actor of what runs next in this context (a request)."""
    _actor.set(Actor(key_id, user_id))


def current_actor() -> Actor | None:
    return _actor.get()


def record(
    session: Session,
    key_id: uuid.UUID | None,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    *,
    user_id: uuid.UUID | None = None,
) -> None:
    """Add an audit event to the session's transaction (never passwords, keys or patient
    data). Without an explicit key or user, the bound actor of the request is recorded."""
    if key_id is None and user_id is None:
        actor = _actor.get()
        if actor is not None:
            key_id, user_id = actor.key_id, actor.user_id
    session.add(
        AuditEvent(
            key_id=key_id, user_id=user_id, action=action, target=target, detail=detail or {}
        )
    )
