"""Read-side queries of the UI: procedures with their documentation reports, images, jobs.

Reports come from app.documentation.documentation_report; this module only turns DB rows
into its inputs (ProcedureImage / ImageLabel) and picks the active model's threshold policy.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from app.db.models import Image, Job, Label, Model, Procedure, Video, VideoFrame, VideoImage
from app.documentation import (
    DocumentationReport,
    ProcedureImage,
    Standard,
    ThresholdPolicy,
    Uncalibrated,
    documentation_report,
    load_calibration,
)
from app.services import model_registry
from app.ui.context import UiContext
from app.video.read import pick_out, picks_of

DEMO_SOURCE = "synthetic-demo"
LIST_LIMIT = 200


@dataclass(frozen=True)
class ProcedureRow:
    """One line of the procedures list."""

    procedure: Procedure
    images: int
    standard: Standard | None
    report: DocumentationReport | None

    @property
    def synthetic(self) -> bool:
        return self.procedure.source == DEMO_SOURCE


def policy(ctx: UiContext, db: Session) -> ThresholdPolicy:
    """The active model's calibration, or Uncalibrated (predictions at best 'uncertain')."""
    model = model_registry.active(db)
    model_id = model.id if model else None
    if model_id and ctx.calibration_path.exists():
        calibration = load_calibration(ctx.calibration_path, model_id)
        if calibration is not None:
            return calibration
    return Uncalibrated(model_id)


def live_images(db: Session, procedure_id: uuid.UUID) -> list[Image]:
    """The procedure's live images with labels, oldest first (the report's tie order)."""
    q = (
        sa.select(Image)
        .where(Image.procedure_id == procedure_id, Image.deleted_at.is_(None))
        .options(selectinload(Image.labels))
        .order_by(Image.id)
    )
    return list(db.scalars(q))


def as_report_input(db: Session, images: list[Image]) -> list[ProcedureImage]:
    """DB rows -> the report's inputs; the image uid is the id the page shows. A still picked
    from a video carries its picks (it counts only once accepted)."""
    from app.documentation.procedure_report import report_inputs, video_picks

    picks = video_picks(db, [img.id for img in images])
    return report_inputs(images, picks, key=lambda img: str(img.uid))


def report_for(
    ctx: UiContext, db: Session, procedure: Procedure, images: list[Image], standard_id: str = ""
) -> tuple[Standard | None, DocumentationReport | None]:
    """The chosen (or default) standard of the procedure's kind and its report."""
    options = ctx.standards.for_kind(procedure.kind)
    standard = next((s for s in options if s.id == standard_id), None)
    standard = standard or ctx.standards.default_for(procedure.kind)
    if standard is None:
        return None, None
    rt = getattr(ctx.state, "runtime", None)
    if rt is not None and rt.index is not None:  # the running service: follow its model
        from app.documentation.procedure_report import ensure_predictions
        from app.documentation.service import documentation_of

        ensure_predictions(documentation_of(rt), db, images)
    return standard, documentation_report(standard, as_report_input(db, images), policy(ctx, db))


def list_procedures(
    ctx: UiContext,
    db: Session,
    *,
    kind: str = "",
    date_from: datetime | None = None,
    date_to: datetime | None = None,
    completeness: str = "",
) -> list[ProcedureRow]:
    """Newest procedures first, filtered; completeness is judged by each kind's default standard."""
    q = sa.select(Procedure).order_by(
        sa.func.coalesce(Procedure.performed_at, Procedure.created_at).desc()
    )
    if kind:
        q = q.where(Procedure.kind == kind)
    when = sa.func.coalesce(Procedure.performed_at, Procedure.created_at)
    if date_from:
        q = q.where(when >= date_from)
    if date_to:
        q = q.where(when < date_to)
    rows = []
    for proc in db.scalars(q.limit(LIST_LIMIT)):
        images = live_images(db, proc.id)
        standard, report = report_for(ctx, db, proc, images)
        row = ProcedureRow(proc, len(images), standard, report)
        if completeness == "complete" and not (report and report.complete):
            continue
        if completeness == "incomplete" and (report is None or report.complete):
            continue
        rows.append(row)
    return rows


def image_by_uid(db: Session, uid: uuid.UUID) -> Image | None:
    """A live image by its public id."""
    return db.scalar(sa.select(Image).where(Image.uid == uid, Image.deleted_at.is_(None)))


