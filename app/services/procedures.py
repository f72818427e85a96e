"""Procedures: idempotent create on (source, external_id), get, filtered keyset listing,
and the keyset listing of one procedure's live photos.

Room and operator codes are pseudonymous tokens (PROCEDURE_CODE_PATTERN), never names. A
repeated create returns the existing procedure unchanged except that it fills a code that is
still empty; a code that differs from the stored one is never overwritten silently: it is a 409
`procedure_code_conflict` (codes="error", the API) or kept as stored (codes="keep", DICOM and
bulk import, where every instance or row of a procedure repeats the create)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.db.models import PROCEDURE_CODE_PATTERN, PROCEDURE_CODE_RULE, Image, Procedure
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
    room: str | None = None
    operator: str | None = None


_CODE = re.compile(PROCEDURE_CODE_PATTERN)
CodeConflict = Literal["error", "keep"]


def is_code(value: str | None) -> bool:
    """A valid room / operator code (a short token without spaces: pseudonymous, no name)."""
    return value is not None and _CODE.fullmatch(value) is not None


def create(
    session: Session,
    source: str,
    external_id: str,
    kind: str,
    performed_at: datetime | None,
    *,
    room: str | None = None,
    operator: str | None = None,
    codes: CodeConflict = "error",
) -> tuple[Procedure, bool]:
    """Create a procedure, or return the existing one with the same source + external_id
    (filling its empty room / operator code; see the module docstring for a different one)."""
    for name, value in (("room", room), ("operator", operator)):
        if value is not None and not is_code(value):
            raise ProblemError(422, "invalid_procedure_code", f"{name}: {PROCEDURE_CODE_RULE}")
    found = _by_external(session, source, external_id)
    if found is not None:
        return _fill_codes(session, found, room, operator, codes), False
    row = Procedure(
        source=source,
        external_id=external_id,
        kind=kind,
        performed_at=performed_at,
        room=room,
        operator=operator,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # a concurrent create won the race: return its row
        session.rollback()
        found = _by_external(session, source, external_id)
        if found is None:
            raise
        return _fill_codes(session, found, room, operator, codes), False
    return row, True


def _fill_codes(
    session: Session,
    row: Procedure,
    room: str | None,
    operator: str | None,
    codes: CodeConflict,
) -> Procedure:
    """Fill the empty codes of an existing procedure; a different stored code is a 409 or
    kept (codes="keep"). The values are never logged."""
    changed = False
    for name, value in (("room", room), ("operator", operator)):
        if value is None:
            continue
        stored = getattr(row, name)
        if stored is None:
            setattr(row, name, value)
            changed = True
        elif stored != value and codes == "error":
            session.rollback()
            raise ProblemError(
                409,
                "procedure_code_conflict",
                f"This procedure already has a different {name} code; codes are not "
                "overwritten by a repeated create.",
            )
    if changed:
        session.commit()
    return row


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
    if filters.room is not None:
        q = q.where(Procedure.room == filters.room)
    if filters.operator is not None:
        q = q.where(Procedure.operator == filters.operator)
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
