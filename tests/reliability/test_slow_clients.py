"""Slow and stuck clients against a real `endoseek serve`: 160 raw loopback sockets that stall
or trickle their headers or body do not starve a normal client, and the server closes them.

Four kinds, 40 sockets each, reopened as the server closes them while the normal client works
(until 320 have been closed): headers then a body stalled after a few bytes (-> 408 after the
idle timeout); headers then a body trickled one byte per 0.25 s (-> 408 by the minimum rate,
the idle timeout never trips); half a request line then nothing; headers trickled a byte at a
time (both closed without an answer after the header timeout). The normal client's median
latencies for /health and for an upload + search round are compared with a baseline measured
first in the same test (ratios).
"""

from __future__ import annotations

import selectors
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image as PILImage

from app.db import migrate
from tests.app.conftest import create_keys, jpeg_bytes
from tests.app.server import free_port, server_env, start_server, stop_server, wait_ready
from tests.timing import scaled

pytestmark = pytest.mark.slow

IDLE_S = scaled(2.0)  # the server's body idle timeout, shortened for the test
HEADER_S = scaled(3.0)  # the server's header timeout, shortened for the test
MIN_RATE_BPS = 200  # trickled bodies send 4 B/s
TRICKLE_EVERY_S = 0.25
PER_KIND = 40
MAX_OPENS = 2000  # bound on the attacker's reconnects
ROUNDS = 8  # normal-client rounds in the baseline
MAX_ROUNDS = 500  # bound on the rounds under attack
BOUNDARY = "slowclientboundary"
KINDS = ("body_stall", "body_trickle", "header_stall", "header_trickle")


@dataclass
class Conn:
    kind: str
    sock: socket.socket
    opened: float
    pending: bytes = b""  # bytes still to trickle
    next_send: float = 0.0
    got: bytes = b""


@dataclass
class Closed:
    kind: str
    took: float  # seconds from connect to the server's close
    got: bytes


@dataclass
class Attack:
    """One thread: keeps PER_KIND sockets of each kind open, records how the server ends them."""

    port: int
    auth: str
    all_open: threading.Event = field(default_factory=threading.Event)
    stop_opening: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    closed: list[Closed] = field(default_factory=list)
    opens: int = 0
    left_open: int = -1

    def _request_head(self) -> bytes:
        return (
            "POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {self.auth}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            "Content-Length: 100000\r\n\r\n"
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"'
            "\r\nContent-Type: image/jpeg\r\n\r\n"
        ).encode()

    def _open(self, kind: str, sel: selectors.BaseSelector) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=scaled(10))
        sock.setblocking(False)
        now = time.monotonic()
        conn = Conn(kind, sock, now, next_send=now)
        head = self._request_head()
        if kind == "body_stall":
            sock.sendall(head + b"\xff\xd8\xff")
        elif kind == "body_trickle":
            sock.sendall(head)
            conn.pending = b"x" * 100_000
        elif kind == "header_stall":
            sock.sendall(b"POST /v1/sea")
        else:
            conn.pending = head
        sel.register(sock, selectors.EVENT_READ, conn)
        self.opens += 1

    def _end(self, conn: Conn, sel: selectors.BaseSelector) -> None:
        sel.unregister(conn.sock)
        conn.sock.close()
        self.closed.append(Closed(conn.kind, time.monotonic() - conn.opened, conn.got))

    def run(self, drain_s: float) -> None:
        sel = selectors.DefaultSelector()
        live = dict.fromkeys(KINDS, 0)
        drain_until = None
        while True:
            if not self.stop_opening.is_set():
                for kind in KINDS:
                    while live[kind] < PER_KIND and self.opens < MAX_OPENS:
                        self._open(kind, sel)
                        live[kind] += 1
                self.all_open.set()
            elif drain_until is None:
                drain_until = time.monotonic() + drain_s
            if drain_until is not None and (not sel.get_map() or time.monotonic() > drain_until):
                break
            for key, _ in sel.select(timeout=0.05):
                conn: Conn = key.data
                try:
                    data = conn.sock.recv(65536)
                except (ConnectionResetError, BlockingIOError) as exc:
                    if isinstance(exc, BlockingIOError):
                        continue
                    data = b""
                conn.got += data
                if not data:
                    self._end(conn, sel)
                    live[conn.kind] -= 1
            now = time.monotonic()
            for key in list(sel.get_map().values()):
                conn = key.data
                if conn.pending and now >= conn.next_send:
                    try:
                        conn.sock.send(conn.pending[:1])
                    except OSError:
                        continue  # closed by the server: the read side reports it
                    conn.pending = conn.pending[1:]
                    conn.next_send = now + TRICKLE_EVERY_S
        self.left_open = len(sel.get_map())
        for key in list(sel.get_map().values()):
            key.data.sock.close()
        sel.close()
        self.finished.set()