def has_synthetic(db: Session) -> bool:
    """True when the archive holds demo data: every page then shows the synthetic banner."""
    return db.scalar(sa.select(sa.exists().where(Procedure.source == DEMO_SOURCE))) or False


def reference_labels(db: Session) -> list[str]:
    """Labels already used as references (offered first in the label form)."""
    q = sa.select(Label.label).where(Label.source == "reference").distinct().order_by(Label.label)
    return list(db.scalars(q))


def models(db: Session) -> list[Model]:
    return model_registry.list_models(db)


def jobs(db: Session, limit: int = 50) -> list[Job]:
    """Newest jobs first."""
    return list(db.scalars(sa.select(Job).order_by(Job.created_at.desc()).limit(limit)))


def job_json(job: Job) -> dict:
    """What the jobs page polls: counts and status (no params: they may hold paths)."""
    total = job.total or 0
    return {
        "id": str(job.id),
        "kind": job.kind,
        "status": job.status,
        "total": total,
        "done": job.done,
        "failed": job.failed,
        "progress": (job.done + job.failed) / total if total else None,
        "error": job.error,
        "updated_at": job.updated_at.isoformat() if job.updated_at else None,
    }


@dataclass(frozen=True)
class FrameView:
    """A row of a video's per-frame table as the timeline reads it (no vector, no features)."""

    index: int
    t_ms: int
    ok: bool
    reason: str | None
    quality: float
    labels: list


def videos_of_procedure(db: Session, procedure_id: uuid.UUID) -> list[Video]:
    """The procedure's videos, oldest first."""
    q = sa.select(Video).where(Video.procedure_id == procedure_id).order_by(Video.created_at)
    return list(db.scalars(q))


def video_frames(db: Session, video_id: uuid.UUID) -> list[FrameView]:
    """The analysed frames of a video in time order (only the columns the page draws)."""
    cols = (
        VideoFrame.index,
        VideoFrame.t_ms,
        VideoFrame.ok,
        VideoFrame.reason,
        VideoFrame.quality,
        VideoFrame.labels,
    )
    q = sa.select(*cols).where(VideoFrame.video_id == video_id).order_by(VideoFrame.index)
    return [FrameView(*row) for row in db.execute(q)]


def video_reason_counts(db: Session, video_id: uuid.UUID) -> dict[str | None, int]:
    """Analysed frames per verdict: None = kept, else the gate's reject reason."""
    reason = sa.case((VideoFrame.ok, sa.null()), else_=VideoFrame.reason)
    q = sa.select(reason, sa.func.count()).where(VideoFrame.video_id == video_id).group_by(reason)
    return {row[0]: int(row[1]) for row in db.execute(q)}


def _pick_dict(pick: VideoImage, uid: uuid.UUID) -> dict:
    """app.video.read's pick, named by the uid string the pages use in their links."""
    return _with_uid(pick_out(pick, uid))


def _with_uid(pick: dict) -> dict:
    return {**pick, "image_uid": str(pick["image_id"])}


def video_picks_of(db: Session, video_id: uuid.UUID) -> list[dict]:
    """A video's picked stills whose image is live, by requirement and rank."""
    return [_with_uid(pick) for pick in picks_of(db, video_id)]


def video_picks_by_image(db: Session, image_ids: list[int]) -> dict[str, list[dict]]:
    """Picked stills among these images, by image uid (the id the pages show): the page marks
    them as video stills with their time and review state (a still can be picked for more
    than one requirement)."""
    if not image_ids:
        return {}
    q = (
        sa.select(VideoImage, Image.uid)
        .join(Image, Image.id == VideoImage.image_id)
        .where(VideoImage.image_id.in_(image_ids))
        .order_by(VideoImage.id)
    )
    out: dict[str, list[dict]] = {}
    for pick, uid in db.execute(q):
        out.setdefault(str(uid), []).append(_pick_dict(pick, uid))
    return out


def video_pick_counts(db: Session, video_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """Picked stills per video and review state, e.g. {"needs_review": 4, "accepted": 2}."""
    if not video_ids:
        return {}
    q = (
        sa.select(VideoImage.video_id, VideoImage.review, sa.func.count())
        .where(VideoImage.video_id.in_(video_ids))
        .group_by(VideoImage.video_id, VideoImage.review)
    )
    out: dict[uuid.UUID, dict[str, int]] = {vid: {} for vid in video_ids}
    for video_id, review, n in db.execute(q):
        out[video_id][review] = int(n)
    return out
