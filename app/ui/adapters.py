"""The UI's bridge to the services, with offline fallbacks for the demo seeder.

In the running service the UI uploads through the core IngestService (the documentation
hook predicts the landmark), labels through app.documentation.labels and searches through
the SearchService, always with the runtime's current embedder (it changes on a model
switch). `endoseek demo` seeds a database without a running service: `ingest` and the
exact-scan branch of `search` serve only that offline case.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import Embedding, Image, Procedure
from app.documentation import ExactSearch, LandmarkPredictor, ReferenceGallery, labels, references
from app.documentation.predictions import store_prediction
from app.services import audit, model_registry, vectors
from app.services.errors import ProblemError
from app.services.ingest import IngestService, Upload
from app.services.runtime import Runtime
from app.services.storage import Storage
from app.ui import queries
from app.ui.context import UiContext

_embedder_lock = threading.Lock()


class UploadRejected(ValueError):
    """A file that cannot be ingested; the message is safe to show."""


@dataclass(frozen=True)
class Ingested:
    uid: uuid.UUID
    duplicate: bool
    landmark: str | None
    score: float | None


@dataclass(frozen=True)
class Hit:
    image: Image
    score: float


def runtime(ctx: UiContext) -> Runtime | None:
    """The started service runtime, or None (demo seeding, bare apps)."""
    rt = getattr(ctx.state, "runtime", None)
    return rt if isinstance(rt, Runtime) and rt.index is not None else None


def embedder(ctx: UiContext) -> Any:
    """The runtime's current embedder, else the configured bundle (loaded once, offline)."""
    rt = runtime(ctx)
    if rt is not None and rt.embedder is not None:
        return rt.embedder
    with _embedder_lock:
        cached = getattr(ctx.state, "ui_embedder", None)
        if cached is None:
            from embedder import Embedder

            cached = Embedder.from_bundle(ctx.settings.bundle)
            ctx.state.ui_embedder = cached
    return cached


def active_model(ctx: UiContext, db: Session) -> tuple[str, int]:
    """(model id, dim) of the active model, registering the embedder's bundle if none is."""
    row = model_registry.active(db)
    if row is not None:
        return row.id, row.dim
    emb = embedder(ctx)
    row = model_registry.register(db, emb, str(ctx.settings.bundle))
    model_registry.activate(db, row.id)
    db.flush()
    return row.id, row.dim


