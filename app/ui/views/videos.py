"""Procedure videos in the UI: upload, the analysis timeline, playback and the review of picks.

The page reads what the analysis stored (per-frame table, picks) and draws it server-side;
decisions go through app.video.review (the API's path), uploads through app.video.store.
The original is streamed to signed-in browsers with HTTP Range (seeking) because the
/v1 file route needs a Bearer key that a browser session does not hold.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.db.models import Image, Procedure, Video
from app.documentation import Standard
from app.services import audit
from app.services.errors import ProblemError
from app.ui import adapters, queries, video_timeline
from app.ui.context import UiContext
from app.ui.security import PREFIX, CsrfUser, CurrentUser, ensure_scope
from app.ui.templating import render, templates
from app.ui.views.common import Ctx, Db, PageUser
from app.video.quality import REASONS

router = APIRouter()
templates.env.filters.setdefault("clock", video_timeline.clock)

RUNNING = ("queued", "analysing")
REASON_TEXT = {
    None: "kept",
    "out_of_body": "out of body",
    "dark": "too dark",
    "overexposed": "overexposed",
    "glare": "specular glare",
    "blur": "blurred",
    "low_texture": "bubbles / low texture",
    "rejected": "rejected",
}
# what the procedure page says about a refused upload (codes from app.video.store / errors)
UPLOAD_ERRORS = {
    "not_a_video": "That file is not a video the service can read (or has no video stream).",
    "unsupported_codec": "The video's codec is not supported.",
    "video_unreadable": "The video could not be decoded (empty or damaged file).",
    "video_too_long": "The video is longer than this service accepts.",
    "video_too_large": "The video's frame size is larger than this service accepts.",
    "video_too_large_bytes": "The video file is larger than this service accepts.",
}
UPLOAD_FAILED = "The video could not be added."


def _video(db: Session, video_id: uuid.UUID) -> Video:
    video = db.get(Video, video_id)
    if video is None:
        raise HTTPException(404, "no such video")
    return video


def _original(ctx: UiContext, video: Video) -> Path | None:
    """The kept original on disk, or None (not kept, or deleted by the retention rule)."""
    if not video.file_key:
        return None
    root = Path(ctx.settings.video_dir).resolve()
    path = (root / video.file_key).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def _config(video: Video) -> dict[str, Any]:
    """The settings the analysis ran with (recorded in its summary at the end)."""
    return dict((video.analysis or {}).get("config") or {})


def _rate(ctx: UiContext, video: Video) -> float:
    """The analysis rate the frames were sampled at (recorded by the job; else the setting)."""
    return float(_config(video).get("rate") or ctx.settings.video_analysis_fps)


def _standard(ctx: UiContext, video: Video, procedure: Procedure) -> Standard | None:
    """The standard the picks were made for (recorded), else the kind's default."""
    standard_id = _config(video).get("standard")
    if standard_id and standard_id in ctx.standards:
        return ctx.standards[standard_id]
    return ctx.standards.default_for(procedure.kind)


def _timeline(
    ctx: UiContext, db: Session, video: Video, standard: Standard | None, picks: list[dict]
) -> video_timeline.Timeline | None:
    """One band per requirement of the standard the picks were made for, smoothed with the
    job's own function and settings, so the bands show what the picks came from."""
    from app.video import timeline  # numpy only

    frames = queries.video_frames(db, video.id)
    if not frames:
        return None
    requirements = list(standard.requirements) if standard else []
    labels = sorted({lab for req in requirements for lab in req.labels})
    scored = [
        timeline.FrameScore(f.index, f.t_ms, f.ok, f.quality, dict(_shares(f.labels)))
        for f in frames
    ]
    rate = _rate(ctx, video)
    window_s = float(_config(video).get("smooth_s") or ctx.settings.video_smooth_s)
    smoothed = timeline.smooth(scored, labels, window_s=window_s, rate=rate)
    rows = [
        (req.id, req.name, timeline.requirement_scores(smoothed, list(req.labels), len(frames))[0])
        for req in requirements
    ]
    fields = ("image_uid", "requirement", "label", "rank", "t_ms", "score", "review")
    marks = [video_timeline.PickMark(*(p[f] for f in fields)) for p in picks]
    return video_timeline.build(
        duration_ms=int(round(video.duration_s * 1000)),
        frames=[video_timeline.FrameRow(f.t_ms, f.ok, f.reason) for f in frames],
        requirements=rows,
        picks=marks,
        step_ms=int(round(1000 / rate)),
        threshold=float(_config(video).get("min_score", ctx.settings.video_min_pick_score)),
    )


