"""BodyLimit's time bounds, in process: a fake ASGI receive that stalls or trickles.

The waits here are the test's own tiny timeouts (tens of milliseconds); every outer bound
comes from tests/timing.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

from app.api.limits import BodyLimit, BodyTimeoutError
from app.api.server_options import uvicorn_options
from app.settings import Settings
from tests.timing import scaled

Message = dict
Receive = Callable[[], Awaitable[Message]]


async def _echo_len(scope: dict, receive: Receive, send: Callable) -> None:
    """The app under the middleware: reads the whole body, answers its length."""
    body = await Request(scope, receive).body()
    await JSONResponse({"length": len(body)})(scope, receive, send)


def _scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict:
    return {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": headers or [(b"content-type", b"application/octet-stream")],
    }


def _call(
    mw: BodyLimit, receive: Receive, scope: dict | None = None
) -> tuple[int, dict[bytes, bytes], bytes, float]:
    """Run one request through `mw`; status, headers, body and seconds taken."""
    sent: list[Message] = []

    async def send(msg: Message) -> None:
        sent.append(msg)

    async def main() -> float:
        t0 = time.monotonic()
        await asyncio.wait_for(mw(scope or _scope(), receive, send), scaled(10))
        return time.monotonic() - t0

    took = asyncio.run(main())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body, took


def _stalling(chunks: list[bytes]) -> tuple[Receive, list[int]]:
    """A receive that delivers `chunks` (more to come) and then never sends another byte."""
    delivered: list[int] = []

    async def receive() -> Message:
        if chunks:
            chunk = chunks.pop(0)
            delivered.append(len(chunk))
            return {"type": "http.request", "body": chunk, "more_body": True}
        await asyncio.Event().wait()  # a client that stopped sending: never set
        raise AssertionError("unreachable")

    return receive, delivered


def _assert_408(status: int, headers: dict[bytes, bytes], body: bytes) -> None:
    assert status == 408
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"connection"] == b"close"
    assert json.loads(body)["code"] == "request_timeout"


def test_a_stalled_body_gets_408_after_the_idle_timeout() -> None:
    mw = BodyLimit(_echo_len, max_bytes=1000, idle_timeout_s=0.05)
    receive, delivered = _stalling([b"abc", b"def"])
    status, headers, body, took = _call(mw, receive)
    _assert_408(status, headers, body)
    assert delivered == [3, 3]
    assert 0.05 <= took < scaled(5)


def test_a_body_under_the_minimum_rate_gets_408_though_it_never_pauses_long() -> None:
    # one byte every 5 ms (200 B/s) never trips the 0.1 s idle timeout; 10 kB/s is required
    delivered: list[int] = []

    async def trickle() -> Message:
        await asyncio.sleep(0.005)
        delivered.append(1)
        assert len(delivered) < 10_000, "the rate bound never fired"
        return {"type": "http.request", "body": b"x", "more_body": True}

    mw = BodyLimit(_echo_len, max_bytes=10**6, idle_timeout_s=0.1, min_rate_bps=10_000)
    status, headers, body, took = _call(mw, trickle)
    _assert_408(status, headers, body)
    assert took >= 0.1  # the grace of one idle timeout came first
    assert len(delivered) < 1_000


def test_a_steady_body_passes_with_the_timeouts_on() -> None:
    chunks = [b"x" * 100] * 50

    async def receive() -> Message:
        return {"type": "http.request", "body": chunks.pop(), "more_body": bool(chunks)}

    mw = BodyLimit(_echo_len, max_bytes=10**6, idle_timeout_s=0.05, min_rate_bps=1000)
    status, _, body, _ = _call(mw, receive)
    assert status == 200 and json.loads(body) == {"length": 5000}


def test_waiting_for_disconnect_after_the_body_is_not_timed_out() -> None:
    """A handler that listens for the client going away must not be cut off by the idle bound."""
    events: list[Message] = [{"type": "http.request", "body": b"hello", "more_body": False}]

    async def receive() -> Message:
        if events:
            return events.pop(0)
        await asyncio.sleep(0.2)  # four idle timeouts, then the client leaves
        return {"type": "http.disconnect"}

    async def app(scope: dict, receive: Receive, send: Callable) -> None:
        body = await Request(scope, receive).body()
        after = await receive()
        text = f"{len(body)} {after['type']}"
        await PlainTextResponse(text)(scope, receive, send)

    status, _, body, _ = _call(BodyLimit(app, max_bytes=100, idle_timeout_s=0.05), receive)
    assert (status, body) == (200, b"5 http.disconnect")


def test_a_stall_after_the_response_started_aborts_the_connection() -> None:
    receive, _ = _stalling([b"a"])

    async def app(scope: dict, receive: Receive, send: Callable) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive())["type"] == "http.request":
            pass
        await send({"type": "http.response.body", "body": b"partial"})

    with pytest.raises(BodyTimeoutError):
        _call(BodyLimit(app, max_bytes=100, idle_timeout_s=0.05), receive)


def test_the_size_cap_still_answers_413() -> None:
    receive, _ = _stalling([b"x" * 60, b"x" * 60])
    status, headers, body, _ = _call(BodyLimit(_echo_len, 100, idle_timeout_s=5.0), receive)
    assert status == 413 and headers[b"connection"] == b"close"
    assert json.loads(body)["code"] == "payload_too_large"


async def _early_401(scope: dict, receive: Receive, send: Callable) -> None:
    """An app that answers before reading the body (as authentication does)."""
    await PlainTextResponse("no", status_code=401)(scope, receive, send)


def test_an_answer_before_a_declared_body_arrived_closes_the_connection() -> None:
    receive, delivered = _stalling([b"never read"])
    scope = _scope([(b"content-length", b"1000000")])
    status, headers, _, _ = _call(BodyLimit(_early_401, 10**7, idle_timeout_s=5.0), receive, scope)
    # else a client could trickle the unread megabyte into a kept-alive socket forever
    assert status == 401 and headers[b"connection"] == b"close" and delivered == []


def test_an_answer_to_a_request_without_a_body_keeps_the_connection() -> None:
    receive, _ = _stalling([])
    scope = _scope([(b"content-length", b"0")])
    status, headers, _, _ = _call(BodyLimit(_early_401, 100, idle_timeout_s=5.0), receive, scope)
    assert status == 401 and b"connection" not in headers


def test_serve_passes_the_connection_limits_to_uvicorn() -> None:
    settings = Settings(
        _env_file=None,
        keep_alive_timeout_s=7,
        limit_concurrency=0,
        backlog=99,
        max_header_bytes=4096,
        header_timeout_s=3.0,
    )
    opts = uvicorn_options(settings)
    assert opts["timeout_keep_alive"] == 7 and opts["backlog"] == 99
    assert opts["limit_concurrency"] is None  # 0 means no cap
    assert opts["h11_max_incomplete_event_size"] == 4096
    assert opts["http"].header_timeout_s == 3.0 and opts["http"].max_header_bytes == 4096
