"""SIGKILL at seeded random points during ingest streams and during a re-index.

Ingest: one database and storage across every kill point; two uploader threads keep requests
in flight while the server is killed after a random number of acknowledgements. After each
restart: every acknowledged photo is there (metadata, file, vector, searchable), no orphan
file or row exists, and the index holds as many vectors as the database has live images.
At the end a graceful stop writes a snapshot whose ids equal the database's live ids.

Re-index: the `endoseek reindex` process is killed at random cursor positions, then resumed
(`endoseek jobs resume`) and killed again; after each kill rows and cursor agree and the old
model still serves; the last resume completes exactly once and the index equals the database.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image as PILImage

from app.db import migrate
from app.db.models import Embedding, Image, Job, Model
from app.db.session import create_db_engine
from app.services import bulk_import, vectors
from app.services.job_exec import JobContext
from app.services.runtime import Runtime
from app.services.storage import TMP_PREFIX
from app.settings import Settings
from embedder import Embedder, default_bundle_path
from indexer import load_snapshot
from tests.app.conftest import create_keys, jpeg_bytes
from tests.app.jobs.conftest import CLI, cli_env
from tests.app.server import free_port, server_env, start_server, stop_server, wait_ready
from tests.timing import scaled

pytestmark = pytest.mark.slow

SEED = 9009
INGEST_KILLS = 12
REINDEX_KILLS = 9
DEADLINE_S = 120  # base seconds; every use is scaled() by ENDOSEEK_TEST_TIME_FACTOR


def _photo(i: int) -> bytes:
    """A small unique JPEG (48x48): colour and a pixel pattern derived from i."""
    img = PILImage.new("RGB", (48, 48), ((i * 37) % 256, (i * 11) % 256, (i * 5) % 256))
    for b in range(16):
        if (i >> b) & 1:
            img.putpixel((b * 3, b * 2), (255, 255, 255))
    return jpeg_bytes(img, quality=95)


def _stored_files(storage: Path) -> tuple[set[str], list[Path]]:
    """sha256 of stored originals (thumbnails excluded), and leftover temporary files."""
    shas, tmps = set(), []
    for p in storage.rglob("*"):
        if not p.is_file() or "thumbs" in p.relative_to(storage).parts:
            continue
        if p.name.startswith(TMP_PREFIX):
            tmps.append(p)
        else:
            shas.add(p.stem)
    return shas, tmps


class Uploader:
    """Uploader threads posting unique photos; records what the server acknowledged."""

    def __init__(self, base: str, headers: dict, pid: str, start: int) -> None:
        self.base, self.headers, self.pid = base, headers, pid
        self.next = start
        self.acked: dict[str, str] = {}  # uid -> sha256 acknowledged in this round
        self.last_bytes: dict[str, bytes] = {}
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(2)]

    def _take(self) -> int:
        with self.cond:
            self.next += 1
            return self.next

    def _run(self, n: int) -> None:
        with httpx.Client(timeout=scaled(30)) as client:
            while not self.stop.is_set():
                i = self._take()
                count = 1 + (n == 1 and i % 3 == 0)  # some requests carry two photos
                photos = [_photo(i * 2 + j) for j in range(count)]
                files = [("files", (f"p{i}.jpg", d, "image/jpeg")) for d in photos]
                try:
                    r = client.post(
                        f"{self.base}/v1/procedures/{self.pid}/images",
                        files=files,
                        headers=self.headers,
                    )
                except httpx.HTTPError:
                    continue
                assert r.status_code == 201, r.text
                with self.cond:
                    for item, data in zip(r.json()["items"], photos, strict=True):
                        self.acked[item["id"]] = item["sha256"]
                        self.last_bytes[item["id"]] = data
                    self.cond.notify_all()

    def __enter__(self) -> Uploader:
        for t in self.threads:
            t.start()
        return self

    def wait_acks(self, n: int) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.acked) >= n, timeout=scaled(DEADLINE_S))
        assert ok, f"only {len(self.acked)} acknowledgements"

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=scaled(DEADLINE_S))


def _check_consistent(url: str, storage: Path, base: str, keys: dict, acked: dict) -> int:
    """After a restart: acknowledged photos present, no orphans, index size == live rows."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            model_id = conn.scalar(sa.select(Model.id).where(Model.active.is_(True)))
            live = dict(
                conn.execute(
                    sa.select(Image.uid, Image.sha256).where(Image.deleted_at.is_(None))
                ).all()
            )
            with_vec = set(
                conn.scalars(
                    sa.select(Image.uid)
                    .join(Embedding, Embedding.image_id == Image.id)
                    .where(Embedding.model_id == model_id, Image.deleted_at.is_(None))
                )
            )
    finally:
        engine.dispose()
    live = {str(k): v for k, v in live.items()}
    lost = {u for u in acked if live.get(u) != acked[u]}
    assert not lost, f"acknowledged photos lost: {sorted(lost)[:5]}"
    assert {str(u) for u in with_vec} == set(live), "a live image row has no vector (orphan row)"
    shas, tmps = _stored_files(storage)
    assert shas == set(live.values()), "orphan or missing files"
    assert not tmps, tmps
    ready = httpx.get(f"{base}/ready", timeout=scaled(30)).json()
    assert ready["vectors"] == len(live), (ready, len(live))
    return len(live)


