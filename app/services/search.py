"""Similarity search: query vector -> index top-k -> DB rows -> ranked hits.

Filters live in the database (the source of truth: labels change on review), so a filtered
search first compiles them to the allowed image ids in SQL and hands those to the index
(`IdFilter`: a FAISS id selector or a Milvus `id in [...]`), which makes it exact. Only when
the allowed set is larger than `search_filter_max_ids` (a filter that excludes little) does
it over-fetch unfiltered and drop what the filters refuse, widening until k are found.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import Embedding, Image, Label, Procedure
from app.services import vectors
from app.services.errors import ProblemError
from app.services.ingest import IngestService, Serving, Upload
from app.services.runtime import Runtime
from indexer.filters import IdFilter


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
        return bool(self.active())

    def active(self) -> dict[str, Any]:
        """The filters that are set, by name (the bound values of the resolve statement)."""
        return {k: v for k, v in vars(self).items() if v is not None}


class QueryImage(NamedTuple):
    """What a search by id needs of its query image."""

    id: int
    procedure_id: uuid.UUID


class ImageRow(NamedTuple):
    """A hit's image as read (plain row: no ORM object per hit on the search path)."""

    id: int
    uid: uuid.UUID
    procedure_id: uuid.UUID
    sha256: str
    mime: str
    width: int
    height: int
    bytes: int
    captured_at: datetime | None
    created_at: datetime


class ProcedureRow(NamedTuple):
    """A hit's procedure as read."""

    id: uuid.UUID
    source: str
    external_id: str
    kind: str
    performed_at: datetime | None
    created_at: datetime


class LabelRow(NamedTuple):
    """One label of a hit's image."""

    label: str
    source: str
    score: float | None


@dataclass
class Hit:
    """One ranked result."""

    rank: int
    score: float
    image: ImageRow
    procedure: ProcedureRow
    labels: list[LabelRow] = field(default_factory=list)


