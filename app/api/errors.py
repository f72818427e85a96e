"""application/problem+json (RFC 9457) for every error, with a stable `code`."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.services import faults
from app.services.errors import ProblemError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
TYPE_BASE = "https://endoseek.dev/problems/"
__all__ = ["ProblemError", "install", "problem_response"]


def problem_response(
    status: int, code: str, detail: str, title: str | None = None, **extra: Any
) -> JSONResponse:
    """A problem+json response."""
    body = {
        "type": TYPE_BASE + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if status in (429, 503) and "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    401: "unauthorized",
    403: "forbidden",
    413: "payload_too_large",
    415: "unsupported_media_type",
    400: "bad_request",
}


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append({"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))})
    return out


def _document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers send: every error response (4xx, 5xx,
    default) is application/problem+json with the Problem schema (FastAPI documents its 422
    as application/json HTTPValidationError)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
        for item in schema.get("paths", {}).values():
            for op in item.values():
                for status, resp in (
                    op.get("responses", {}) if isinstance(op, dict) else {}
                ).items():
                    if status == "default" or status[:1] in ("4", "5"):
                        content = resp.setdefault("content", {})
                        content.pop("application/json", None)
                        content["application/problem+json"] = problem
        schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
        schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into problem+json."""
    _document_problems(app)

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.detail, exc.title, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem_response(exc.status_code, code, detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        first = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:3])
        return problem_response(422, "validation_error", f"Invalid request: {first}", errors=errors)

    async def _environment(request: Request, exc: Exception) -> JSONResponse:
        """A full volume (507) or an unreachable database (503 + Retry-After); else a 500."""
        problem = faults.problem_for(exc, request.app.state.settings)
        if problem is None:
            raise exc  # to the catch-all: logged with its traceback, 500
        log.warning(
            "%s on %s %s: %s: %s",
            problem.code,
            request.method,
            request.url.path,
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        return problem_response(problem.status, problem.code, problem.detail, **problem.extra)

    # registered by type so they run in the exception middleware (the catch-all below runs in
    # the outermost one, which re-raises after answering)
    app.add_exception_handler(OSError, _environment)
    app.add_exception_handler(sa.exc.SQLAlchemyError, _environment)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal_error", "An unexpected error occurred.")