def test_sigkill_ingest_stream_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    migrate.upgrade(url)
    keys = create_keys(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(tmp_path, url, port)
    log = tmp_path / "server.log"
    acked: dict[str, str] = {}
    survived = 0
    server = start_server(env, log)
    try:
        wait_ready(base, server)
        pid = httpx.post(
            f"{base}/v1/procedures",
            json={"source": "kill", "external_id": "stream"},
            headers=keys["ingest"],
            timeout=scaled(30),
        ).json()["id"]
        counter = 0
        for point in range(INGEST_KILLS):
            target = rng.randint(1, 6)
            with Uploader(base, keys["ingest"], pid, counter) as up:
                up.wait_acks(target)
                server.send_signal(signal.SIGKILL)
                server.wait(timeout=scaled(30))
            counter = up.next + 1
            acked.update(up.acked)
            server = start_server(env, log)
            wait_ready(base, server)
            n_live = _check_consistent(url, tmp_path / "storage", base, keys, acked)
            assert n_live >= len(acked)
            # this round's photos are searchable: found as (near-)perfect matches
            for uid, data in list(up.last_bytes.items())[-2:]:
                r = httpx.post(
                    f"{base}/v1/search",
                    files={"file": ("q.jpg", data, "image/jpeg")},
                    data={"k": "20"},
                    headers=keys["search"],
                    timeout=scaled(60),
                )
                assert r.status_code == 200, r.text
                scores = {h["image"]["id"]: h["score"] for h in r.json()["results"]}
                assert scores.get(uid, 0) > 0.999, (point, uid)
            survived += 1
    finally:
        stop_server(server)
    assert survived == INGEST_KILLS and len(acked) >= INGEST_KILLS

    # the snapshot written by the graceful stop holds exactly the live images
    engine = create_db_engine(url)
    with engine.connect() as conn:
        ids = conn.scalars(sa.select(Image.id).where(Image.deleted_at.is_(None))).all()
        model_id = conn.scalar(sa.select(Model.id).where(Model.active.is_(True)))
    engine.dispose()
    snap = load_snapshot(tmp_path / "index", model_id=model_id, device="cpu")
    assert snap is not None
    np.testing.assert_array_equal(snap[0].ids(), np.sort(ids))


def _job(ctx: JobContext) -> Job:
    with ctx.sessions() as s:
        job = s.scalar(sa.select(Job).where(Job.kind == "reindex"))
    assert job is not None
    return job


def _run_until(cmd: list[str], env: dict, ctx: JobContext, done_at_least: int) -> Job:
    """Run a job process and SIGKILL it once the job's `done` reaches the target."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + scaled(DEADLINE_S)
        while time.monotonic() < end:
            with ctx.sessions() as s:
                done = s.scalar(sa.select(Job.done).where(Job.kind == "reindex"))
            if done is not None and done >= done_at_least:
                break
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"job process ended ({proc.returncode}) early: {out[-2000:]}")
            time.sleep(0.002)  # poll interval, bounded by the deadline above
        else:
            pytest.fail(f"job never reached done >= {done_at_least}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=scaled(30))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=scaled(30))
        if proc.stdout:
            proc.stdout.close()
    return _job(ctx)


def test_sigkill_reindex_at_random_points_then_resume(
    tmp_path: Path,
    bundle_b: Path,  # noqa: F811 - fixture from conftest
) -> None:
    from training.synthetic import write_class_folders

    rng = random.Random(SEED + 1)
    url = f"sqlite:///{tmp_path / 'reindex.db'}"
    migrate.upgrade(url)
    settings = Settings(
        database_url=url,
        storage_dir=tmp_path / "storage",
        index_dir=tmp_path / "index",
        bundle=str(default_bundle_path()),
        index_device="cpu",
        _env_file=None,
    )
    ctx = JobContext.from_settings(settings)
    archive = write_class_folders(tmp_path / "archive", 4, 100, size=40, seed=3)
    seed_job = bulk_import.start_import(ctx, {"dir": str(archive), "kind": "colonoscopy"})
    assert bulk_import.run_import(ctx, seed_job.id) == "completed"
    with ctx.sessions() as s:
        total = s.scalar(sa.select(sa.func.count()).select_from(Image))
        old_model = s.scalar(sa.select(Model.id).where(Model.active.is_(True)))
    assert total == 400
    new_model = Embedder.from_bundle(bundle_b, device="cpu").bundle_id
    env = cli_env(settings)
    opts = ["--batch", "4", "--chunk", "8", "--workers", "1"]
    # seeded kill points: cursor targets spread over the first 70% of the run
    targets = sorted(rng.sample(range(8, int(total * 0.7), 8), REINDEX_KILLS))
    job_id = None
    done_before = 0
    for n, target in enumerate(targets):
        cmd = [*CLI, "reindex", "--bundle", str(bundle_b), *opts]
        if job_id is not None:
            cmd = [*CLI, "jobs", "resume", str(job_id)]
        job = _run_until(cmd, env, ctx, target)
        job_id = job.id
        assert job.status == "running" and done_before <= job.done < total, (n, job.done)
        with ctx.sessions() as s:
            rows = s.execute(
                sa.select(sa.func.count(), sa.func.count(Embedding.image_id.distinct()),
                          sa.func.max(Embedding.image_id))
                .where(Embedding.model_id == new_model)
            ).one()  # fmt: skip
            assert rows == (job.done, job.done, job.cursor), (n, rows, job.done, job.cursor)
            assert s.scalar(sa.select(Model.id).where(Model.active.is_(True))) == old_model
        done_before = job.done
    done = subprocess.run(
        [*CLI, "jobs", "resume", str(job_id)], env=env, capture_output=True, timeout=scaled(240)
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    job = _job(ctx)
    assert (job.status, job.done, job.failed) == ("completed", total, 0)
    assert job.params["run"]["runs"] == REINDEX_KILLS + 1
    with ctx.sessions() as s:
        distinct = sa.func.count(Embedding.image_id.distinct())
        per_model = s.execute(
            sa.select(Embedding.model_id, sa.func.count(), distinct).group_by(Embedding.model_id)
        ).all()
        assert sorted(per_model) == sorted([(old_model, total, total), (new_model, total, total)])
        assert s.scalar(sa.select(Model.id).where(Model.active.is_(True))) == new_model
    # a fresh start serves the new model with an index equal to the database
    rt = Runtime.create(settings.model_copy(update={"bundle": str(bundle_b)}))
    rt.start()
    try:
        assert rt.index is not None and rt.index.model_id == new_model
        with rt.sessions() as s:
            assert np.array_equal(rt.index.index.ids(), vectors.live_ids(s, new_model))
    finally:
        rt.stop()
