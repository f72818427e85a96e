"""Batch re-index: embed every live photo with a new bundle, then flip the active model.

Stages: stored images in id order (only those still lacking a vector of the new model) ->
parallel decode + preprocess -> embed -> chunks of embeddings committed together with the
job's cursor. When the stream is exhausted, gaps are swept (photos committed late), the new
index is built from the DB beside the live one and snapshotted, and one transaction flips the
active model and completes the job. Searches use the old index until the flip.

Engine "ray" runs the same decode, Mapper and commit on a Ray cluster (indexer.pipeline
.ray_runner). Ray keeps no order, so it has no cursor: its work list is the set of photos
without a vector of the new model, which a killed run leaves smaller, and the sweep after it
embeds whatever is still missing in this process.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.models import Embedding, Image, Job
from app.services import jobs, model_registry, model_switch, vectors
from app.services.index_service import IndexService
from app.services.job_exec import JobContext, Progress, Stages, run_job, run_stages
from app.services.storage import Storage
from embedder import Embedder, decode_image, image_to_tensor
from indexer.pipeline import Chunk, ChunkWriter, Decoded, EmbedFn, RunResult

log = logging.getLogger(__name__)
KIND = "reindex"
ENGINES = ("local", "ray")
PAGE = 10_000


class ReindexRefusedError(ValueError):
    """The request cannot start (model already active, another re-index running)."""


class StoredImages:
    """Live images with id > after that have no vector of `model_id` yet, by id."""

    def __init__(self, session_factory: Any, model_id: str, upto: int | None = None) -> None:
        self.sessions = session_factory
        self.model_id = model_id
        self.upto = upto

    def _query(self) -> sa.Select:
        has = sa.exists().where(Embedding.image_id == Image.id, Embedding.model_id == self.model_id)
        return sa.select(Image.id, Image.uid, Image.storage_key).where(
            Image.deleted_at.is_(None), ~has
        )

    def count(self) -> int:
        with self.sessions() as session:
            return session.scalar(sa.select(sa.func.count()).select_from(self._query().subquery()))

    def fetch(self, after: int | None, limit: int) -> Sequence[tuple[int, tuple[uuid.UUID, str]]]:
        q = self._query().where(Image.id > (after or 0))
        if self.upto is not None:
            q = q.where(Image.id <= self.upto)
        with self.sessions() as session:
            rows = session.execute(q.order_by(Image.id).limit(limit)).all()
        return [(int(i), (uid, key)) for i, uid, key in rows]

    def todo(self) -> list[tuple[int, tuple[uuid.UUID, str]]]:
        """Every such image: the set-based work list (what is committed is not in it)."""
        out: list[tuple[int, tuple[uuid.UUID, str]]] = []
        while page := self.fetch(out[-1][0] if out else None, PAGE):
            out += page
        return out


@dataclass(frozen=True)
class PhotoDecoder:
    """A stored photo -> the model's input tensor; picklable, so Ray workers run it as is.

    The same steps as `Embedder.preprocess` (tests hold them equal) without the model.
    """

    storage: Storage
    max_pixels: int
    space: str
    input_size: int
    crop_border: bool

    @classmethod
    def of(cls, ctx: JobContext, emb: Embedder) -> PhotoDecoder:
        pre = emb.config.preprocess
        return cls(ctx.storage, ctx.settings.max_pixels, emb.bundle_id, pre.input_size,
                   pre.crop_black_border)  # fmt: skip

    def __call__(self, item: tuple[uuid.UUID, str]) -> Decoded:
        image = decode_image(self.storage.read(item[1]), max_pixels=self.max_pixels)
        tensor = image_to_tensor(image, size=self.input_size, crop_border=self.crop_border)
        return Decoded({self.space: tensor})


@dataclass(frozen=True)
class BundleLoader:
    """Loads the bundle where it is called (a Ray actor), once; refuses a changed bundle."""

    path: str
    model_id: str
    device: str | None

    def __call__(self) -> dict[str, EmbedFn]:
        emb = Embedder.from_bundle(self.path, device=self.device)
        if emb.bundle_id != self.model_id:
            raise ValueError(f"bundle {self.path} changed: it is no longer {self.model_id[:12]}")
        return {self.model_id: emb.embed_tensors}


def insert_embeddings(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert (image_id, model_id, vector) rows; rows already present (ingest) are kept."""
    if not rows:
        return
    name = session.get_bind().dialect.name
    dialect_insert = postgresql.insert if name == "postgresql" else sqlite.insert
    stmt = dialect_insert(Embedding).on_conflict_do_nothing(index_elements=["image_id", "model_id"])
    session.execute(stmt, rows)


