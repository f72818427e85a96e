"""Database outage: the test's own PostgreSQL cluster is stopped in the middle of a stream.

A real `endoseek serve` runs on a cluster this test owns (tests/pg_cluster.py, never the
shared server). Two threads keep uploading and searching; the cluster is stopped with
`pg_ctl stop -m immediate` (every connection cut, like a crash). While it is down every
request answers 503 `database_unavailable` with Retry-After - never a 500, never a hang past
a bounded time - and /ready is 503. The cluster is started again on the same port and the
same server process answers again; every photo acknowledged before or after is in the
database and found by search, and the index catches up with the database.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image as PILImage

from app.db import migrate
from app.db.models import Image
from app.db.session import create_db_engine
from tests.app.conftest import create_keys, jpeg_bytes
from tests.app.server import free_port, server_env, start_server, stop_server, wait_ready
from tests.pg_cluster import PgCluster, pg_cluster  # noqa: F401 - the fixture
from tests.timing import scaled

pytestmark = pytest.mark.slow

RETRY_AFTER_S = 3
REFUSED = 20  # 503 answers of each kind seen before the cluster is started again
DEADLINE_S = 60
REQUEST_TIMEOUT_S = 30  # a request that takes this long counts as a hang
BOUNDED_503_S = 10  # a 503 must come at least this fast (connect timeout is 2 s here)
PROBLEM = "application/problem+json"


def _photo(i: int) -> bytes:
    """A small unique JPEG: colour and a pixel pattern derived from i."""
    img = PILImage.new("RGB", (64, 64), ((i * 37) % 256, (i * 11) % 256, (i * 5) % 256))
    for b in range(16):
        if (i >> b) & 1:
            img.putpixel((b * 4, b * 3), (255, 255, 255))
    return jpeg_bytes(img, quality=95)


@dataclass
class Answer:
    kind: str  # "upload" | "search"
    status: int
    seconds: float
    at: float  # time.monotonic() when the answer came
    code: str | None = None
    retry_after: str | None = None
    problem: bool = False


class Stream:
    """An uploader and a searcher thread; records every answer and what was acknowledged."""

    def __init__(self, base: str, keys: dict, pid: str) -> None:
        self.base, self.keys, self.pid = base, keys, pid
        self.answers: list[Answer] = []
        self.transport_errors: list[str] = []
        self.acked: dict[str, tuple[str, bytes]] = {}  # uid -> (sha256, bytes)
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(self._upload,), name="uploader"),
            threading.Thread(target=self._loop, args=(self._search,), name="searcher"),
        ]
        self._n = 0

    def _loop(self, step) -> None:  # noqa: ANN001 - one of the two request makers
        with httpx.Client(base_url=self.base, timeout=scaled(REQUEST_TIMEOUT_S)) as client:
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    kind, r, extra = step(client)
                except httpx.HTTPError as exc:
                    with self.cond:
                        self.transport_errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                now = time.monotonic()
                problem = r.headers.get("content-type", "").startswith(PROBLEM)
                ans = Answer(
                    kind,
                    r.status_code,
                    now - t0,
                    now,
                    r.json().get("code") if problem else None,
                    r.headers.get("retry-after"),
                    problem,
                )
                with self.cond:
                    self.answers.append(ans)
                    if extra is not None:
                        self.acked[extra[0]] = extra[1]
                    self.cond.notify_all()

    def _upload(self, client: httpx.Client):  # noqa: ANN202
        with self.cond:
            self._n += 1
            data = _photo(self._n)
        r = client.post(
            f"/v1/procedures/{self.pid}/images",
            files=[("files", (f"p{self._n}.jpg", data, "image/jpeg"))],
            headers=self.keys["ingest"],
        )
        extra = None
        if r.status_code == 201:
            item = r.json()["items"][0]
            extra = (item["id"], (item["sha256"], data))
        return "upload", r, extra

    def _search(self, client: httpx.Client):  # noqa: ANN202
        with self.cond:
            known = list(self.acked.items())[-1:]
        if known:  # by id of the newest acknowledged photo, else by upload
            body = {"image_id": known[0][0], "k": 5}
            r = client.post("/v1/search", json=body, headers=self.keys["search"])
        else:
            files = {"file": ("q.jpg", _photo(0), "image/jpeg")}
            r = client.post("/v1/search", files=files, headers=self.keys["search"])
        return "search", r, None

    def wait_for(self, what: str, predicate) -> None:  # noqa: ANN001
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate(self.answers), timeout=scaled(DEADLINE_S))
        assert ok, f"timed out waiting for {what}; errors: {self.transport_errors[:3]}"

    def __enter__(self) -> Stream:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=scaled(DEADLINE_S))


def _count(answers: list[Answer], kind: str, status: int, since: float) -> int:
    return sum(1 for a in answers if a.kind == kind and a.status == status and a.at > since)


def _live(url: str) -> dict[str, str]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(Image.uid, Image.sha256).where(Image.deleted_at.is_(None))
            ).all()
    finally:
        engine.dispose()
    return {str(uid): sha for uid, sha in rows}


def test_database_outage_mid_stream_answers_503_and_recovers_without_restart(
    tmp_path: Path,
    pg_cluster: PgCluster,  # noqa: F811 - the fixture imported above
) -> None:
    url = pg_cluster.url
    migrate.upgrade(url)
    keys = create_keys(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(
        tmp_path,
        url,
        port,
        ENDOSEEK_DB_RETRY_AFTER_S=str(RETRY_AFTER_S),
        ENDOSEEK_DB_CONNECT_TIMEOUT_S="2",
        ENDOSEEK_MODEL_CHECK_INTERVAL_S="1",
    )
    server = start_server(env, tmp_path / "server.log")
    try:
        wait_ready(base, server)
        r = httpx.post(
            f"{base}/v1/procedures",
            json={"source": "outage", "external_id": "stream"},
            headers=keys["ingest"],
            timeout=scaled(REQUEST_TIMEOUT_S),
        )
        assert r.status_code == 201, r.text
        with Stream(base, keys, r.json()["id"]) as stream:
            stream.wait_for(
                "acknowledged uploads and searches before the outage",
                lambda a: _count(a, "upload", 201, 0) >= 5 and _count(a, "search", 200, 0) >= 3,
            )
            pg_cluster.stop("immediate")
            down = time.monotonic()
            stream.wait_for(
                "503 answers during the outage",
                lambda a: (
                    _count(a, "upload", 503, down) >= REFUSED
                    and _count(a, "search", 503, down) >= REFUSED
                ),
            )
            ready = httpx.get(f"{base}/ready", timeout=scaled(REQUEST_TIMEOUT_S))
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["database"] is False
            assert ready.headers["retry-after"] == str(RETRY_AFTER_S)
            pg_cluster.start()
            up = time.monotonic()
            stream.wait_for(
                "acknowledged uploads and searches after the outage",
                lambda a: _count(a, "upload", 201, up) >= 5 and _count(a, "search", 200, up) >= 3,
            )
        assert server.poll() is None, "the server must survive the outage without a restart"

        answers = stream.answers
        assert not stream.transport_errors, stream.transport_errors[:5]
        unexpected = [a for a in answers if a.status not in (200, 201, 503)]
        assert not unexpected, unexpected[:5]
        refused = [a for a in answers if a.status == 503]
        assert all(
            a.problem and a.code == "database_unavailable" and a.retry_after == str(RETRY_AFTER_S)
            for a in refused
        ), refused[:5]
        slowest = max(a.seconds for a in refused)
        assert slowest < scaled(BOUNDED_503_S), slowest
        assert httpx.get(f"{base}/ready", timeout=scaled(REQUEST_TIMEOUT_S)).status_code == 200

        # no acknowledged photo is lost: each is in the database and found by its own bytes
        live = _live(url)
        lost = {uid for uid, (sha, _) in stream.acked.items() if live.get(uid) != sha}
        assert not lost, sorted(lost)[:5]
        with httpx.Client(base_url=base, timeout=scaled(REQUEST_TIMEOUT_S)) as client:
            for uid, (_, data) in stream.acked.items():
                r = client.post(
                    "/v1/search",
                    files={"file": ("q.jpg", data, "image/jpeg")},
                    data={"k": "20"},
                    headers=keys["search"],
                )
                assert r.status_code == 200, r.text
                scores = {h["image"]["id"]: h["score"] for h in r.json()["results"]}
                assert scores.get(uid, 0) > 0.999, uid
            # the index equals the database again (a commit whose answer was lost in the cut
            # is added by the periodic catch-up)
            deadline = time.monotonic() + scaled(DEADLINE_S)
            while (vectors := client.get("/ready").json()["vectors"]) != len(_live(url)):
                assert time.monotonic() < deadline, (vectors, len(_live(url)))
                time.sleep(0.2)  # poll interval, bounded by the deadline above
        back = min(a.at for a in answers if a.at > up and a.status in (200, 201)) - up
        print(  # the figures docs/reliability.md quotes
            f"\nacked={len(stream.acked)} answers={len(answers)} refused_503={len(refused)} "
            f"slowest_503={slowest:.3f}s down={up - down:.1f}s first_2xx_after_start={back:.2f}s "
            f"live_rows={len(live)}"
        )
    finally:
        stop_server(server)