class SearchService:
    """Runs searches against the runtime's live index and database."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def vector_for_upload(self, data: bytes) -> np.ndarray:
        """Embed an uploaded query image (validated like an ingest, never stored)."""
        serving = Serving.of(self.rt)
        (decoded,) = IngestService(self.rt).validate([Upload(None, data)], serving)
        with self.rt.metrics.step("embed", "search"):
            return (decoded.vector or serving.batcher.submit(decoded.tensor)).result()

    def vector_for_image(self, session: Session, uid: uuid.UUID) -> tuple[np.ndarray, QueryImage]:
        """The stored vector of a live image (from the DB, the source of truth), in one query."""
        index = self.rt.index
        assert index is not None
        params = {"uid": uid, "model_id": index.model_id}
        row = session.connection().execute(_VECTOR_FOR_IMAGE, params).first()
        if row is None:
            raise ProblemError(404, "image_not_found", "No image with this id.")
        image_id, procedure_id, raw = row
        if raw is None:
            raise ProblemError(409, "not_indexed", "This image has no vector for the active model.")
        vector = vectors.from_rows([(image_id, raw)], index.dim)[1][0]
        return vector, QueryImage(image_id, procedure_id)

    def search(
        self,
        session: Session,
        query: np.ndarray,
        k: int,
        filters: SearchFilters,
        exclude_image_id: int | None = None,
    ) -> list[Hit]:
        """Top-k live images matching the filters, best first (exact for the index's kind)."""
        rt = self.rt
        assert rt.index is not None
        allowed = self._allowed_ids(session, filters) if filters.any() else None
        if allowed is not None:
            ranked, fetched = self._search_allowed(query, k, allowed, exclude_image_id), 0
        else:
            ranked, fetched = self._search_overfetch(query, k, filters.any(), exclude_image_id)
        with rt.metrics.step("database", "search"):
            rows = self._resolve(session, [i for i, _ in ranked], filters)
        hits = [(i, s) for i, s in ranked if i in rows][:k]
        if fetched and len(hits) < k:  # filters (or a delete racing the index) dropped some
            hits = self._widen(session, query, k, filters, exclude_image_id, fetched, rows, hits)
        rt.metrics.searches.inc()
        return [Hit(rank, score, *rows[i]) for rank, (i, score) in enumerate(hits, start=1)]

    def _allowed_ids(self, session: Session, f: SearchFilters) -> np.ndarray | None:
        """The live image ids the filters allow, or None when more than the bound (then the
        caller over-fetches: handing a huge set to the index costs more than it saves)."""
        bound = self.rt.settings.search_filter_max_ids
        with self.rt.metrics.step("database", "search"):
            active = f.active()
            found = session.connection().execute(
                _allowed_stmt(frozenset(active)), {**active, "limit": bound + 1}
            )
            ids = np.fromiter((r[0] for r in found), dtype=np.int64)
        return None if len(ids) > bound else ids

    def _search_allowed(
        self, query: np.ndarray, k: int, allowed: np.ndarray, exclude: int | None
    ) -> list[tuple[int, float]]:
        """Top-k among the allowed ids only (the index compiles the filter)."""
        if exclude is not None:
            allowed = allowed[allowed != exclude]
        if len(allowed) == 0:
            return []
        assert self.rt.index is not None
        with self.rt.metrics.step("index", "search"):
            scores, ids = self.rt.index.search(
                query, min(k, len(allowed)), allowed=IdFilter.of(allowed)
            )
        return _ranked(ids, scores, exclude)

    def _search_overfetch(
        self, query: np.ndarray, k: int, filtered: bool, exclude: int | None
    ) -> tuple[list[tuple[int, float]], int]:
        """Top (k + 1 for an excluded query image, x search_overfetch when filtered) and how
        many were asked for (0: the index has no more to give)."""
        rt = self.rt
        assert rt.index is not None
        total = rt.index.fetch_limit()
        if total == 0:
            return [], 0
        extra = 1 if exclude is not None else 0
        fetch = max(1, min(total, k * rt.settings.search_overfetch if filtered else k + extra))
        with rt.metrics.step("index", "search"):
            scores, ids = rt.index.search(query, fetch)
        exhausted = int((ids[0] >= 0).sum()) < fetch
        return _ranked(ids, scores, exclude), 0 if exhausted else fetch

    def _widen(
        self,
        session: Session,
        query: np.ndarray,
        k: int,
        filters: SearchFilters,
        exclude: int | None,
        fetch: int,
        rows: dict[int, tuple[ImageRow, ProcedureRow, list[LabelRow]]],
        hits: list[tuple[int, float]],
    ) -> list[tuple[int, float]]:
        """Over-fetch 4x more until k results pass the filters or the index is exhausted."""
        rt = self.rt
        assert rt.index is not None
        total = rt.index.fetch_limit()
        while len(hits) < k and 0 < fetch < total:
            fetch = min(total, fetch * 4)
            with rt.metrics.step("index", "search"):
                scores, ids = rt.index.search(query, fetch)
            if int((ids[0] >= 0).sum()) < fetch:
                fetch = 0  # the index gave all it has: this round is the last
            ranked = _ranked(ids, scores, exclude)
            with rt.metrics.step("database", "search"):
                rows.update(self._resolve(session, [i for i, _ in ranked], filters))
            hits = [(i, s) for i, s in ranked if i in rows][:k]
        return hits

    def _resolve(
        self, session: Session, ids: list[int], f: SearchFilters
    ) -> dict[int, tuple[ImageRow, ProcedureRow, list[LabelRow]]]:
        """The live images among `ids` that pass the filters, with procedure and labels."""
        if not ids:
            return {}
        active = f.active()
        stmt = _resolve_stmt(frozenset(active))
        out: dict[int, tuple[ImageRow, ProcedureRow, list[LabelRow]]] = {}
        for row in session.connection().execute(stmt, {"ids": ids, **active}):
            entry = out.get(row[0])
            if entry is None:
                entry = out[row[0]] = (ImageRow(*row[:_NI]), ProcedureRow(*row[_NI:_NP]), [])
            if row[_NP] is not None:
                entry[2].append(LabelRow(*row[_NP:]))
        return out


def _ranked(ids: np.ndarray, scores: np.ndarray, exclude: int | None) -> list[tuple[int, float]]:
    """(id, score) of the first query's results, padding and the excluded id dropped."""
    return [
        (int(i), float(s))
        for i, s in zip(ids[0], scores[0], strict=True)
        if i >= 0 and i != exclude
    ]


# The search path reads plain rows of the tables (no ORM objects, statements built once and
# bound per call): after a flat scan has flushed the CPU caches, ORM loading and statement
# building cost more than SQLite's own work for a 10-row lookup (1.9 ms -> 1.3 ms measured).
_I, _P, _L = Image.__table__, Procedure.__table__, Label.__table__
_COLUMNS = (
    *(_I.c[name] for name in ImageRow._fields),
    *(_P.c[name] for name in ProcedureRow._fields),
    *(_L.c[name] for name in LabelRow._fields),
)
_NI, _NP = len(ImageRow._fields), len(ImageRow._fields) + len(ProcedureRow._fields)

_E = Embedding.__table__
_VECTOR_FOR_IMAGE = (
    sa.select(_I.c.id, _I.c.procedure_id, _E.c.vector)
    .outerjoin(_E, sa.and_(_E.c.image_id == _I.c.id, _E.c.model_id == sa.bindparam("model_id")))
    .where(_I.c.uid == sa.bindparam("uid"), _I.c.deleted_at.is_(None))
)


@functools.lru_cache(maxsize=64)  # one per combination of filters: at most 2**6
def _resolve_stmt(active: frozenset[str]) -> sa.Select:
    """Images among :ids with procedure and labels (outer join), one row per label, filtered
    by the named filters (bound by name)."""
    q = (
        sa.select(*_COLUMNS)
        .join_from(_I, _P, _P.c.id == _I.c.procedure_id)
        .outerjoin(_L, _L.c.image_id == _I.c.id)
        .where(_I.c.id.in_(sa.bindparam("ids", expanding=True)), _I.c.deleted_at.is_(None))
        .order_by(_I.c.id, _L.c.id)
    )
    return q.where(*_filter_clauses(active))


@functools.lru_cache(maxsize=64)
def _allowed_stmt(active: frozenset[str]) -> sa.Select:
    """Ids of live images that pass the named filters, at most :limit of them."""
    q = (
        sa.select(_I.c.id)
        .join_from(_I, _P, _P.c.id == _I.c.procedure_id)
        .where(_I.c.deleted_at.is_(None), *_filter_clauses(active))
    )
    return q.limit(sa.bindparam("limit"))


def _filter_clauses(active: frozenset[str]) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses of the named filters over images `_I` joined with procedures `_P`."""
    when = sa.func.coalesce(_I.c.captured_at, _I.c.created_at)
    wanted = _L.alias("wanted")  # not the outer-joined labels, which list every label
    clauses = {
        "procedure_id": lambda: _I.c.procedure_id == sa.bindparam("procedure_id"),
        "exclude_procedure_id": lambda: _I.c.procedure_id != sa.bindparam("exclude_procedure_id"),
        "procedure_kind": lambda: _P.c.kind == sa.bindparam("procedure_kind"),
        "date_from": lambda: when >= sa.bindparam("date_from"),
        "date_to": lambda: when < sa.bindparam("date_to"),
        "label": lambda: sa.exists().where(
            wanted.c.image_id == _I.c.id, wanted.c.label == sa.bindparam("label")
        ),
    }
    return [clauses[name]() for name in sorted(active)]