def _shares(labels: Any) -> list[tuple[str, float]]:
    """[[label, share], ...] as stored; tolerant of a malformed row (shown as no vote)."""
    out = []
    for item in labels or []:
        if isinstance(item, list | tuple) and len(item) == 2:
            out.append((str(item[0]), float(item[1])))
    return out


def _config_missing(video: Video) -> list[str]:
    """Requirements the finished analysis found no still for."""
    return [str(r) for r in (video.analysis or {}).get("missing") or []]


def _reason_counts(db: Session, video: Video) -> list[tuple[str | None, int]]:
    counts = queries.video_reason_counts(db, video.id)
    ordered = [None, *REASONS, *sorted(k for k in counts if k not in REASONS and k)]
    return [(reason, counts[reason]) for reason in ordered if counts.get(reason)]


def _by_requirement(
    picks: list[dict[str, Any]], standard: Standard | None
) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(requirement id, name, its picks by rank), in the standard's order."""
    names = {req.id: req.name for req in standard.requirements} if standard else {}
    order = list(names)
    groups: dict[str, list[dict[str, Any]]] = {}
    for pick in sorted(picks, key=lambda p: (p["requirement"], p["rank"])):
        groups.setdefault(pick["requirement"], []).append(pick)
    keys = sorted(groups, key=lambda r: (order.index(r) if r in order else len(order), r))
    return [(r, names.get(r, r), groups[r]) for r in keys]


def _progress(db: Session, video: Video) -> dict[str, Any]:
    """Status and progress of the analysis from the read model the API answers with."""
    from app.video import read

    out = read.video_out(db, video)
    progress = out.get("progress") or {}
    return {
        "status": out["status"],
        "done": progress.get("done"),
        "total": progress.get("total"),
        "fraction": progress.get("fraction"),
        "eta_s": progress.get("eta_s"),
        "error": progress.get("error"),
        "summary": out.get("summary") or {},
    }


@router.get("/videos/{video_id}")
def video_page(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: PageUser,
    video_id: uuid.UUID,
    t: float | None = None,
) -> Response:
    """The video's facts, timeline, player and picks (scope search, like the API's GET)."""
    ensure_scope(user, "search")
    video = _video(db, video_id)
    procedure = db.get(Procedure, video.procedure_id)
    if procedure is None:
        raise HTTPException(404, "no such procedure")
    picks = queries.video_picks_of(db, video.id)
    progress = _progress(db, video)
    standard = _standard(ctx, video, procedure)
    names = {req.id: req.name for req in standard.requirements} if standard else {}
    kept = _original(ctx, video) is not None
    start = max(t, 0.0) if t is not None and math.isfinite(t) else None
    return render(
        request,
        "video.html",
        video=video,
        procedure=procedure,
        synthetic_proc=procedure.source == queries.DEMO_SOURCE,
        progress=progress,
        running=progress["status"] in RUNNING,
        timeline=_timeline(ctx, db, video, standard, picks),
        groups=_by_requirement(picks, standard),
        missing=[names.get(r, r) for r in _config_missing(video)],
        standard=standard,
        counts=_reason_counts(db, video),
        reason_text=REASON_TEXT,
        reasons=list(REASONS),
        kept=kept,
        start=start,
        nav="procedures",
    )


