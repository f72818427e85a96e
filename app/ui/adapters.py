"""The UI's calls into the service core: the same services the REST routes call.

Uploads go through the IngestService (the documentation hook predicts the landmark),
searches through the SearchService over the live index, always with the started runtime of
the app the UI is mounted in (its model changes on a switch). There is no second path: a UI
without a started runtime (a bare app) answers 503 to uploads and searches.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from fastapi import HTTPException
from sqlalchemy.orm import Session

from app.db.models import Image, Procedure
from app.services import audit
from app.services.errors import ProblemError
from app.services.ingest import IngestService, Upload
from app.services.runtime import Runtime
from app.services.search import SearchFilters, SearchService
from app.ui.context import UiContext


class UploadRejected(ValueError):
    """A file that cannot be ingested or searched with; the message is safe to show."""


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


def runtime(ctx: UiContext) -> Runtime:
    """The started service runtime of the app (503 when the UI runs without one)."""
    rt = getattr(ctx.state, "runtime", None)
    if not isinstance(rt, Runtime) or rt.index is None:
        raise HTTPException(503, "the service is not running")
    return rt


def upload(ctx: UiContext, procedure: Procedure, data: bytes, key_id: uuid.UUID) -> Ingested:
    """Store one photo through the core IngestService (exactly what a device upload gets)."""
    rt = runtime(ctx)
    try:
        (result,) = IngestService(rt).ingest(procedure.id, [Upload(None, data)])
    except ProblemError as exc:
        if exc.status >= 500:
            raise
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
    """Top-k live images through the SearchService, as ORM images (the pages show labels)."""
    filters = SearchFilters(
        procedure_kind=kind or None, label=label or None, exclude_procedure_id=exclude_procedure
    )
    found = SearchService(runtime(ctx)).search(db, query, k, filters)
    ids = [hit.image.id for hit in found]
    images = {img.id: img for img in db.scalars(sa.select(Image).where(Image.id.in_(ids)))}
    return [Hit(images[hit.image.id], hit.score) for hit in found if hit.image.id in images]


def vector_of(ctx: UiContext, db: Session, image: Image) -> np.ndarray | None:
    """A stored photo's vector of the serving model (None while it has none)."""
    try:
        vector, _ = SearchService(runtime(ctx)).vector_for_image(db, image.uid)
    except ProblemError as exc:
        if exc.status in (404, 409):
            return None
        raise
    return vector


def embed_upload(ctx: UiContext, data: bytes) -> np.ndarray:
    """Embed an uploaded query photo without storing it (validated like an ingest)."""
    try:
        return SearchService(runtime(ctx)).vector_for_upload(data)
    except ProblemError as exc:
        if exc.status >= 500:
            raise
        raise UploadRejected(exc.detail) from exc
