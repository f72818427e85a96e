"""Procedures: create (idempotent), get, list (also by the device's own ids), their photos."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.api import schemas
from app.api.convert import procedure_image_out, procedure_out
from app.api.deps import CurrentKey, IngestKey, RuntimeDep, SearchKey, SessionDep
from app.db.models import Image
from app.documentation.procedure_report import ensure_predictions
from app.documentation.service import Documentation, documentation_of
from app.documentation.thresholds import UNRECOGNISED
from app.services import audit
from app.services import images as svc_images
from app.services import procedures as svc
from app.video.read import video_of

router = APIRouter(prefix="/v1/procedures", tags=["procedures"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a procedure (returns the existing one, 200, for a known source+external_id)",
    responses={
        200: {"model": schemas.ProcedureOut, "description": "The existing procedure."},
        409: {"description": "The existing procedure has a different room or operator code."},
    },
)
def create_procedure(
    body: schemas.ProcedureCreate, session: SessionDep, _: IngestKey, response: Response
) -> schemas.ProcedureOut:
    row, created = svc.create(
        session,
        body.source,
        body.external_id,
        body.kind,
        body.performed_at,
        room=body.room,
        operator=body.operator,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return procedure_out(row)


@router.get("/{procedure_id}", summary="Get a procedure")
def get_procedure(
    procedure_id: uuid.UUID, session: SessionDep, _: CurrentKey
) -> schemas.ProcedureOut:
    return procedure_out(svc.get(session, procedure_id))


@router.get(
    "",
    summary="List procedures (oldest first, cursor pagination); source and/or external_id "
    "find a procedure by the sending device's own ids; room and operator filter by code",
)
def list_procedures(
    session: SessionDep,
    _: CurrentKey,
    source: Annotated[str | None, Query(max_length=128, pattern=schemas.NO_CONTROL_CHARS)] = None,
    external_id: Annotated[
        str | None, Query(max_length=256, pattern=schemas.NO_CONTROL_CHARS)
    ] = None,
    kind: schemas.ProcedureKind | None = None,
    performed_from: Annotated[schemas.AwareDatetime | None, Query()] = None,
    performed_to: Annotated[schemas.AwareDatetime | None, Query()] = None,
    room: Annotated[
        str | None, Query(max_length=32, pattern=schemas.PROCEDURE_CODE_PATTERN)
    ] = None,
    operator: Annotated[
        str | None, Query(max_length=32, pattern=schemas.PROCEDURE_CODE_PATTERN)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> schemas.ProcedurePage:
    filters = svc.ProcedureFilter(
        source, external_id, kind, performed_from, performed_to, room, operator
    )
    rows, nxt = svc.list_page(session, filters, limit, cursor)
    return schemas.ProcedurePage(items=[procedure_out(r) for r in rows], next_cursor=nxt)


def _landmarks(
    docs: Documentation, session: SessionDep, images: list[Image]
) -> dict[int, schemas.Landmark | None]:
    """The serving model's landmark per photo, as the ingest answer and the reports judge it
    (photos stored before a re-index flip are predicted from their stored vectors first)."""
    ensure_predictions(docs, session, images)
    model_id, _ = docs.model
    policy = docs.policy(model_id)
    out: dict[int, schemas.Landmark | None] = {}
    for img in images:
        predicted = [
            lab for lab in img.labels if lab.source == "predicted" and lab.model_id == model_id
        ]
        if not predicted:
            out[img.id] = None
            continue
        lab = max(predicted, key=lambda p: p.id)
        score = lab.score or 0.0
        recognised = policy.recognition(lab.label, score) == "recognised"
        out[img.id] = schemas.Landmark(label=lab.label if recognised else UNRECOGNISED, score=score)
    return out


@router.get(
    "/{procedure_id}/images",
    summary="A procedure's photos (oldest first, cursor pagination) with labels, predicted "
    "landmark and links",
)
def list_procedure_images(
    procedure_id: uuid.UUID,
    session: SessionDep,
    rt: RuntimeDep,
    key: SearchKey,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> schemas.ProcedureImagePage:
    images, nxt = svc.images_page(session, procedure_id, limit, cursor)
    landmarks = _landmarks(documentation_of(rt), session, images)
    audit.record(session, key.key_id, "procedure.images", str(procedure_id))
    session.commit()
    ids = [img.id for img in images]
    dicom, video = svc_images.dicom_of(session, ids), video_of(session, ids)
    items = [
        procedure_image_out(img, landmarks[img.id], dicom.get(img.id), video.get(img.id))
        for img in images
    ]
    return schemas.ProcedureImagePage(items=items, next_cursor=nxt)
