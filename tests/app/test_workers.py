"""`endoseek serve --workers N` (issue 18, item 2).

- With the in-process FAISS index (or a one-process Milvus Lite file) several workers are
  refused with a message saying what to set.
- Two real workers over a Milvus Lite *server*: the supervisor runs two processes, one of them
  elected for the singletons (the DICOM receiver binds its port once: a second bind would stop
  the service), every worker sees every image, a re-index run by the CLI reaches both workers,
  rate limits are counted once across workers (Redis at 127.0.0.1:6379), and a SIGKILLed
  supervisor takes its workers with it (none left holding the port).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy as sa

from app.db import migrate
from app.db.models import Model
from app.db.session import create_db_engine, create_session_factory, session_scope
from app.services import keys
from tests.app.conftest import create_keys, jpeg_bytes
from tests.app.server import REPO, free_port, server_env, start_server, stop_server, wait_ready
from tests.timing import scaled

REDIS_URL = "redis://127.0.0.1:6379/0"


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "app.cli.main", "serve", *args]
    return subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=scaled(120)
    )


def test_several_workers_need_a_shared_index(tmp_path: Path, sqlite_url: str) -> None:
    env = server_env(tmp_path, sqlite_url, free_port(), ENDOSEEK_VECTOR_BACKEND="faiss")
    done = _serve(env, "--workers", "2")
    assert done.returncode == 2
    assert "ENDOSEEK_VECTOR_BACKEND=faiss" in done.stderr and "milvus" in done.stderr

    env |= {"ENDOSEEK_VECTOR_BACKEND": "milvus", "ENDOSEEK_MILVUS_URI": str(tmp_path / "m.db")}
    env["ENDOSEEK_WORKERS"] = "3"  # the setting, not only the option
    done = _serve(env)
    assert done.returncode == 2
    assert "Milvus Lite" in done.stderr and "http://" in done.stderr


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        message = f"Redis at 127.0.0.1:6379 not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(reason=message)


@pytest.fixture
def bundle_b(tmp_path: Path) -> Path:
    """A second weight-free bundle (other histogram bins: another model id and dim)."""
    from embedder import create_model, model_config, save_bundle

    cfg = model_config("baseline")
    branch = cfg.branches[0]
    params = {**branch.params, "hue_bins": 12, "edge_bins": 6}
    branches = [branch.model_copy(update={"params": params})]
    cfg = cfg.model_copy(update={"name": "baseline-variant-workers", "branches": branches})
    save_bundle(create_model(cfg), cfg, tmp_path / "bundle-b")
    return tmp_path / "bundle-b"


def _workers(proc: subprocess.Popen) -> list[psutil.Process]:
    """The supervisor's live worker processes (multiprocessing's helpers excluded)."""
    kids = psutil.Process(proc.pid).children()
    return [p for p in kids if "spawn_main" in " ".join(p.cmdline())]


def _fresh(base: str) -> httpx.Client:
    """One TCP connection per request, so the kernel hands each to either worker."""
    return httpx.Client(
        base_url=base, timeout=scaled(60), limits=httpx.Limits(max_keepalive_connections=0)
    )


@pytest.mark.slow
def test_two_workers_share_index_model_switch_and_rate_limits(
    tmp_path: Path,
    sqlite_url: str,
    milvus_lite_uri: str,
    bundle_b: Path,
    synthetic_images,
) -> None:
    _redis_or_skip()
    migrate.upgrade(sqlite_url)
    hdr = create_keys(sqlite_url)
    with session_scope(create_session_factory(create_db_engine(sqlite_url))) as session:
        _, limited = keys.create_key(session, "rate-test", ["search"])
    limit = 25
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(
        tmp_path,
        sqlite_url,
        port,
        ENDOSEEK_VECTOR_BACKEND="milvus",
        ENDOSEEK_MILVUS_URI=milvus_lite_uri,
        ENDOSEEK_MILVUS_PREFIX=f"w{port}",
        ENDOSEEK_REDIS_URL=REDIS_URL,
        ENDOSEEK_RATE_LIMIT_PER_MINUTE=str(limit),
        ENDOSEEK_MODEL_CHECK_INTERVAL_S="0.5",
        ENDOSEEK_DICOM_LISTEN="true",  # a singleton: bound once, by the elected worker
        ENDOSEEK_DICOM_PORT=str(free_port()),
    )
    log = tmp_path / "serve.log"
    server = start_server(env | {"ENDOSEEK_WORKERS": "2"}, log)
    try:
        wait_ready(base, server)
        workers = _workers(server)
        assert len(workers) == 2, log.read_text()[-3000:]
        holder = int((tmp_path / "index" / "leader.lock").read_text())
        assert holder in {w.pid for w in workers}

        with _fresh(base) as c:
            body = {"source": "workers", "external_id": "1", "kind": "colonoscopy"}
            pid = c.post("/v1/procedures", json=body, headers=hdr["ingest"]).json()["id"]
            uids = []
            for i, img in enumerate(synthetic_images):
                data = jpeg_bytes(img)
                files = {"files": (f"{i}.jpg", data, "image/jpeg")}
                r = c.post(f"/v1/procedures/{pid}/images", files=files, headers=hdr["ingest"])
                assert r.status_code == 201, r.text
                uids.append(r.json()["items"][0]["id"])
            # whichever worker answers, it finds every image: one shared collection
            for uid in uids * 2:
                r = c.post("/v1/search", json={"image_id": uid, "k": 1}, headers=hdr["search"])
                assert r.status_code == 200, r.text
                old_model = r.json()["model_id"]

        # a re-index by the CLI flips the active model; both workers switch
        job = subprocess.run(
            [sys.executable, "-m", "app.cli.jobs", "reindex", "--bundle", str(bundle_b)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=scaled(300),
        )
        assert job.returncode == 0, job.stdout + job.stderr
        engine = create_db_engine(sqlite_url)
        with engine.connect() as conn:
            new_model = conn.scalar(sa.select(Model.id).where(Model.active.is_(True)))
        engine.dispose()
        assert new_model != old_model
        seen: Counter[str] = Counter()
        deadline = time.monotonic() + scaled(120)
        with _fresh(base) as c:
            while time.monotonic() < deadline:
                seen.clear()
                for uid in uids[:4] * 2:  # 8 fresh connections
                    r = c.post("/v1/search", json={"image_id": uid, "k": 1}, headers=hdr["admin"])
                    assert r.status_code == 200, r.text
                    seen[r.json()["model_id"]] += 1
                if seen == Counter({new_model: 8}):
                    break
                time.sleep(0.5)  # the watchers check every 0.5 s
        assert seen == Counter({new_model: 8}), seen

        # rate limits: one window across both workers
        auth = {"Authorization": f"Bearer {limited}"}
        with _fresh(base) as c:
            codes = Counter(c.get("/v1/models", headers=auth).status_code for _ in range(2 * limit))
        assert codes == Counter({200: limit, 429: limit}), codes

        # the supervisor dies: its workers go with it, and a new service starts on the port
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=scaled(30))
        for w in workers:
            w.wait(timeout=scaled(30))
        server = start_server(env | {"ENDOSEEK_WORKERS": "2"}, log)
        wait_ready(base, server)
        with _fresh(base) as c:
            r = c.post("/v1/search", json={"image_id": uids[0], "k": 1}, headers=hdr["admin"])
            assert r.status_code == 200 and r.json()["model_id"] == new_model
    finally:
        stop_server(server)


def test_redis_limiter_is_one_window_for_all_workers() -> None:
    _redis_or_skip()
    import uuid

    from app.api.deps import RateLimiter, RedisRateLimiter

    prefix = f"endoseek:test:{uuid.uuid4().hex}:"
    a, b = (RedisRateLimiter(3, REDIS_URL, prefix) for _ in range(2))  # two workers' limiters
    assert [a.allow("k"), b.allow("k"), a.allow("k")] == [True, True, True]
    assert not b.allow("k") and not a.allow("k")
    assert a.allow("other key")
    assert 1 <= b.retry_after("k") <= 60
    local_a, local_b = RateLimiter(3), RateLimiter(3)  # in-process: each counts its own
    assert all(local_a.allow("k") for _ in range(3)) and local_b.allow("k")


def test_redis_down_lets_requests_through(caplog: pytest.LogCaptureFixture) -> None:
    from app.api.deps import RedisRateLimiter

    limiter = RedisRateLimiter(1, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    assert limiter.allow("k") and limiter.allow("k")
    assert "Redis unreachable" in caplog.text and "redis://" not in caplog.text


def test_one_leader_and_takeover(tmp_path: Path) -> None:
    from app.services.leader import Leadership

    first, second = Leadership(tmp_path / "leader.lock"), Leadership(tmp_path / "leader.lock", 0.01)
    assert first.try_acquire() and not second.try_acquire()
    assert int((tmp_path / "leader.lock").read_text()) == os.getpid()
    elected = []
    second.wait_in_background(lambda: elected.append(True))
    first.release()  # the holder stops (or dies): the other takes over on its next try
    deadline = time.monotonic() + scaled(10)
    while not elected and time.monotonic() < deadline:
        time.sleep(0.01)  # poll interval, bounded by the deadline
    assert elected == [True] and second.held
    second.release()
    assert first.try_acquire()
    first.release()
