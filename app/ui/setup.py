"""Mount the web UI on the service: routes, error handlers and security headers for /ui."""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ui.context import UiContext
from app.ui.security import PREFIX, CsrfFailed, ScopeMissing, SignInRequired
from app.ui.sessions import SessionStore
from app.ui.templating import render

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _wants_json(request: Request) -> bool:
    return request.url.path.endswith(".json") or "application/json" in request.headers.get(
        "accept", ""
    )


class UiSecurityHeaders:
    """Security headers on every /ui response. Plain ASGI, so API requests pass straight
    through (an `@app.middleware("http")` function wrapped every upload and search in an
    extra task and response stream)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP)
                headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Add the UI to `app` once (idempotent): call after the app's state is set up."""
    if getattr(app.state, "ui", None) is not None:
        return
    from app.ui.views import router

    app.state.ui = UiContext(app.state, SessionStore())
    app.include_router(router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _: SignInRequired) -> Response:
        if _wants_json(request) or request.method != "GET":
            return JSONResponse({"detail": "sign in first", "code": "unauthorized"}, 401)
        target = f"{PREFIX}/sign-in?next={quote(request.url.path, safe='/')}"
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(ScopeMissing)
    async def _scope(request: Request, exc: ScopeMissing) -> Response:
        message = f"Your key lacks the '{exc.scope}' scope needed for this action."
        if _wants_json(request):
            return JSONResponse({"detail": message, "code": "forbidden"}, 403)
        return render(request, "error.html", 403, title="Not allowed", message=message)

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, _: CsrfFailed) -> Response:
        message = "The form expired or did not come from this site. Reload the page and retry."
        if _wants_json(request):
            return JSONResponse({"detail": message, "code": "csrf_failed"}, 403)
        return render(request, "error.html", 403, title="Form expired", message=message)

    app.add_middleware(UiSecurityHeaders)
