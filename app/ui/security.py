"""Sign-in checks, scopes and CSRF for the UI; the session cookie carries only a random id."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from app.accounts.roles import scopes_for
from app.db.models import ApiKey, User
from app.services import audit
from app.ui.context import UiContext, ui_context
from app.ui.sessions import SessionStore, UiSession

COOKIE = "endoseek_ui"
PRE_COOKIE = "endoseek_ui_pre"  # double-submit token of the sign-in form (before a session)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PREFIX = "/ui"


class SignInRequired(Exception):
    """No valid session: pages redirect to the sign-in form, JSON answers 401."""


class ScopeMissing(Exception):
    """The signed-in key lacks the scope an action needs (answered with 403)."""

    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


class CsrfFailed(Exception):
    """A state-changing request without the session's CSRF token (answered with 403)."""


def session_store(ctx: UiContext) -> SessionStore:
    """The app's session store, bound to its database and timeouts on first use."""
    store = ctx.store
    if not store.bound:
        settings = ctx.settings
        store.bind(ctx.db, settings.ui_idle_timeout_s, settings.ui_absolute_timeout_s)
    return store


def _is_live(ctx: UiContext, user: UiSession) -> bool:
    """Re-check the key or account on every request: a revoked key or a disabled account ends
    its sessions at once, a changed role or key scopes apply at once."""
    with ctx.db() as db:
        if user.user_id is not None:
            account = db.get(User, user.user_id)
            if account is None or account.disabled_at is not None:
                return False
            user.scopes = scopes_for(account.role)
            user.name = account.display_name or account.username
            return True
        row = db.get(ApiKey, user.key_id)
        if row is None or row.revoked_at is not None:
            return False
        user.scopes = frozenset(row.scopes)
        return True


def _load_user(request: Request) -> UiSession | None:
    ctx = ui_context(request)
    store = session_store(ctx)
    user = store.get(request.cookies.get(COOKIE))
    if user is None:
        return None
    if not _is_live(ctx, user):
        if user.user_id is not None:
            store.drop_user(user.user_id)
        elif user.key_id is not None:
            store.drop_key(user.key_id)
        return None
    return user


async def current_user(request: Request) -> UiSession:
    """The signed-in session of this browser, or SignInRequired. Async so that the audit
    actor it binds (the user or key) holds for the rest of the request; the database work
    runs in a worker thread."""
    cached = getattr(request.state, "ui_user", None)
    user = cached if isinstance(cached, UiSession) else await run_in_threadpool(_load_user, request)
    if user is None:
        raise SignInRequired()
    audit.bind_actor(key_id=user.key_id, user_id=user.user_id)
    request.state.ui_user = user
    return user


CurrentUser = Annotated[UiSession, Depends(current_user)]


def require(scope: str):
    """Dependency factory: the signed-in session, which must allow `scope`."""

    def dep(user: CurrentUser) -> UiSession:
        if not user.allows(scope):
            raise ScopeMissing(scope)
        return user

    return Depends(dep)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison that is False for any missing token."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


async def csrf_protect(request: Request, user: CurrentUser) -> UiSession:
    """Every POST must echo the session's token: form field, or header for fetch()."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and "form" in request.headers.get("content-type", ""):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not tokens_match(user.csrf, given):
        raise CsrfFailed()
    return user


CsrfUser = Annotated[UiSession, Depends(csrf_protect)]


def safe_next(path: str | None) -> str:
    """Only a local /ui path may follow sign-in (no open redirect)."""
    if not path or not path.startswith(PREFIX + "/") or path.startswith("//") or "\\" in path:
        return PREFIX + "/"
    return path


def ensure_scope(user: UiSession, scope: str) -> None:
    """Raise ScopeMissing unless `user` may act with `scope` (for routes that take CsrfUser)."""
    if not user.allows(scope):
        raise ScopeMissing(scope)
