"""The reference gallery: per landmark references and thresholds, suggestions, re-calibration."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.documentation.guided import landmark, overview
from app.documentation.labels import SLUG
from app.documentation.recalibrate import RecalibrationError, recalibrate
from app.documentation.refresh import refresh_predictions
from app.documentation.service import Documentation, documentation_of
from app.documentation.vocabulary import shipped_vocabulary
from app.ui.security import PREFIX, CsrfUser, ensure_scope
from app.ui.templating import render
from app.ui.views.common import Ctx, PageUser
from app.ui.views.common import Db as DbDep

router = APIRouter()


def _docs(ctx: Ctx) -> Documentation:
    """The running service's documentation (the gallery needs its index and model)."""
    rt = getattr(ctx.state, "runtime", None)
    if rt is None or rt.index is None:
        raise HTTPException(503, "the service is starting: try again in a moment")
    return documentation_of(rt)


def _overview(
    request: Request,
    ctx: Ctx,
    db: DbDep,
    *,
    calibrated: bool = False,
    refreshed: int = 0,
    error: str = "",
) -> Response:
    view = overview(_docs(ctx), db)
    status = 422 if error else 200
    return render(
        request,
        "gallery.html",
        status,
        view=view,
        calibrated=calibrated,
        refreshed=refreshed,
        error=error,
        nav="gallery",
    )


@router.get("/gallery")
def gallery(
    request: Request,
    ctx: Ctx,
    db: DbDep,
    user: PageUser,
    calibrated: int = 0,
    refreshed: int = 0,
) -> Response:
    """`refreshed`: predictions re-voted by the last re-calibration (-1: too many to do)."""
    return _overview(request, ctx, db, calibrated=bool(calibrated), refreshed=refreshed)


@router.get("/gallery/{label}")
def gallery_label(request: Request, ctx: Ctx, db: DbDep, user: PageUser, label: str) -> Response:
    if not SLUG.match(label) or label not in shipped_vocabulary():
        raise HTTPException(404, "no such label in the vocabulary")
    view = landmark(_docs(ctx), db, label)
    return render(request, "gallery_landmark.html", view=view, nav="gallery")


@router.post("/gallery/calibrate")
def calibrate(request: Request, ctx: Ctx, db: DbDep, user: CsrfUser) -> Response:
    """Fit thresholds on the live references now (a few seconds for a few thousand), and
    re-vote the stored predictions against today's references."""
    ensure_scope(user, "label")
    docs = _docs(ctx)
    try:
        recalibrate(docs, db, key_id=user.key_id)
    except RecalibrationError as exc:
        return _overview(request, ctx, db, error=str(exc))
    changed = refresh_predictions(docs, db)
    refreshed = -1 if changed is None else changed
    target = f"{PREFIX}/gallery?calibrated=1&refreshed={refreshed}#calibration"
    return RedirectResponse(target, status_code=303)
