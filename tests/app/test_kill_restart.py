"""SIGKILL the real server mid-stream of uploads; after restart every 2xx image is there.

Also checks that the index then holds exactly the database's live images (via the snapshot
written at the graceful stop) and that no orphan file survives the start-up sweep.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from app.db import migrate
from app.db.models import Image, Model
from app.db.session import create_db_engine
from tests.app.conftest import create_keys, index_ids, jpeg_bytes
from tests.app.server import free_port, server_env, start_server, wait_ready
from tests.timing import scaled

pytestmark = pytest.mark.slow


def test_sigkill_during_uploads(tmp_path: Path, synthetic_images) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    migrate.upgrade(url)
    keys = create_keys(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(tmp_path, url, port)
    log = tmp_path / "server.log"
    server = start_server(env, log)
    try:
        wait_ready(base, server)
        pid = httpx.post(
            f"{base}/v1/procedures",
            json={"source": "kill", "external_id": "1"},
            headers=keys["ingest"],
            timeout=scaled(30),
        ).json()["id"]
        ok: dict[str, bytes] = {}
        stop = threading.Event()

        def stream() -> None:
            for i in range(10_000):
                if stop.is_set():
                    return
                img = synthetic_images[i % len(synthetic_images)].copy()
                img.putpixel((i % 100, i // 100), (i % 256, 0, 255))
                data = jpeg_bytes(img, quality=95)
                try:
                    r = httpx.post(
                        f"{base}/v1/procedures/{pid}/images",
                        files={"files": ("x.jpg", data, "image/jpeg")},
                        headers=keys["ingest"],
                        timeout=scaled(30),
                    )
                except httpx.HTTPError:
                    continue
                if r.status_code == 201:
                    ok[r.json()["items"][0]["id"]] = data

        uploader = threading.Thread(target=stream)
        uploader.start()
        deadline = time.monotonic() + scaled(120)
        while len(ok) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=scaled(30))
        time.sleep(scaled(0.3))  # let in-flight client calls fail against the dead port
        stop.set()
        uploader.join(timeout=scaled(60))
        assert len(ok) >= 6, log.read_text()[-2000:]

        server = start_server(env, log)
        wait_ready(base, server)
        for uid, data in ok.items():
            meta = httpx.get(f"{base}/v1/images/{uid}", headers=keys["search"], timeout=scaled(30))
            assert meta.status_code == 200, uid
            r = httpx.post(
                f"{base}/v1/search",
                files={"file": ("q.jpg", data, "image/jpeg")},
                data={"k": "100"},
                headers=keys["search"],
                timeout=scaled(60),
            )
            # near-identical variants tie, so look for the image among the perfect matches
            scores = {h["image"]["id"]: h["score"] for h in r.json()["results"]}
            assert scores.get(uid, 0) > 0.999, uid
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=scaled(120))

    engine = create_db_engine(url)
    with engine.connect() as conn:
        live = conn.execute(
            sa.select(Image.id, Image.sha256).where(Image.deleted_at.is_(None))
        ).all()
        model_id = conn.scalar(sa.select(Model.id).where(Model.active.is_(True)))
    engine.dispose()
    indexed = index_ids(tmp_path / "index", model_id)  # FAISS: the snapshot; Milvus: collection
    np.testing.assert_array_equal(indexed, np.sort([r.id for r in live]))
    files = {p.stem for p in (tmp_path / "storage").glob("??/??/*")}
    assert files == {r.sha256 for r in live}
