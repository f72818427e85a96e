"""Read models of videos for the API and the UI: status with the job's progress, picks, frames.

WHY the status is derived: the analysis job is the one writer of Video.status, but a job can
end without it (cancelled before it ran, failed on an exception, a process killed); the job
row is then the truth, so readers combine both instead of trusting a stale "queued".
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import Image, Job, Video, VideoFrame, VideoImage
from app.services import jobs

ACTIVE = ("queued", "analysing")
FRAMES_MAX = 1000  # rows per page of the per-frame table


def video_url(video_id: uuid.UUID) -> str:
    return f"/v1/videos/{video_id}"


def status_of(video: Video, job: Job | None) -> str:
    """queued | analysing | done | failed | cancelled, from the row and its job."""
    if video.status not in ACTIVE or job is None:
        return video.status
    if job.status == "cancelled":
        return "cancelled"
    if job.status == "failed":
        return "failed"
    if job.status == "running":
        return "analysing"
    if job.status == "completed":
        return "done"
    return video.status


def progress_of(job: Job | None) -> dict[str, Any] | None:
    """Frames analysed of the expected total, rate (frames/s) and ETA, from the job."""
    if job is None:
        return None
    d = jobs.describe(job)
    total = int(d["total"])
    return {
        "job_id": job.id,
        "job_status": job.status,
        "done": int(d["done"]),
        "total": total,
        "fraction": min(1.0, d["done"] / total) if total else None,
        "rate": d["rate"],
        "eta_s": d["eta_s"],
        "error": d["error"],
    }


def picks_of(session: Session, video_id: uuid.UUID) -> list[dict[str, Any]]:
    """The stills picked from the video (live images only), by requirement and rank."""
    rows = session.execute(
        sa.select(VideoImage, Image.uid)
        .join(Image, Image.id == VideoImage.image_id)
        .where(VideoImage.video_id == video_id, Image.deleted_at.is_(None))
        .order_by(VideoImage.requirement, VideoImage.rank)
    )
    return [pick_out(row, uid) for row, uid in rows]


def pick_out(row: VideoImage, image_uid: uuid.UUID) -> dict[str, Any]:
    return {
        "image_id": image_uid,
        "video_id": row.video_id,
        "requirement": row.requirement,
        "label": row.label,
        "t_ms": row.t_ms,
        "score": row.score,
        "quality": row.quality,
        "rank": row.rank,
        "review": row.review,
        "reviewed_at": row.reviewed_at,
        "image_url": f"/v1/images/{image_uid}",
        "file_url": f"/v1/images/{image_uid}/file",
        "thumbnail_url": f"/v1/images/{image_uid}/thumbnail",
    }


def video_out(session: Session, video: Video) -> dict[str, Any]:
    """Everything a client shows about one video (no file name: there is none to show)."""
    job = session.get(Job, video.job_id) if video.job_id is not None else None
    return {
        "id": video.id,
        "procedure_id": video.procedure_id,
        "status": status_of(video, job),
        "source": video.source,
        "sha256": video.sha256,
        "container": video.container,
        "codec": video.codec,
        "width": video.width,
        "height": video.height,
        "fps": video.fps,
        "duration_s": video.duration_s,
        "rotation": video.rotation,
        "bytes": video.bytes,
        "model_id": video.model_id,
        "kept": video.file_key is not None,
        "retain_until": video.retain_until,
        "created_at": video.created_at,
        "finished_at": video.finished_at,
        "url": video_url(video.id),
        "file_url": f"{video_url(video.id)}/file" if video.file_key is not None else None,
        "progress": progress_of(job),
        "summary": dict(video.analysis or {}),
        "picks": picks_of(session, video.id),
    }


def get_video(session: Session, video_id: uuid.UUID) -> Video | None:
    return session.get(Video, video_id)


def videos_of(session: Session, procedure_id: uuid.UUID) -> list[dict[str, Any]]:
    """The procedure's videos, oldest first, as read models."""
    rows = session.scalars(
        sa.select(Video)
        .where(Video.procedure_id == procedure_id)
        .order_by(Video.created_at, Video.id)
    )
    return [video_out(session, v) for v in rows]


def frame_out(row: VideoFrame) -> dict[str, Any]:
    return {
        "index": row.index,
        "t_ms": row.t_ms,
        "ok": row.ok,
        "reason": row.reason,
        "quality": row.quality,
        "features": dict(row.features or {}),
        "labels": [{"label": str(lab), "score": float(share)} for lab, share in row.labels or []],
    }


def frame_rows(
    session: Session, video_id: uuid.UUID, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """One page of the per-frame table in time order: frames with index > `after`."""
    q = sa.select(VideoFrame).where(VideoFrame.video_id == video_id)
    if after is not None:
        q = q.where(VideoFrame.index > after)
    q = q.order_by(VideoFrame.index).limit(max(1, min(limit, FRAMES_MAX)))
    return [frame_out(r) for r in session.scalars(q)]


def video_of(session: Session, image_ids: Sequence[int]) -> dict[int, VideoImage]:
    """Image id -> its pick (the best-ranked one) for images that are stills from a video."""
    out: dict[int, VideoImage] = {}
    if image_ids:
        rows = session.scalars(
            sa.select(VideoImage)
            .where(VideoImage.image_id.in_(list(image_ids)))
            .order_by(VideoImage.rank.desc(), VideoImage.id.desc())
        )
        for row in rows:
            out[row.image_id] = row  # the best rank (then the oldest row) wins
    return out
