"""Procedures list with completeness badges; procedure page with checklist and uploads."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from app.db.models import PROCEDURE_KINDS, Procedure
from app.documentation.procedure_report import explained_report
from app.services.images import dicom_of
from app.ui import adapters, queries
from app.ui.security import PREFIX, CsrfUser, ensure_scope
from app.ui.templating import render
from app.ui.views.common import Ctx, Db, PageUser
from app.ui.views.videos import procedure_context

router = APIRouter()


def _day(value: str) -> datetime | None:
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    except ValueError:
        return None


@router.get("/")
def home() -> Response:
    return RedirectResponse(f"{PREFIX}/procedures", status_code=303)


@router.get("/procedures")
def procedures(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: PageUser,
    kind: str = "",
    date_from: str = "",
    date_to: str = "",
    completeness: str = "",
) -> Response:
    kind = kind if kind in PROCEDURE_KINDS else ""
    completeness = completeness if completeness in ("complete", "incomplete") else ""
    start, end = _day(date_from), _day(date_to)
    rows = queries.list_procedures(
        ctx,
        db,
        kind=kind,
        date_from=start,
        date_to=end + timedelta(days=1) if end else None,
        completeness=completeness,
    )
    filters = {
        "kind": kind,
        "date_from": date_from if start else "",
        "date_to": date_to if end else "",
        "completeness": completeness,
    }
    return render(
        request,
        "procedures.html",
        rows=rows,
        filters=filters,
        kinds=PROCEDURE_KINDS,
        nav="procedures",
    )


def _procedure(db: Db, pid: uuid.UUID) -> Procedure:
    proc = db.get(Procedure, pid)
    if proc is None:
        raise HTTPException(404, "no such procedure")
    return proc


@router.get("/procedures/{pid}")
def procedure(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: PageUser,
    pid: uuid.UUID,
    standard: str = "",
    uploaded: int = 0,
    duplicates: int = 0,
    rejected: int = 0,
    video_error: str = "",
) -> Response:
    proc = _procedure(db, pid)
    images = queries.live_images(db, proc.id)
    chosen, report = queries.report_for(ctx, db, proc, images, standard)
    unexpected = []
    rt = getattr(ctx.state, "runtime", None)
    if chosen is not None and rt is not None and rt.index is not None:
        # the running service: the explained report (reasons, clearest photo, unexpected)
        judged = explained_report(rt, db, proc, chosen.id)
        report, unexpected = judged.report, judged.unexpected
    by_uid = {str(img.uid): img for img in images}
    return render(
        request,
        "procedure.html",
        procedure=proc,
        images=images,
        by_uid=by_uid,
        dicom=dicom_of(db, [img.id for img in images]),
        standard=chosen,
        standards=ctx.standards.for_kind(proc.kind),
        report=report,
        unexpected=unexpected,
        synthetic_proc=proc.source == queries.DEMO_SOURCE,
        notice={"uploaded": uploaded, "duplicates": duplicates, "rejected": rejected},
        nav="procedures",
        **procedure_context(db, proc, images, video_error),
    )


@router.post("/procedures/{pid}/images")
def upload(
    ctx: Ctx,
    db: Db,
    user: CsrfUser,
    pid: uuid.UUID,
    files: Annotated[list[UploadFile], File()],
) -> Response:
    """Add photos (scope ingest), then show the procedure with its updated checklist."""
    ensure_scope(user, "ingest")
    proc = _procedure(db, pid)
    counts = {"uploaded": 0, "duplicates": 0, "rejected": 0}
    for upload_file in files[: ctx.settings.max_files_per_request]:
        data = upload_file.file.read(ctx.settings.max_upload_bytes + 1)
        try:
            result = adapters.upload(ctx, proc, data, user.key_id)
        except adapters.UploadRejected:
            counts["rejected"] += 1
            continue
        counts["duplicates" if result.duplicate else "uploaded"] += 1
    query = "&".join(f"{k}={v}" for k, v in counts.items())
    return RedirectResponse(f"{PREFIX}/procedures/{proc.id}?{query}", status_code=303)
