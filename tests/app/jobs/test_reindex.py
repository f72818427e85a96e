"""Re-index acceptance: SIGKILL midway, resume, exactly-once rows, searches old -> new model."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from app.db.models import Embedding, Image, Job, Model
from app.services import bulk_import, jobs, vectors
from app.services.job_exec import JobContext
from app.services.model_switch import ModelWatcher
from app.services.runtime import Runtime
from app.settings import Settings
from embedder import Embedder, decode_image
from tests.app.jobs.conftest import CLI, cli_env
from tests.timing import scaled

DEADLINE_S = 180  # base seconds; every use is scaled() by ENDOSEEK_TEST_TIME_FACTOR


def _wait(predicate: Callable[[], bool], what: str, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + scaled(DEADLINE_S)
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"process ended ({proc.returncode}) before {what}: {out[-2000:]}")
        time.sleep(0.005)  # poll interval, not a fixed wait
    pytest.fail(f"timed out waiting for {what}")


def _job(ctx: JobContext) -> Job | None:
    with ctx.sessions() as s:
        return s.scalar(sa.select(Job).where(Job.kind == "reindex"))


def _top1(rt: Runtime, image_id: int) -> int:
    assert rt.index is not None
    with rt.sessions() as s:
        vec = vectors.vector_of(s, image_id, rt.index.model_id, rt.index.dim)
    assert vec is not None
    return (
        int(rt.search(vec[None], 1)[1][0, 0])
        if hasattr(rt, "search")
        else int(rt.index.search(vec[None], 1)[1][0, 0])
    )


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_reindex_killed_midway_resumes_exactly_once_and_flips(
    db: str,
    request: pytest.FixtureRequest,
    make_settings: Callable[[str], Settings],
    synthetic_archive: Path,
    bundle_b: Path,
) -> None:
    url = request.getfixturevalue("pg_url" if db == "postgres" else "sqlite_url")
    settings = make_settings(url)
    ctx = JobContext.from_settings(settings)
    with ctx.sessions.begin() as s:  # the PostgreSQL database is shared by this test session
        for table in ("labels", "embeddings", "images", "procedures", "jobs", "models"):
            s.execute(sa.text(f"DELETE FROM {table}"))
    seed = bulk_import.start_import(ctx, {"dir": str(synthetic_archive), "kind": "colonoscopy"})
    assert bulk_import.run_import(ctx, seed.id) == "completed"

    # the "server": serves model A, watches for the flip
    rt = Runtime.create(settings)
    rt.start()
    old_model = rt.index.model_id
    watcher = ModelWatcher(rt, interval_s=3600)  # checked by hand below
    new_model = Embedder.from_bundle(bundle_b, device="cpu").bundle_id
    with rt.sessions() as s:
        ids = np.array(s.scalars(sa.select(Image.id).order_by(Image.id)).all())
    assert len(ids) == 500 and len(rt.index) == 500
    try:
        cmd = [*CLI, "reindex", "--bundle", str(bundle_b), "--batch", "8", "--chunk", "16"]
        proc = subprocess.Popen(
            cmd, env=cli_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        _wait(lambda: (j := _job(ctx)) is not None and (j.cursor or 0) > 0, "a cursor", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=scaled(60))
        proc.stdout.close()

        job = _job(ctx)
        assert job.status == "running" and 0 < job.done < 500, "kill must land midway"
        with ctx.sessions() as s:
            written = s.scalar(sa.select(sa.func.count()).where(Embedding.model_id == new_model))
            assert written == job.done  # rows and cursor were committed together
            assert s.scalar(sa.select(sa.func.max(Embedding.image_id)).where(
                Embedding.model_id == new_model)) == job.cursor  # fmt: skip
        # searches still answer from the old model, and the watcher keeps it
        assert watcher.check() == "unchanged" and rt.index.model_id == old_model
        assert _top1(rt, int(ids[7])) == ids[7]

        assert jobs.is_stale(job)  # the owner process is gone: resumable at once
        done = subprocess.run(
            [*CLI, "jobs", "resume", str(job.id)],
            env=cli_env(settings),
            capture_output=True,
            text=True,
            timeout=scaled(DEADLINE_S),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        job = _job(ctx)
        assert (job.status, job.done, job.failed, job.cursor) == ("completed", 500, 0, ids[-1])
        assert job.params["run"]["runs"] == 2

        with ctx.sessions() as s:
            distinct = sa.func.count(Embedding.image_id.distinct())
            per_pair = s.execute(
                sa.select(Embedding.model_id, sa.func.count(), distinct).group_by(
                    Embedding.model_id
                )
            ).all()
            assert sorted(per_pair) == sorted([(old_model, 500, 500), (new_model, 500, 500)])
            assert s.scalar(sa.select(Model.id).where(Model.active.is_(True))) == new_model

        # the server notices the flip, loads the new index; it matches the database
        assert watcher.check() == "switched"
        assert rt.index.model_id == new_model and rt.embedder.bundle_id == new_model
        with rt.sessions() as s:
            assert np.array_equal(rt.index.index.ids(), vectors.live_ids(s, new_model))
            for image_id in ids[[0, 250, 499]]:
                stored = vectors.vector_of(s, int(image_id), new_model, rt.index.dim)
                scores, top = rt.index.search(stored[None], 1)
                assert top[0, 0] == image_id and scores[0, 0] == pytest.approx(1.0, abs=1e-4)
        # a vector embedded now by the served model equals the re-indexed one
        photo = next(synthetic_archive.rglob("*.jpg"))
        fresh = rt.embedder.embed([decode_image(photo.read_bytes(), max_pixels=10**7)])
        assert rt.index.search(fresh, 1)[0][0, 0] == pytest.approx(1.0, abs=1e-4)
        assert watcher.check() == "unchanged"
    finally:
        rt.stop()


def test_second_reindex_is_refused_while_one_runs(job_ctx: JobContext, bundle_b: Path) -> None:
    from app.services import reindex

    job = reindex.start_reindex(job_ctx, bundle_b)
    lease = jobs.claim(job_ctx.sessions, job.id)
    with pytest.raises(reindex.ReindexRefusedError):
        reindex.start_reindex(job_ctx, bundle_b)
    with pytest.raises(jobs.JobBusyError):
        jobs.claim(job_ctx.sessions, job.id)
    assert isinstance(lease.job_id, uuid.UUID)
