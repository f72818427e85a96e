"""Sign-in (user name + password, or an API key), sign-out, sign-out everywhere, and the
account page (own password change). Decisions live in app/accounts/signin.py."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.accounts.passwords import MAX_LENGTH
from app.accounts.signin import SignIn, Verdict
from app.db.models import User
from app.services import audit
from app.ui.context import ui_context
from app.ui.security import (
    COOKIE,
    PRE_COOKIE,
    PREFIX,
    CsrfUser,
    safe_next,
    session_store,
    tokens_match,
)
from app.ui.templating import inline_css, render
from app.ui.views.common import Ctx, Db, PageUser

router = APIRouter()


def _sign_in_page(
    request: Request,
    next_path: str,
    error: str = "",
    status: int = 200,
    retry_after: int = 0,
    notice: str = "",
) -> Response:
    """The form, with its stylesheet inlined (allowed by hash) and a fresh pre-session token."""
    css, css_hash = inline_css()
    token = secrets.token_urlsafe(32)
    settings = ui_context(request).settings
    response = render(
        request,
        "sign_in.html",
        status,
        inline_css=css,
        pre_token=token,
        next=next_path,
        error=error,
        notice=notice,
        idle_min=round(settings.ui_idle_timeout_s / 60),
        absolute_h=round(settings.ui_absolute_timeout_s / 3600, 1),
    )
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src {css_hash}; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    secure = request.url.scheme == "https"
    response.set_cookie(
        PRE_COOKIE, token, httponly=True, samesite="strict", path=PREFIX, secure=secure
    )
    return response


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/sign-in")
def sign_in_form(request: Request, next: str = "", signed_out: str = "") -> Response:
    notice = "You were signed out everywhere." if signed_out == "everywhere" else ""
    return _sign_in_page(request, safe_next(next), notice=notice)


@router.post("/sign-in")
def sign_in(
    request: Request,
    ctx: Ctx,
    db: Db,
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=MAX_LENGTH)] = "",
    api_key: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Check the password or key; on success start a session under a new random id."""
    target = safe_next(next)
    if not tokens_match(request.cookies.get(PRE_COOKIE), csrf_token):
        return _sign_in_page(request, target, "The form expired; please try again.", 403)
    rules = SignIn(ctx.settings)
    if api_key.strip():
        verdict = rules.with_key(db, api_key, _address(request))
    elif username.strip() and password:
        verdict = rules.with_password(db, username, password, _address(request))
    else:
        return _sign_in_page(request, target, "Enter your user name and password.", 400)
    if not verdict.ok:
        return _sign_in_page(request, target, verdict.error, verdict.status, verdict.retry_after)
    return _start_session(request, ctx, verdict, target)


def _start_session(request: Request, ctx: Ctx, verdict: Verdict, target: str) -> Response:
    store = session_store(ctx)
    sid, _ = store.create(verdict.key_id, verdict.name, verdict.scopes, user_id=verdict.user_id)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        sid,
        max_age=int(store.absolute_s),
        httponly=True,
        samesite="strict",
        path=PREFIX,
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(PRE_COOKIE, path=PREFIX)
    return response


def _signed_out(message: str = "") -> Response:
    target = f"{PREFIX}/sign-in" + ("?signed_out=everywhere" if message else "")
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.post("/sign-out")
def sign_out(request: Request, ctx: Ctx, db: Db, user: CsrfUser) -> Response:
    session_store(ctx).drop(request.cookies.get(COOKIE))
    audit.record(db, user.key_id, "ui.sign_out", user_id=user.user_id)
    db.commit()
    return _signed_out()


@router.post("/sign-out-everywhere")
def sign_out_everywhere(ctx: Ctx, db: Db, user: CsrfUser) -> Response:
    """End every session of this account (or key): all browsers, all server processes."""
    store = session_store(ctx)
    if user.user_id is not None:
        ended = store.drop_user(user.user_id)
    else:
        ended = store.drop_key(user.key_id)  # type: ignore[arg-type]
    audit.record(db, user.key_id, "ui.sign_out_everywhere", None, {"sessions": ended},
                 user_id=user.user_id)  # fmt: skip
    db.commit()
    return _signed_out("everywhere")


@router.get("/account")
def account(request: Request, db: Db, user: PageUser) -> Response:
    row = db.get(User, user.user_id) if user.user_id else None
    return render(request, "account.html", account=row, message=request.query_params.get("done"))


@router.post("/account/password")
def change_password(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: CsrfUser,
    current: Annotated[str, Form(max_length=MAX_LENGTH)] = "",
    new: Annotated[str, Form(max_length=MAX_LENGTH)] = "",
    confirm: Annotated[str, Form(max_length=MAX_LENGTH)] = "",
) -> Response:
    """Change one's own password; every session ends (sign in again with the new one)."""
    row = db.get(User, user.user_id) if user.user_id else None
    if row is None:
        error = "API-key sessions have no password."
    elif new != confirm:
        error = "The new password and its confirmation differ."
    else:
        verdict = SignIn(ctx.settings).change_password(db, row.id, current, new, _address(request))
        if verdict.ok:
            return _signed_out("everywhere")
        error = verdict.error
    return render(request, "account.html", 400, account=row, error=error)
