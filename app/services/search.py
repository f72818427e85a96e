"""Similarity search: query vector -> index top-k (over-fetched) -> DB filters -> ranked hits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from app.db.models import Embedding, Image, Label, Procedure
from app.services import vectors
from app.services.errors import ProblemError
from app.services.ingest import IngestService, Serving, Upload
from app.services.runtime import Runtime


@dataclass
class SearchFilters:
    """Optional result filters; dates bound the image's capture time (else its upload time)."""

    procedure_id: uuid.UUID | None = None
    procedure_kind: str | None = None
    label: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    exclude_procedure_id: uuid.UUID | None = None

    def any(self) -> bool:
        return any(v is not None for v in vars(self).values())


@dataclass
class Hit:
    """One ranked result."""

    rank: int
    score: float
    image: Image
    procedure: Procedure
    labels: list[Label] = field(default_factory=list)


class SearchService:
    """Runs searches against the runtime's live index and database."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def vector_for_upload(self, data: bytes) -> np.ndarray:
        """Embed an uploaded query image (validated like an ingest, never stored)."""
        serving = Serving.of(self.rt)
        (decoded,) = IngestService(self.rt).validate([Upload(None, data)], serving)
        with self.rt.metrics.step("embed", "search"):
            return serving.batcher.submit(decoded.tensor).result()

    def vector_for_image(self, session: Session, uid: uuid.UUID) -> tuple[np.ndarray, Image]:
        """The stored vector of a live image (from the DB, the source of truth), in one query."""
        index = self.rt.index
        assert index is not None
        row = session.execute(
            sa.select(Image, Embedding.vector)
            .outerjoin(
                Embedding,
                sa.and_(Embedding.image_id == Image.id, Embedding.model_id == index.model_id),
            )
            .where(Image.uid == uid, Image.deleted_at.is_(None))
        ).first()
        if row is None:
            raise ProblemError(404, "image_not_found", "No image with this id.")
        img, raw = row
        if raw is None:
            raise ProblemError(409, "not_indexed", "This image has no vector for the active model.")
        return vectors.from_rows([(img.id, raw)], index.dim)[1][0], img

    def search(
        self,
        session: Session,
        query: np.ndarray,
        k: int,
        filters: SearchFilters,
        exclude_image_id: int | None = None,
    ) -> list[Hit]:
        """Top-k live images matching the filters, best first.

        Asks the index for more than k (x search_overfetch) and widens the request until k
        results pass the filters or the whole index has been seen.
        """
        rt = self.rt
        assert rt.index is not None
        total = len(rt.index)
        if total == 0:
            return []
        extra = 1 if exclude_image_id is not None else 0
        fetch = min(total, k + extra if not filters.any() else k * rt.settings.search_overfetch)
        while True:
            with rt.metrics.step("index", "search"):
                scores, ids = rt.index.search(query, max(fetch, 1))
            ranked = [
                (int(i), float(s))
                for i, s in zip(ids[0], scores[0], strict=True)
                if i >= 0 and i != exclude_image_id
            ]
            with rt.metrics.step("database", "search"):
                rows = self._resolve(session, [i for i, _ in ranked], filters)
            hits = [(i, s) for i, s in ranked if i in rows][:k]
            if len(hits) >= k or fetch >= total:
                break
            fetch = min(total, fetch * 4)
        rt.metrics.searches.inc()
        return [Hit(rank, score, *rows[i]) for rank, (i, score) in enumerate(hits, start=1)]

    def _resolve(
        self, session: Session, ids: list[int], f: SearchFilters
    ) -> dict[int, tuple[Image, Procedure, list[Label]]]:
        """The live images among `ids` that pass the filters, with procedure and labels.

        One query (labels by outer join): a search by id is a handful of indexed lookups, and
        each round trip through the ORM costs a few hundred microseconds of the 3 ms budget.
        """
        if not ids:
            return {}
        q = (
            sa.select(Image, Procedure, Label)
            .join(Procedure, Procedure.id == Image.procedure_id)
            .outerjoin(Label, Label.image_id == Image.id)
            .where(Image.id.in_(ids), Image.deleted_at.is_(None))
            .order_by(Image.id, Label.id)
        )
        if f.procedure_id is not None:
            q = q.where(Image.procedure_id == f.procedure_id)
        if f.exclude_procedure_id is not None:
            q = q.where(Image.procedure_id != f.exclude_procedure_id)
        if f.procedure_kind is not None:
            q = q.where(Procedure.kind == f.procedure_kind)
        when = sa.func.coalesce(Image.captured_at, Image.created_at)
        if f.date_from is not None:
            q = q.where(when >= f.date_from)
        if f.date_to is not None:
            q = q.where(when < f.date_to)
        if f.label is not None:
            wanted = aliased(Label)  # not the outer-joined Label, which lists every label
            q = q.where(sa.exists().where(wanted.image_id == Image.id, wanted.label == f.label))
        out: dict[int, tuple[Image, Procedure, list[Label]]] = {}
        for img, proc, label in session.execute(q):
            entry = out.setdefault(img.id, (img, proc, []))
            if label is not None:
                entry[2].append(label)
        return out
