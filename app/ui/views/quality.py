"""Documentation-quality dashboard page: filters, rates with N and 95 % CI, the plot inline
(SVG) and as a PNG, CSV and PDF downloads of exactly what the page shows."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.db.models import PROCEDURE_CODE_PATTERN
from app.documentation.dashboard import (
    PERIODS,
    QualityDashboard,
    QualityFilter,
    code_options,
    quality_dashboard,
)
from app.documentation.dashboard_export import (
    NO_CODE,
    dashboard_csv,
    dashboard_pdf,
    file_name,
    filter_text,
    rate_text,
    reason_words,
)
from app.documentation.dashboard_plot import dashboard_figure, figure_png, inline_svg
from app.documentation.service import documentation_of
from app.services import audit
from app.services.errors import ProblemError
from app.ui.security import ensure_scope
from app.ui.templating import render
from app.ui.views.common import Ctx, Db, PageUser

router = APIRouter()


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _code(value: str) -> str | None:
    return value if re.fullmatch(PROCEDURE_CODE_PATTERN, value) else None


def page_filter(
    ctx: Ctx,
    standard: str = "",
    period: str = "month",
    date_from: str = "",
    date_to: str = "",
    room: str = "",
    operator: str = "",
) -> QualityFilter:
    """The page's query string as a filter; values that do not parse are left out."""
    return QualityFilter(
        standard if standard in ctx.standards else None,
        period if period in PERIODS else "month",  # type: ignore[arg-type]
        _day(date_from),
        _day(date_to),
        _code(room),
        _code(operator),
    )


PageFilter = Annotated[QualityFilter, Depends(page_filter)]


def _query(f: QualityFilter) -> str:
    """The resolved filter as a query string: downloads repeat exactly the page's figures."""
    pairs = {
        "standard": f.standard_id or "",
        "period": f.period,
        "date_from": str(f.date_from or ""),
        "date_to": str(f.date_to or ""),
        "room": f.room or "",
        "operator": f.operator or "",
    }
    return urlencode({k: v for k, v in pairs.items() if v})


def _dashboard(ctx: Ctx, db: Db, user, f: QualityFilter, action: str) -> QualityDashboard:  # noqa: ANN001
    rt = getattr(ctx.state, "runtime", None)
    if rt is None or rt.index is None:
        raise ProblemError(503, "not_ready", "The dashboard needs the running service.")
    dash = quality_dashboard(documentation_of(rt), db, f)
    detail = {"standard": f.standard_id, "period": f.period, "procedures": dash.procedures}
    audit.record(db, user.key_id, action, None, detail)
    db.commit()
    return dash


@router.get("/quality")
def quality(request: Request, ctx: Ctx, db: Db, user: PageUser, f: PageFilter) -> Response:
    ensure_scope(user, "search")
    rooms, operators = code_options(db)
    page = {
        "standards": sorted(ctx.standards.values(), key=lambda s: (s.procedure_kind, s.name)),
        "periods": PERIODS,
        "rooms": rooms,
        "operators": operators,
        "nav": "quality",
        "rate_text": rate_text,
        "reason_words": reason_words,
        "no_code": NO_CODE,
    }
    try:
        dash = _dashboard(ctx, db, user, f, "ui.quality")
    except ProblemError as exc:
        return render(request, "quality.html", exc.status, error=exc.detail, dash=None,
                      filters=f, **page)  # fmt: skip
    described = ", ".join(
        f"{sq.standard.name}: {rate_text(sq.overall.complete)} of "
        f"{sq.overall.complete.n} procedures completely documented"
        for sq in dash.standards
    )
    svg = inline_svg(
        dashboard_figure(dash),
        f"Documentation quality, {filter_text(dash)}",
        described + ". The tables below hold every value of the plot.",
    )
    return render(request, "quality.html", dash=dash, filters=dash.filter, svg=svg,
                  query=_query(dash.filter), **page)  # fmt: skip


def _download(body: bytes | str, media_type: str, name: str) -> Response:
    disposition = f'attachment; filename="{name}"'
    return Response(body, media_type=media_type, headers={"Content-Disposition": disposition})


@router.get("/quality/plot.png")
def quality_png(ctx: Ctx, db: Db, user: PageUser, f: PageFilter) -> Response:
    ensure_scope(user, "search")
    dash = _dashboard(ctx, db, user, f, "ui.quality.png")
    return _download(figure_png(dashboard_figure(dash)), "image/png", file_name(dash, "png"))


@router.get("/quality/export.csv")
def quality_csv(ctx: Ctx, db: Db, user: PageUser, f: PageFilter) -> Response:
    ensure_scope(user, "search")
    dash = _dashboard(ctx, db, user, f, "ui.quality.csv")
    return _download(dashboard_csv(dash), "text/csv; charset=utf-8", file_name(dash, "csv"))


@router.get("/quality/report.pdf")
def quality_pdf(ctx: Ctx, db: Db, user: PageUser, f: PageFilter) -> Response:
    ensure_scope(user, "search")
    dash = _dashboard(ctx, db, user, f, "ui.quality.pdf")
    return _download(dashboard_pdf(dash), "application/pdf", file_name(dash, "pdf"))