@router.get("/videos/{video_id}/status.json")
def video_status(db: Db, user: CurrentUser, video_id: uuid.UUID) -> Response:
    """Polled by the page every two seconds while the analysis runs."""
    ensure_scope(user, "search")
    progress = _progress(db, _video(db, video_id))
    progress.pop("summary", None)
    return JSONResponse(progress)


@router.get("/videos/{video_id}/file")
def video_file(
    request: Request, ctx: Ctx, db: Db, user: CurrentUser, video_id: uuid.UUID
) -> Response:
    """The kept original with Range support (the player seeks with range requests).
    Each playback start is audited, not every range request of it."""
    ensure_scope(user, "search")
    video = _video(db, video_id)
    path = _original(ctx, video)
    if path is None:
        raise HTTPException(404, "the original video is not kept")
    if request.headers.get("range", "bytes=0-").startswith("bytes=0-"):
        audit.record(db, user.key_id, "ui.video.view", str(video.id))
        db.commit()
    from app.video.store import media_type

    return FileResponse(
        path, media_type=media_type(path.name), headers={"Cache-Control": "private, max-age=300"}
    )


@router.post("/videos/{video_id}/picks/{uid}/review")
def review(
    ctx: Ctx,
    db: Db,
    user: CsrfUser,
    video_id: uuid.UUID,
    uid: uuid.UUID,
    decision: Annotated[str, Form(max_length=16)],
) -> Response:
    """Accept or reject a picked still (scope label): accepted stills document the checklist."""
    from app.video.review import review_pick

    ensure_scope(user, "label")
    if decision not in ("accept", "reject"):
        raise HTTPException(422, "decision must be accept or reject")
    try:
        review_pick(db, video_id, uid, decision, user.key_id)  # type: ignore[arg-type]
    except ProblemError as exc:
        raise HTTPException(exc.status, exc.detail) from exc
    db.commit()
    return RedirectResponse(f"{PREFIX}/videos/{video_id}#pick-{uid}", status_code=303)


@router.post("/procedures/{pid}/videos")
async def upload_video(
    ctx: Ctx,
    user: CsrfUser,
    pid: uuid.UUID,
    file: Annotated[UploadFile, File()],
) -> Response:
    """Add a procedure video (scope ingest): probed and queued for analysis, then its page."""
    from app.video import store

    ensure_scope(user, "ingest")
    rt = adapters.runtime(ctx)
    back = f"{PREFIX}/procedures/{pid}"
    try:
        path = await store.receive(rt, file)
        submitted = await run_in_threadpool(store.submit_video, rt, pid, path)
    except ProblemError as exc:
        if exc.status == 404:
            raise HTTPException(404, "no such procedure") from exc
        if exc.status >= 500:
            raise
        code = exc.code if exc.code in UPLOAD_ERRORS else "failed"
        return RedirectResponse(f"{back}?video_error={code}#videos", status_code=303)
    video = submitted.video
    with rt.sessions.begin() as db:
        audit.record(db, user.key_id, "ui.video.upload", str(video.id))
    return RedirectResponse(f"{PREFIX}/videos/{video.id}", status_code=303)


def procedure_context(
    db: Session, procedure: Procedure, images: list[Image], video_error: str = ""
) -> dict[str, Any]:
    """What procedure.html needs about videos: the procedure's videos with their status and
    progress, the picked stills among its images (by image id), an upload error to show."""
    rows = queries.videos_of_procedure(db, procedure.id)
    counts = queries.video_pick_counts(db, [video.id for video in rows])
    videos = [
        {"video": video, "progress": _progress(db, video), "picks": counts.get(video.id, {})}
        for video in rows
    ]
    return {
        "videos": videos,
        "video_picks": queries.video_picks_by_image(db, [img.id for img in images]),
        "video_error": UPLOAD_ERRORS.get(video_error, UPLOAD_FAILED) if video_error else "",
    }
