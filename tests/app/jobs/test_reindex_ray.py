"""Re-index on Ray: SIGKILL the driver midway, resume, exactly one vector per photo, and the
same vectors as the in-process runner; the photo decoder equals the embedder's preprocess."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from app.cli.jobs import register
from app.db.models import Embedding, Image, Job, Model
from app.services import bulk_import, jobs, reindex
from app.services.job_exec import JobContext
from app.settings import Settings
from embedder import Embedder, decode_image
from tests.app.jobs.conftest import CLI, cli_env
from tests.indexer.pipeline.ray_cluster import ray_cluster  # noqa: F401 - session fixture
from tests.timing import scaled

DEADLINE_S = 180  # base seconds; every use is scaled() by ENDOSEEK_TEST_TIME_FACTOR


def _job(ctx: JobContext) -> Job | None:
    with ctx.sessions() as s:
        return s.scalar(sa.select(Job).where(Job.kind == "reindex"))


def _vectors(ctx: JobContext, model_id: str) -> dict[str, np.ndarray]:
    """sha256 -> the stored vector of `model_id` (ids differ between databases, bytes don't)."""
    with ctx.sessions() as s:
        rows = s.execute(
            sa.select(Image.sha256, Embedding.vector)
            .join(Embedding, Embedding.image_id == Image.id)
            .where(Embedding.model_id == model_id)
        ).all()
    return {sha: np.frombuffer(vec, dtype=np.float32) for sha, vec in rows}


def _seeded(settings: Settings, archive: Path) -> JobContext:
    ctx = JobContext.from_settings(settings)
    job = bulk_import.start_import(ctx, {"dir": str(archive), "kind": "colonoscopy"})
    assert bulk_import.run_import(ctx, job.id) == "completed"
    return ctx


def test_photo_decoder_equals_the_embedders_preprocess(
    job_ctx: JobContext, bundle_b: Path, synthetic_archive: Path
) -> None:
    emb = Embedder.from_bundle(bundle_b, device="cpu")
    photo = next(synthetic_archive.rglob("*.jpg"))
    _, key, _ = job_ctx.storage.put(photo.read_bytes(), "image/jpeg")
    tensor = reindex.PhotoDecoder.of(job_ctx, emb)((None, key)).tensors[emb.bundle_id]
    expected = emb.preprocess(decode_image(photo.read_bytes(), max_pixels=10**7))
    assert tensor.dtype == expected.dtype and bool((tensor == expected).all())


def test_unknown_engine_and_a_stray_address_are_refused(
    job_ctx: JobContext, bundle_b: Path
) -> None:
    with pytest.raises(reindex.ReindexRefusedError, match="unknown engine"):
        reindex.start_reindex(job_ctx, bundle_b, engine="spark")
    app = typer.Typer()
    register(app)
    out = CliRunner().invoke(app, ["reindex", "--bundle", str(bundle_b), "--address", "x:1"])
    assert out.exit_code == 2 and "--address needs --engine ray" in out.output


def test_ray_reindex_killed_midway_resumes_exactly_once_with_the_local_vectors(
    ray_cluster: str,  # noqa: F811
    make_settings: Callable[[str], Settings],
    sqlite_url: str,
    tmp_path: Path,
    synthetic_archive: Path,
    bundle_b: Path,
) -> None:
    ctx = _seeded(make_settings(sqlite_url), synthetic_archive)
    new_model = Embedder.from_bundle(bundle_b, device="cpu").bundle_id
    with ctx.sessions() as s:
        old_model = s.scalar(sa.select(Model.id).where(Model.active.is_(True)))
        n = s.scalar(sa.select(sa.func.count()).select_from(Image))
    assert n == 500

    # run 1: the CLI on the session's Ray cluster, SIGKILLed after its first commits
    cmd = [*CLI, "reindex", "--bundle", str(bundle_b), "--batch", "8", "--chunk", "16",
           "--engine", "ray", "--address", ray_cluster]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=cli_env(ctx.settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    end = time.monotonic() + scaled(DEADLINE_S)
    while (j := _job(ctx)) is None or j.done == 0:
        if proc.poll() is not None or time.monotonic() > end:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"no commit before the run ended ({proc.returncode}): {out[-3000:]}")
        time.sleep(0.005)  # poll interval, not a fixed wait
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=scaled(60))
    proc.stdout.close()

    job = _job(ctx)
    assert job.status == "running" and 0 < job.done < n, "kill must land midway"
    assert job.params["engine"] == "ray" and job.cursor is None  # set-based: no cursor
    with ctx.sessions() as s:
        written = s.scalar(sa.select(sa.func.count()).where(Embedding.model_id == new_model))
    assert written == job.done  # rows and counts committed together
    assert jobs.is_stale(job)  # the driver is gone: resumable at once

    # run 2: resume in this process, on the same cluster; only the photos left are embedded
    assert reindex.run_reindex(ctx, job.id) == "completed"
    job = _job(ctx)
    assert (job.status, job.done, job.failed) == ("completed", n, 0)
    assert job.params["run"]["runs"] == 2
    with ctx.sessions() as s:
        distinct = sa.func.count(Embedding.image_id.distinct())
        per_model = s.execute(
            sa.select(Embedding.model_id, sa.func.count(), distinct).group_by(Embedding.model_id)
        ).all()
        assert sorted(per_model) == sorted([(old_model, n, n), (new_model, n, n)])
        assert s.scalar(sa.select(Model.id).where(Model.active.is_(True))) == new_model

    # the in-process runner on a copy of the archive gives the same vectors, bit for bit
    copy = make_settings(f"sqlite:///{tmp_path / 'local.db'}").model_copy(
        update={"storage_dir": tmp_path / "local-storage", "index_dir": tmp_path / "local-index"}
    )
    local = _seeded(copy, synthetic_archive)
    job = reindex.start_reindex(local, bundle_b, batch=8, chunk=16)
    assert reindex.run_reindex(local, job.id) == "completed"
    ray_vecs, local_vecs = _vectors(ctx, new_model), _vectors(local, new_model)
    assert len(ray_vecs) == len(local_vecs) > 0 and ray_vecs.keys() == local_vecs.keys()
    for sha, vec in local_vecs.items():
        np.testing.assert_array_equal(ray_vecs[sha], vec)
