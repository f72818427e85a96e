"""Stored images: lookup by public uid, file and thumbnail paths, delete."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import DicomFrame, Embedding, Image, Label
from app.db.session import session_scope
from app.db.types import utcnow
from app.services import audit
from app.services.errors import ProblemError
from app.services.runtime import Runtime


def get_live(session: Session, uid: uuid.UUID) -> Image:
    """A live image by public uid, or a 404 problem."""
    img = session.scalar(sa.select(Image).where(Image.uid == uid, Image.deleted_at.is_(None)))
    if img is None:
        raise ProblemError(404, "image_not_found", "No image with this id.")
    return img


def labels_of(session: Session, image_ids: list[int]) -> dict[int, list[Label]]:
    """Labels per image id (for result listings)."""
    out: dict[int, list[Label]] = {i: [] for i in image_ids}
    if image_ids:
        for lab in session.scalars(sa.select(Label).where(Label.image_id.in_(image_ids))):
            out[lab.image_id].append(lab)
    return out


def dicom_of(session: Session, image_ids: list[int]) -> dict[int, DicomFrame]:
    """The DICOM provenance (first frame row) per image id, for images that came as DICOM."""
    out: dict[int, DicomFrame] = {}
    if image_ids:
        stmt = (
            sa.select(DicomFrame)
            .where(DicomFrame.image_id.in_(image_ids))
            .order_by(DicomFrame.id.desc())
        )
        for row in session.scalars(stmt):
            out[row.image_id] = row  # the oldest row wins (descending order)
    return out


def file_path(rt: Runtime, img: Image) -> Path:
    """Path of the original file (404 problem if it went missing)."""
    path = rt.storage.path(img.storage_key)
    if not path.exists():
        raise ProblemError(404, "file_missing", "The image file is not available.")
    return path


def thumbnail_path(rt: Runtime, img: Image, size: int | None) -> Path:
    """Path of a cached thumbnail, made on first request."""
    file_path(rt, img)
    return rt.storage.thumbnail(img.storage_key, size)


def delete(rt: Runtime, uid: uuid.UUID, key_id: uuid.UUID | None) -> None:
    """Soft-delete the image, drop its vectors and labels, remove it from the index and,
    when no other live image uses the same bytes, delete the file."""
    assert rt.index is not None
    with rt.sessions() as session:
        sha = get_live(session, uid).sha256
    with rt.sha_locks.hold([sha]):
        with session_scope(rt.sessions) as session:
            img = get_live(session, uid)
            img.deleted_at = utcnow()
            image_id, key = img.id, img.storage_key
            session.execute(sa.delete(Embedding).where(Embedding.image_id == image_id))
            session.execute(sa.delete(Label).where(Label.image_id == image_id))
            audit.record(session, key_id, "image.delete", str(uid))
        rt.index.remove(np.array([image_id], dtype=np.int64))
        with rt.sessions() as session:
            still_used = session.scalar(
                sa.select(sa.func.count())
                .select_from(Image)
                .where(Image.storage_key == key, Image.deleted_at.is_(None))
            )
        if not still_used:
            with contextlib.suppress(OSError):
                rt.storage.delete(key)