def start_reindex(
    ctx: JobContext,
    bundle: str | Path,
    *,
    batch: int = 64,
    workers: int = 2,
    chunk: int = 256,
    engine: str = "local",
    address: str | None = None,
    actors: int | None = None,
) -> Job:
    """Register the bundle's model (inactive) and create the pending job.

    `engine="ray"` embeds on the Ray cluster at `address` (None: a local one started for the
    run) with `actors` model actors (None: one per GPU, else one per CPU but one).
    """
    if engine not in ENGINES:
        raise ReindexRefusedError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "ray":
        _require_ray()
    path = str(Path(bundle).resolve())
    emb = Embedder.from_bundle(path, device="cpu")
    with ctx.sessions.begin() as session:
        model_registry.register(session, emb, path)
        active = model_registry.active(session)
        if active is not None and active.id == emb.bundle_id:
            raise ReindexRefusedError(f"model {emb.bundle_id[:12]} is already active")
        running = session.scalars(sa.select(Job).where(Job.kind == KIND, Job.status == "running"))
        if any(jobs.live(j, ctx.stale_after_s) for j in running):
            raise ReindexRefusedError("another re-index is running; resume or wait for it")
        params = {"bundle": path, "batch": batch, "workers": workers, "chunk": chunk,
                  "engine": engine, "address": address, "actors": actors}  # fmt: skip
        job = jobs.create(session, KIND, params, model_id=emb.bundle_id)
    return job


def run_reindex(ctx: JobContext, job_id: uuid.UUID, progress: Progress | None = None) -> str:
    """Run (or resume) a re-index job to completion; returns the final status."""
    return run_job(ctx, job_id, lambda lease: _body(ctx, lease, progress))


def _body(ctx: JobContext, lease: jobs.Lease, progress: Progress | None) -> str:
    with ctx.sessions() as session:
        job = session.get(Job, lease.job_id)
        assert job is not None and job.model_id is not None
        params, model_id, base = dict(job.params), job.model_id, (job.done, job.failed)
    emb = Embedder.from_bundle(params["bundle"], device=_device(ctx))
    if emb.bundle_id != model_id:
        raise ValueError(f"bundle {params['bundle']} changed: it is no longer {model_id[:12]}")
    ray = params.get("engine", "local") == "ray"
    if ray and base[1]:  # every earlier failure is in the work list again: count it anew
        with ctx.sessions.begin() as session:
            jobs.commit_progress(session, lease, cursor=None, done=0, failed=-base[1])
        base = (base[0], 0)
    source = StoredImages(ctx.sessions, model_id)
    total = base[0] + base[1] + source.count()
    jobs.set_total(ctx.sessions, lease, total)

    def report(r: RunResult) -> None:
        if progress is not None:
            progress(
                base[0] + r.done, base[1] + r.failed, max(total, sum(base) + r.done + r.failed)
            )

    sizes = {k: int(params[k]) for k in ("batch", "workers", "chunk")}
    stages = _stages(ctx, lease, emb, source, lease.cursor, True)
    if ray:
        result = _ray_pass(ctx, stages, params, model_id, source.todo(), report)
        upto: int | None = None  # the sweep below takes every photo still missing
    else:
        result = run_stages(ctx, stages, **sizes, progress=report)
        upto = result.last_key if result.last_key is not None else lease.cursor
    if result.stopped:
        return "interrupted"
    if upto is not None or ray:  # photos committed late (below the cursor): embed them too
        gaps = StoredImages(ctx.sessions, model_id, upto=upto)
        run_stages(ctx, _stages(ctx, lease, emb, gaps, None, False), **sizes)
    if ctx.stop.is_set():
        return "interrupted"
    _flip(ctx, lease, emb)
    return "completed"