def reference_vectors(
    db: Session, model_id: str, dim: int
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(ids, vectors, id -> label) of the live reference photos for `model_id`."""
    return references.reference_vectors(db, model_id, dim)


def predictor(ctx: UiContext, db: Session, model_id: str, dim: int) -> LandmarkPredictor | None:
    """kNN landmark predictor over the reference photos' vectors (None without references)."""
    ids, vecs, labels = reference_vectors(db, model_id, dim)
    if not len(ids):
        return None
    gallery = ReferenceGallery(ExactSearch(ids, vecs), labels)
    return LandmarkPredictor(gallery, queries.policy(ctx, db))


def upload(ctx: UiContext, procedure: Procedure, data: bytes, key_id: uuid.UUID) -> Ingested:
    """Store one photo through the core IngestService (the running service's path)."""
    rt = runtime(ctx)
    if rt is None:
        raise UploadRejected("the service is not running")
    try:
        (result,) = IngestService(rt).ingest(procedure.id, [Upload(None, data)])
    except ProblemError as exc:
        raise UploadRejected(exc.detail) from exc
    ann = result.annotation
    with rt.sessions.begin() as db:
        audit.record(db, key_id, "ui.image.upload", str(result.image.uid))
    return Ingested(
        result.image.uid,
        result.duplicate,
        ann.landmark if ann else None,
        ann.score if ann else None,
    )


def ingest(
    ctx: UiContext, db: Session, procedure: Procedure, data: bytes, key_id: uuid.UUID
) -> Ingested:
    """Offline (demo seeding, no running service): store, embed, predict one photo."""
    from embedder import ImageDecodeError, decode_image, sniff_mime

    if len(data) > ctx.settings.max_upload_bytes:
        raise UploadRejected("the file is larger than the upload limit")
    mime = sniff_mime(data)
    try:
        image = decode_image(data, max_pixels=ctx.settings.max_pixels)
    except ImageDecodeError as exc:
        raise UploadRejected(exc.message) from exc
    storage: Storage = ctx.storage
    digest, key, _ = storage.put(data, mime or "application/octet-stream")
    existing = db.scalar(
        sa.select(Image).where(
            Image.procedure_id == procedure.id, Image.sha256 == digest, Image.deleted_at.is_(None)
        )
    )
    if existing is not None:
        return Ingested(existing.uid, True, None, None)
    model_id, dim = active_model(ctx, db)
    emb = embedder(ctx)
    vector = emb.embed([image])[0]
    row = Image(
        procedure_id=procedure.id,
        sha256=digest,
        storage_key=key,
        mime=mime or "application/octet-stream",
        width=image.width,
        height=image.height,
        bytes=len(data),
    )
    db.add(row)
    db.flush()
    db.add(Embedding(image_id=row.id, model_id=model_id, vector=vectors.to_bytes(vector)))
    landmark = score = None
    pred = predictor(ctx, db, model_id, dim)
    if pred is not None:
        p = store_prediction(db, pred, row.id, vector, model_id)
        if p is not None:
            landmark, score = p.landmark, p.score
    audit.record(db, key_id, "ui.image.upload", str(row.uid))
    db.flush()  # the server adds the vector to its index at start (or its next catch-up)
    return Ingested(row.uid, False, landmark, score)


def search(
    ctx: UiContext,
    db: Session,
    query: np.ndarray,
    k: int,
    *,
    kind: str = "",
    label: str = "",
    exclude_procedure: uuid.UUID | None = None,
) -> list[Hit]:
    """Top-k live images, filtered: the service's SearchService when the app runs one, else
    an exact scan of the DB's vectors (bare app in tests, the demo seeder)."""
    runtime = getattr(ctx.state, "runtime", None)
    if runtime is not None and getattr(runtime, "index", None) is not None:
        from app.services.search import SearchFilters, SearchService

        filters = SearchFilters(
            procedure_kind=kind or None, label=label or None, exclude_procedure_id=exclude_procedure
        )
        found = SearchService(runtime).search(db, query, k, filters)
        ids = [hit.image.id for hit in found]  # the pages want ORM images (procedure, labels)
        images = {img.id: img for img in db.scalars(sa.select(Image).where(Image.id.in_(ids)))}
        return [Hit(images[hit.image.id], hit.score) for hit in found if hit.image.id in images]
    model_id, dim = active_model(ctx, db)
    ids_parts, vec_parts = [], []
    for ids, vecs in vectors.iter_vectors(db, model_id, dim):
        ids_parts.append(ids)
        vec_parts.append(vecs)
    if not ids_parts:
        return []
    all_ids, all_vecs = np.concatenate(ids_parts), np.concatenate(vec_parts)
    scores = all_vecs @ query.astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    hits: list[Hit] = []
    for pos in order:
        img = db.get(Image, int(all_ids[pos]))
        if img is None or img.deleted_at is not None:
            continue
        if exclude_procedure and img.procedure_id == exclude_procedure:
            continue
        if kind and img.procedure.kind != kind:
            continue
        if label and label not in {lab.label for lab in img.labels}:
            continue
        hits.append(Hit(img, float(scores[pos])))
        if len(hits) >= k:
            break
    return hits


def vector_of(ctx: UiContext, db: Session, image: Image) -> np.ndarray | None:
    """A stored photo's vector from the active model."""
    model_id, dim = active_model(ctx, db)
    return vectors.vector_of(db, image.id, model_id, dim)


def embed_upload(ctx: UiContext, data: bytes) -> np.ndarray:
    """Embed an uploaded query photo without storing it."""
    from embedder import ImageDecodeError, decode_image

    if len(data) > ctx.settings.max_upload_bytes:
        raise UploadRejected("the file is larger than the upload limit")
    try:
        image = decode_image(data, max_pixels=ctx.settings.max_pixels)
    except ImageDecodeError as exc:
        raise UploadRejected(exc.message) from exc
    return embedder(ctx).embed([image])[0]


def set_reference(
    db: Session, image: Image, label: str, key_id: uuid.UUID, model_id: str | None = None
) -> None:
    """Make `image` the reference photo for `label` (the label service; demo seeder API)."""
    labels.set_label(db, image, label, reference=True, key_id=key_id)
