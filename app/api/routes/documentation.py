"""Required-documentation reports: one procedure against a standard, and a listing."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api import schemas
from app.api.convert import procedure_out, thumbnail_url
from app.api.deps import RuntimeDep, SearchKey, SessionDep
from app.documentation import fhir
from app.documentation.procedure_report import (
    ListingFilter,
    ProcedureDocumentation,
    documentation_page,
    procedure_documentation,
)
from app.documentation.report import RequirementResult
from app.documentation.service import documentation_of
from app.services import audit
from app.services import procedures as procedures_svc

router = APIRouter(tags=["documentation"])


def _standard_out(judged: ProcedureDocumentation) -> schemas.StandardOut:
    s = judged.report.standard
    return schemas.StandardOut(
        id=s.id,
        name=s.name,
        version=s.version,
        procedure_kind=s.procedure_kind,
        verified=s.verified,
    )


def _requirement_out(
    judged: ProcedureDocumentation, result: RequirementResult
) -> schemas.RequirementOut:
    req, best = result.requirement, result.best
    evidence = None
    if best is not None:
        img = judged.images[best.image_id]
        evidence = schemas.EvidenceOut(
            image_id=img.uid,
            thumbnail_url=thumbnail_url(img),
            label=best.label,
            score=best.score,
            source=best.source,
            threshold=best.threshold,
            video=None
            if best.pick is None
            else schemas.VideoEvidenceOut(video_id=best.pick.video_id, t_ms=best.pick.t_ms),
        )
    reason = result.reason
    return schemas.RequirementOut(
        id=req.id,
        name=req.name,
        required=req.required,
        verified=req.verified,
        labels=list(req.labels),
        status=result.status,
        best=evidence,
        reason=None
        if reason is None
        else schemas.ReasonOut(code=reason.code, detail=reason.detail),
    )


@router.get(
    "/v1/procedures/{procedure_id}/documentation",
    summary="Which photo documents each requirement of a standard, and what is missing",
)
def get_documentation(
    procedure_id: uuid.UUID,
    session: SessionDep,
    rt: RuntimeDep,
    key: SearchKey,
    standard: Annotated[str | None, Query(max_length=64, description="default: kind's")] = None,
) -> schemas.DocumentationOut:
    procedure = procedures_svc.get(session, procedure_id)
    judged = procedure_documentation(documentation_of(rt), session, procedure, standard)
    audit.record(session, key.key_id, "procedure.documentation", str(procedure_id))
    session.commit()
    report = judged.report
    return schemas.DocumentationOut(
        procedure_id=procedure_id,
        standard=_standard_out(judged),
        model_id=judged.model_id,
        calibrated=judged.calibrated,
        completeness=report.completeness,
        complete=report.complete,
        requirements=[_requirement_out(judged, r) for r in report.results],
        unexpected=[
            schemas.UnexpectedOut(
                image_id=img.uid,
                thumbnail_url=thumbnail_url(img),
                label=vote.gallery_label or "",
                score=vote.gallery_score,
            )
            for img, vote in judged.unexpected
        ],
    )


_FHIR_RESPONSES: dict[int | str, dict] = {
    200: {
        "description": "A FHIR R5 Bundle (type collection): one DiagnosticReport and one "
        "Observation per requirement of the standard.",
        "content": {
            fhir.MEDIA_TYPE: {
                "schema": {
                    "type": "object",
                    "required": ["resourceType", "type", "entry"],
                    "properties": {
                        "resourceType": {"type": "string", "enum": ["Bundle"]},
                        "type": {"type": "string", "enum": ["collection"]},
                        "entry": {"type": "array", "items": {"type": "object"}},
                    },
                }
            }
        },
    }
}


@router.get(
    "/v1/procedures/{procedure_id}/documentation/fhir",
    summary="The documentation report as FHIR R5: a DiagnosticReport and an Observation per "
    "requirement (application/fhir+json)",
    response_class=Response,
    responses=_FHIR_RESPONSES,
)
def get_documentation_fhir(
    procedure_id: uuid.UUID,
    session: SessionDep,
    rt: RuntimeDep,
    key: SearchKey,
    standard: Annotated[str | None, Query(max_length=64, description="default: kind's")] = None,
) -> Response:
    procedure = procedures_svc.get(session, procedure_id)
    judged = procedure_documentation(documentation_of(rt), session, procedure, standard)
    audit.record(session, key.key_id, "procedure.documentation.fhir", str(procedure_id))
    session.commit()
    body = fhir.documentation_bundle(judged).model_dump_json()
    return Response(content=body, media_type=fhir.MEDIA_TYPE)


@router.get("/v1/documentation", summary="Procedures by completeness (newest first, paginated)")
def list_documentation(
    session: SessionDep,
    rt: RuntimeDep,
    _: SearchKey,
    kind: schemas.ProcedureKind | None = None,
    standard: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[schemas.AwareDatetime | None, Query(description="performed from")] = None,
    until: Annotated[schemas.AwareDatetime | None, Query(description="performed before")] = None,
    complete: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> schemas.DocumentationPage:
    f = ListingFilter(kind, standard, since, until, complete)
    rows, nxt = documentation_page(documentation_of(rt), session, f, limit, cursor)
    items = [
        schemas.DocumentationSummary(
            procedure=procedure_out(r.procedure),
            standard_id=r.report.standard.id,
            completeness=r.report.completeness,
            complete=r.report.complete,
            documented=r.report.by_status("documented"),
            uncertain=r.report.by_status("uncertain"),
            missing=r.report.by_status("missing"),
        )
        for r in rows
    ]
    return schemas.DocumentationPage(items=items, next_cursor=nxt)