def _photo(i: int) -> bytes:
    img = PILImage.new("RGB", (64, 64), ((i * 53) % 256, (i * 29) % 256, 128))
    img.putpixel((i % 64, (i // 64) % 64), (255, 255, 255))
    return jpeg_bytes(img)


def _round(client: httpx.Client, keys: dict, pid: str, i: int) -> tuple[float, float]:
    """One normal client's round: /health, then upload a photo and search with it."""
    t0 = time.monotonic()
    assert client.get("/health").status_code == 200
    t1 = time.monotonic()
    data = _photo(i)
    up = client.post(
        f"/v1/procedures/{pid}/images",
        files={"files": (f"n{i}.jpg", data, "image/jpeg")},
        headers=keys["ingest"],
    )
    assert up.status_code == 201, up.text
    found = client.post(
        "/v1/search", files={"file": ("q.jpg", data, "image/jpeg")}, headers=keys["search"]
    )
    assert found.status_code == 200, found.text
    assert found.json()["results"][0]["score"] > 0.999
    return t1 - t0, time.monotonic() - t1


def test_slow_and_stuck_clients_do_not_starve_a_normal_client(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'slow.db'}"
    migrate.upgrade(url)
    keys = create_keys(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(
        tmp_path,
        url,
        port,
        ENDOSEEK_BODY_IDLE_TIMEOUT_S=str(IDLE_S),
        ENDOSEEK_BODY_MIN_RATE_BPS=str(MIN_RATE_BPS),
        ENDOSEEK_HEADER_TIMEOUT_S=str(HEADER_S),
    )
    log = tmp_path / "server.log"
    server = start_server(env, log)
    attack = Attack(port, keys["search"]["Authorization"])
    worker = threading.Thread(target=attack.run, args=(max(IDLE_S, HEADER_S) + scaled(15),))
    try:
        wait_ready(base, server)
        with httpx.Client(base_url=base, timeout=scaled(60)) as client:
            pid = client.post(
                "/v1/procedures",
                json={"source": "slow", "external_id": "clients"},
                headers=keys["ingest"],
            ).json()["id"]
            _round(client, keys, pid, 0)  # warm-up: first search loads lazily built state
            baseline = [_round(client, keys, pid, 1 + i) for i in range(ROUNDS)]
            worker.start()
            assert attack.all_open.wait(scaled(60)) and attack.opens >= len(KINDS) * PER_KIND
            # work on while the server ends and the attacker reopens every kind of socket
            attacked: list[tuple[float, float]] = []
            end = time.monotonic() + max(IDLE_S, HEADER_S) + scaled(120)
            while len(attacked) < MAX_ROUNDS and time.monotonic() < end:
                attacked.append(_round(client, keys, pid, 100 + len(attacked)))
                if len(attacked) >= ROUNDS and len(attack.closed) >= 2 * len(KINDS) * PER_KIND:
                    break
            assert len(attack.closed) >= 2 * len(KINDS) * PER_KIND, len(attack.closed)
            attack.stop_opening.set()
            assert attack.finished.wait(max(IDLE_S, HEADER_S) + scaled(60))
            assert client.get("/health").status_code == 200
    finally:
        attack.stop_opening.set()
        if worker.is_alive():
            worker.join(timeout=scaled(90))
        stop_server(server)

    # the normal client kept its usual latency (medians; generous ratios)
    health = [h for h, _ in baseline], [h for h, _ in attacked]
    work = [w for _, w in baseline], [w for _, w in attacked]
    health_ratio = statistics.median(health[1]) / statistics.median(health[0])
    work_ratio = statistics.median(work[1]) / statistics.median(work[0])
    print(f"medians: /health {health_ratio:.2f}x, upload+search {work_ratio:.2f}x; "
          f"{attack.opens} attack sockets")  # fmt: skip
    assert health_ratio < 10 and work_ratio < 4, (health, work)

    # every stalled or trickling socket was closed by the server, none by the test
    assert attack.left_open == 0
    by_kind = {k: [c for c in attack.closed if c.kind == k] for k in KINDS}
    assert all(len(by_kind[k]) >= PER_KIND for k in KINDS), {k: len(v) for k, v in by_kind.items()}
    slack = scaled(10)
    for kind in ("body_stall", "body_trickle"):
        closes = by_kind[kind]
        assert all(IDLE_S * 0.9 <= c.took <= IDLE_S + slack for c in closes), (
            kind, sorted(c.took for c in closes)[:: max(1, len(closes) // 10)]
        )  # fmt: skip
        answered = [c for c in closes if c.got.startswith(b"HTTP/1.1 408")]
        assert len(answered) >= 0.9 * len(closes), (kind, closes[0].got[:200])
        assert all(b"request_timeout" in c.got and b"connection: close" in c.got.lower()
                   for c in answered)  # fmt: skip
    for kind in ("header_stall", "header_trickle"):
        closes = by_kind[kind]
        assert all(HEADER_S * 0.9 <= c.took <= HEADER_S + slack for c in closes), (
            kind, sorted(c.took for c in closes)[:: max(1, len(closes) // 10)]
        )  # fmt: skip
        assert all(c.got == b"" for c in closes)  # no answer to a request never finished
