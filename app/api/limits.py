"""ASGI middleware that bounds request bodies while they stream in: size and time.

Size: over `max_bytes`, or the limit of the path's prefix in `path_limits` (STOW-RS's own
`stow_max_request_bytes` under /dicomweb/; a compiled pattern matches the whole path, e.g.
the video upload route's own limit) -> 413 problem+json. Time: uvicorn has no
request-body timeout, so a client that sends headers and then trickles or stalls its body
would hold a connection, a task and its buffered bytes forever. Here every wait for body
bytes is bounded: no bytes for `idle_timeout_s`, or an average below `min_rate_bps` once the
first `idle_timeout_s` have passed -> 408 problem+json `request_timeout` with
`Connection: close` (uvicorn then closes the socket). Waits after the body is complete (a
handler listening for disconnect) are not bounded. A response sent before a declared body
has fully arrived (401, 404...) carries `Connection: close`: else a client could keep
trickling the unread body into the socket forever.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import problem_response


class BodyTimeoutError(Exception):
    """The body stalled after the response had started: aborting the app closes the socket."""


class BodyLimit:
    """Reject bodies over `max_bytes` (413) and bodies that stall or crawl (408)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        idle_timeout_s: float | None = None,
        min_rate_bps: float = 0,
        path_limits: Mapping[str | re.Pattern[str], int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})  # path prefix or pattern -> its max_bytes
        self.idle_timeout_s = idle_timeout_s  # None: no time bound (in-process tests)
        self.min_rate_bps = min_rate_bps  # 0: only the idle timeout applies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self._max_bytes(scope)
        declared = _content_length(scope)
        if declared is not None and declared > max_bytes:
            await self._reject(max_bytes, scope, receive, send)
            return
        state: dict[str, Any] = {
            "body": bool(declared) or _has_header(scope, b"transfer-encoding"),
            "seen": 0,
            "over": False,
            "late": False,  # the body stalled or fell below the minimum rate
            "done": False,  # the whole body has arrived
            "started": False,  # a response start reached the client (the app's or ours)
            "refused": False,  # ours: 413 or 408
            "begun": time.monotonic(),
        }

        async def limited() -> Message:
            if state["over"] or state["late"]:
                return {"type": "http.disconnect"}
            if state["done"] or self.idle_timeout_s is None:
                msg = await receive()
            else:
                try:
                    msg = await asyncio.wait_for(receive(), self._wait_s(state))
                except TimeoutError:
                    state["late"] = True
                    return {"type": "http.disconnect"}
            if msg["type"] == "http.request":
                state["seen"] += len(msg.get("body", b""))
                state["done"] = not msg.get("more_body", False)
                if state["seen"] > max_bytes:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded(msg: Message) -> None:
            if state["over"] or state["late"]:
                if msg["type"] == "http.response.start" and not state["started"]:
                    await self._refuse(state, max_bytes, scope, receive, send)
                return
            if msg["type"] == "http.response.start":
                state["started"] = True
                if state["body"] and not state["done"]:  # an unread body: do not keep the socket
                    msg = {**msg, "headers": [*msg.get("headers", []), (b"connection", b"close")]}
            await send(msg)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not (state["over"] or state["late"]):
                raise
        if state["late"] and state["started"] and not state["refused"]:
            raise BodyTimeoutError("request body timed out after the response started")
        if (state["over"] or state["late"]) and not state["started"]:
            await self._refuse(state, max_bytes, scope, receive, send)

    def _max_bytes(self, scope: Scope) -> int:
        """The size limit of this request's path: its prefix's in path_limits, else max_bytes."""
        path = scope.get("path", "")
        for prefix, limit in self.path_limits.items():
            if isinstance(prefix, re.Pattern):
                if prefix.fullmatch(path):
                    return limit
            elif path.startswith(prefix):
                return limit
        return self.max_bytes

    def _wait_s(self, state: dict[str, Any]) -> float:
        """Seconds the next body chunk may take: the idle timeout, or less to keep the rate."""
        assert self.idle_timeout_s is not None
        if self.min_rate_bps <= 0:
            return self.idle_timeout_s
        # After a grace of one idle timeout, the body must average at least min_rate_bps.
        deadline = state["begun"] + self.idle_timeout_s + state["seen"] / self.min_rate_bps
        return max(0.0, min(self.idle_timeout_s, deadline - time.monotonic()))

    async def _refuse(
        self, state: dict[str, Any], max_bytes: int, scope: Scope, receive: Receive, send: Send
    ) -> None:
        state["started"] = state["refused"] = True
        if state["over"]:
            await self._reject(max_bytes, scope, receive, send)
            return
        resp = problem_response(
            408, "request_timeout", "The request body arrived too slowly or stopped arriving."
        )
        resp.headers["Connection"] = "close"
        await resp(scope, receive, send)

    async def _reject(self, max_bytes: int, scope: Scope, receive: Receive, send: Send) -> None:
        resp = problem_response(
            413, "payload_too_large", f"The request body exceeds {max_bytes} bytes."
        )
        resp.headers["Connection"] = "close"
        await resp(scope, receive, send)


def _has_header(scope: Scope, name: bytes) -> bool:
    return any(key == name for key, _ in scope.get("headers", []))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
