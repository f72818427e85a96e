"""Procedures: idempotent create on (source, external_id), get, filtered keyset listing,
and the keyset listing of one procedure's live photos."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.db.models import Image, Procedure
from app.services import pagination
from app.services.errors import ProblemError


@dataclass
class ProcedureFilter:
    """Optional filters of the procedure list."""

    source: str | None = None
    external_id: str | None = None
    kind: str | None = None
    performed_from: datetime | None = None
    performed_to: datetime | None = None


def create(
    session: Session, source: str, external_id: str, kind: str, performed_at: datetime | None
) -> tuple[Procedure, bool]:
    """Create a procedure, or return the existing one with the same source + external_id."""
    found = _by_external(session, source, external_id)
    if found is not None:
        return found, False
    row = Procedure(source=source, external_id=external_id, kind=kind, performed_at=performed_at)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # a concurrent create won the race: return its row
        session.rollback()
        found = _by_external(session, source, external_id)
        if found is None:
            raise
        return found, False
    return row, True


def _by_external(session: Session, source: str, external_id: str) -> Procedure | None:
    return session.scalar(
        sa.select(Procedure).where(Procedure.source == source, Procedure.external_id == external_id)
    )


def get(session: Session, procedure_id: uuid.UUID) -> Procedure:
    """The procedure, or a 404 problem."""
    row = session.get(Procedure, procedure_id)
    if row is None:
        raise ProblemError(404, "procedure_not_found", "No procedure with this id.")
    return row


def list_page(
    session: Session, filters: ProcedureFilter, limit: int, cursor: str | None
) -> tuple[list[Procedure], str | None]:
    """One page, oldest first, and the cursor of the next page (None at the end)."""
    q = sa.select(Procedure)
    if filters.source is not None:
        q = q.where(Procedure.source == filters.source)
    if filters.external_id is not None:
        q = q.where(Procedure.external_id == filters.external_id)
    if filters.kind is not None:
        q = q.where(Procedure.kind == filters.kind)
    if filters.performed_from is not None:
        q = q.where(Procedure.performed_at >= filters.performed_from)
    if filters.performed_to is not None:
        q = q.where(Procedure.performed_at < filters.performed_to)
    if cursor:
        ts, rid = pagination.decode(cursor)
        q = q.where(
            sa.or_(
                Procedure.created_at > ts,
                sa.and_(Procedure.created_at == ts, Procedure.id > rid),
            )
        )
    rows = list(session.scalars(q.order_by(Procedure.created_at, Procedure.id).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], pagination.encode(last.created_at, last.id)


def images_page(
    session: Session, procedure_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[Image], str | None]:
    """One page of the procedure's live photos with their labels loaded, oldest first (by
    created_at, then public uid: the same opaque cursors as the procedure list); 404 for an
    unknown procedure."""
    get(session, procedure_id)
    q = (
        sa.select(Image)
        .where(Image.procedure_id == procedure_id, Image.deleted_at.is_(None))
        .options(selectinload(Image.labels))
    )
    if cursor:
        ts, uid = pagination.decode(cursor)
        q = q.where(sa.or_(Image.created_at > ts, sa.and_(Image.created_at == ts, Image.uid > uid)))
    rows = list(session.scalars(q.order_by(Image.created_at, Image.uid).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], pagination.encode(last.created_at, last.uid)
