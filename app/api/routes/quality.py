"""Documentation-quality dashboard: rates per standard, period, room and operator code, with
N and Wilson 95 % intervals; as JSON, CSV, a printable PDF report and a PNG plot.

Every endpoint takes the same filter; the figures are aggregates of pseudonymous codes (no
procedure ids, no patient data), readable with the search scope.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.api import schemas
from app.api.deps import RuntimeDep, SearchKey, SessionDep
from app.documentation.dashboard import (
    GroupQuality,
    QualityDashboard,
    QualityFilter,
    RequirementRate,
    StandardQuality,
    quality_dashboard,
)
from app.documentation.dashboard_export import dashboard_csv, dashboard_pdf, file_name
from app.documentation.dashboard_plot import dashboard_figure, figure_png
from app.documentation.dashboard_stats import Rate
from app.documentation.service import documentation_of
from app.services import audit
from app.services.keys import Principal
from app.services.runtime import Runtime

router = APIRouter(tags=["quality"])

Code = Annotated[str | None, Query(max_length=32, pattern=schemas.PROCEDURE_CODE_PATTERN)]


def quality_filter(
    standard: Annotated[
        str | None, Query(max_length=64, description="default: every kind's default standard")
    ] = None,
    period: Literal["week", "month"] = "month",
    date_from: Annotated[
        date | None, Query(description="first UTC day (default: 26 weeks / 12 months back)")
    ] = None,
    date_to: Annotated[
        date | None, Query(description="last UTC day, included (default: today)")
    ] = None,
    room: Code = None,
    operator: Code = None,
) -> QualityFilter:
    return QualityFilter(standard, period, date_from, date_to, room, operator)


FilterDep = Annotated[QualityFilter, Depends(quality_filter)]


class RateOut(BaseModel):
    """k of n procedures; rate and its Wilson 95 % interval are null when n is 0."""

    k: int
    n: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None


class RequirementRateOut(BaseModel):
    id: str
    name: str
    required: bool
    labels: list[str]
    documented: RateOut
    uncertain: int
    missing: int
    reasons: dict[str, int]  # reason codes of the procedures where it was not documented


class GroupOut(BaseModel):
    """All procedures, one period (`start` = its first day), one room or one operator code
    (`key` null: procedures without a code)."""

    key: str | None
    start: date | None
    complete: RateOut
    mean_completeness: float | None
    requirements: list[RequirementRateOut]


class StandardQualityOut(BaseModel):
    standard: schemas.StandardOut
    overall: GroupOut
    periods: list[GroupOut]
    rooms: list[GroupOut]
    operators: list[GroupOut]
    most_missed: list[str]  # requirement ids, most often not documented first


class QualityFilterOut(BaseModel):
    standard: str | None
    period: str
    date_from: date
    date_to: date
    room: str | None
    operator: str | None


class QualityOut(BaseModel):
    filter: QualityFilterOut
    model_id: str
    calibrated: bool
    procedures: int
    synthetic: int  # procedures of `endoseek demo` among them
    generated_at: datetime
    standards: list[StandardQualityOut]


def _rate(r: Rate) -> RateOut:
    ci = r.ci
    return RateOut(
        k=r.k, n=r.n, rate=r.rate, ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None
    )


def _requirement(r: RequirementRate) -> RequirementRateOut:
    req = r.requirement
    return RequirementRateOut(
        id=req.id,
        name=req.name,
        required=req.required,
        labels=list(req.labels),
        documented=_rate(r.documented),
        uncertain=r.uncertain,
        missing=r.missing,
        reasons=dict(r.reasons),
    )


def _group(g: GroupQuality, by_code: bool = False) -> GroupOut:
    return GroupOut(
        key=(g.key or None) if by_code else g.key,
        start=g.start,
        complete=_rate(g.complete),
        mean_completeness=g.mean_completeness,
        requirements=[_requirement(r) for r in g.requirements],
    )


def _standard(sq: StandardQuality) -> StandardQualityOut:
    s = sq.standard
    return StandardQualityOut(
        standard=schemas.StandardOut(
            id=s.id,
            name=s.name,
            version=s.version,
            procedure_kind=s.procedure_kind,
            verified=s.verified,
        ),
        overall=_group(sq.overall),
        periods=[_group(g) for g in sq.periods],
        rooms=[_group(g, by_code=True) for g in sq.rooms],
        operators=[_group(g, by_code=True) for g in sq.operators],
        most_missed=[r.requirement.id for r in sq.most_missed()],
    )


def _dashboard(
    rt: Runtime, session: Session, key: Principal, f: QualityFilter, action: str
) -> QualityDashboard:
    dash = quality_dashboard(documentation_of(rt), session, f)
    g = dash.filter
    detail = {
        "standard": g.standard_id,
        "period": g.period,
        "from": str(g.date_from),
        "to": str(g.date_to),
        "room": g.room,
        "operator": g.operator,
        "procedures": dash.procedures,
    }
    audit.record(session, key.key_id, action, None, detail)
    session.commit()
    return dash


def _attachment(body: bytes | str, media_type: str, name: str) -> Response:
    return Response(
        content=body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/v1/quality/summary", summary="Documentation completeness rates with N and 95 % CI")
def get_summary(rt: RuntimeDep, session: SessionDep, key: SearchKey, f: FilterDep) -> QualityOut:
    dash = _dashboard(rt, session, key, f, "quality.summary")
    g = dash.filter
    assert g.date_from is not None and g.date_to is not None
    return QualityOut(
        filter=QualityFilterOut(
            standard=g.standard_id,
            period=g.period,
            date_from=g.date_from,
            date_to=g.date_to,
            room=g.room,
            operator=g.operator,
        ),
        model_id=dash.model_id,
        calibrated=dash.calibrated,
        procedures=dash.procedures,
        synthetic=dash.synthetic,
        generated_at=dash.generated_at,
        standards=[_standard(sq) for sq in dash.standards],
    )


@router.get(
    "/v1/quality/summary.csv",
    summary="The quality rates as CSV (one rate per row: k, n, rate, Wilson 95 % CI)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def get_csv(rt: RuntimeDep, session: SessionDep, key: SearchKey, f: FilterDep) -> Response:
    dash = _dashboard(rt, session, key, f, "quality.export.csv")
    return _attachment(dashboard_csv(dash), "text/csv; charset=utf-8", file_name(dash, "csv"))


@router.get(
    "/v1/quality/report.pdf",
    summary="A printable quality report: period, standard, plot and tables",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def get_pdf(rt: RuntimeDep, session: SessionDep, key: SearchKey, f: FilterDep) -> Response:
    dash = _dashboard(rt, session, key, f, "quality.export.pdf")
    return _attachment(dashboard_pdf(dash), "application/pdf", file_name(dash, "pdf"))


@router.get(
    "/v1/quality/plot.png",
    summary="The quality plot as a PNG to paste into a report",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def get_png(rt: RuntimeDep, session: SessionDep, key: SearchKey, f: FilterDep) -> Response:
    dash = _dashboard(rt, session, key, f, "quality.export.png")
    png = figure_png(dashboard_figure(dash))
    return _attachment(png, "image/png", file_name(dash, "png"))
