"""uvicorn's httptools protocol with a deadline and a size cap on the request line and headers.

uvicorn only times out idle keep-alive connections: a client that opens a socket and sends
nothing, or trickles its headers, holds the connection forever, and httptools puts no bound
on header size. This subclass arms a timer when a connection opens and when each request
begins, and closes the socket if the headers are not complete in time (no response: the
client is not speaking HTTP at a usable pace). Headers over the cap get 431 and a close. The
body's own limits are the ASGI middleware's (app/api/limits.py).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 32\r\n"
    b"connection: close\r\n\r\n"
    b"Request header fields too large."
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol + `header_timeout_s` and `max_header_bytes` (set by `protocol_for`)."""

    header_timeout_s: float = 30.0
    max_header_bytes: int = 64 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if not self.transport.is_closing():  # refused or timed out: the rest is not parsed
            super().data_received(data)

    # Parser callbacks: once the connection is refused, the rest of this chunk is ignored.
    def on_url(self, url: bytes) -> None:
        if self._count(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._count(len(name) + len(value) + 4):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        if not self.transport.is_closing():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.transport.is_closing():
            super().on_message_complete()

    def _count(self, n: int) -> bool:
        """Add n header bytes; False (and 431, close) once the cap is passed."""
        if self.transport.is_closing():
            return False
        self._header_bytes += n
        if self._header_bytes <= self.max_header_bytes:
            return True
        self._cancel_header_timer()
        self.transport.write(_431)
        self.transport.close()
        return False

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.info("closing a connection whose request headers did not arrive in time")
            self.transport.close()


def protocol_for(header_timeout_s: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """A protocol class carrying these limits (uvicorn builds one instance per connection)."""
    return type(
        "EndoSeekHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes},
    )