def _ray_pass(
    ctx: JobContext,
    stages: Stages,
    params: dict[str, Any],
    model_id: str,
    todo: list[tuple[int, tuple[uuid.UUID, str]]],
    report: Callable[[RunResult], None],
) -> RunResult:
    """The work list through the Ray runner; the driver commits through `stages.commit`."""
    from indexer.pipeline.ray_runner import RayRunner, plan_pool, ray_session

    if not todo:
        return RunResult()  # a resumed run with nothing left: no cluster needed
    writer = ChunkWriter(stages.commit, chunk_size=int(params["chunk"]), background=True)
    with ray_session(params.get("address")):
        import ray

        pool = plan_pool(ray.cluster_resources(), params.get("actors"))
        log.info("re-index on Ray: %d photos, %s", len(todo), pool)
        # an actor given a GPU embeds on it (auto picks the CUDA device Ray assigned)
        load = BundleLoader(params["bundle"], model_id, None if pool.gpus else "cpu")
        runner = RayRunner(todo, stages.decode, load, writer, batch_size=int(params["batch"]),
                           pool=pool, on_progress=report, stop=ctx.stop)  # fmt: skip
        return runner.run()


def _require_ray() -> None:
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ReindexRefusedError(
            "engine ray needs Ray Data: pip install 'endoseek[ray]' (ray[data])"
        ) from exc


def _stages(
    ctx: JobContext,
    lease: jobs.Lease,
    emb: Embedder,
    source: StoredImages,
    after: int | None,
    advance: bool,
) -> Stages:
    mid = emb.bundle_id

    def commit(chunk: Chunk) -> None:
        vecs = chunk.matrix(mid)
        rows = [
            {"image_id": k, "model_id": mid, "vector": vectors.to_bytes(vecs[i])}
            for i, k in enumerate(chunk.keys)
        ]
        errors = [{"image": str(f.item[0]), "error": f.error} for f in chunk.failures]
        with ctx.sessions.begin() as session:
            insert_embeddings(session, rows)
            jobs.commit_progress(
                session,
                lease,
                cursor=chunk.last_key if advance else None,
                done=len(chunk.keys),
                failed=len(chunk.failures) if advance else 0,
                errors=errors if advance else None,
            )

    return Stages(source, PhotoDecoder.of(ctx, emb), {mid: emb.embed_tensors}, commit, after=after)


def _flip(ctx: JobContext, lease: jobs.Lease, emb: Embedder) -> None:
    """Build the new index beside the live one, then flip the DB and the process."""
    beside = IndexService.for_model(ctx.sessions, ctx.settings, emb.bundle_id, emb.dim)
    beside.start()
    beside.snapshot()  # a server in another process loads this instead of rebuilding
    with ctx.sessions.begin() as session:
        model_registry.activate(session, emb.bundle_id)
        jobs.finish(session, lease, "completed")
    beside.activate()  # Milvus: <prefix>_current -> the new collection (FAISS: no-op)
    log.info(
        "re-index flipped the active model to %s (%d vectors)", emb.bundle_id[:12], len(beside)
    )
    if ctx.runtime is not None:
        model_switch.switch_runtime(ctx.runtime, emb, beside.index)


def _device(ctx: JobContext) -> str | None:
    return "cpu" if ctx.settings.index_device == "cpu" else None
