"""QA review of a still picked from a video: accepted, it documents its label in the checklist.

A still may have been picked for several requirements (one frame can be the best for two),
so a decision applies to every pick of that image in that video. The caller commits.
"""

from __future__ import annotations

import uuid
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import Image, VideoImage
from app.db.types import utcnow
from app.services import audit
from app.services.errors import ProblemError

Decision = Literal["accept", "reject"]
REVIEW = {"accept": "accepted", "reject": "rejected"}


def review_pick(
    session: Session,
    video_id: uuid.UUID,
    image_uid: uuid.UUID,
    decision: Decision,
    key_id: uuid.UUID | None,
) -> VideoImage:
    """Record the decision on the image's picks in the video (404 `pick_not_found`); returns
    the best-ranked pick. Audited as "video.review"."""
    if decision not in REVIEW:
        raise ProblemError(422, "invalid_decision", "The decision is 'accept' or 'reject'.")
    rows = list(
        session.scalars(
            sa.select(VideoImage)
            .join(Image, Image.id == VideoImage.image_id)
            .where(
                VideoImage.video_id == video_id,
                Image.uid == image_uid,
                Image.deleted_at.is_(None),
            )
            .order_by(VideoImage.rank, VideoImage.id)
        )
    )
    if not rows:
        raise ProblemError(
            404, "pick_not_found", "No still with this id was picked from the video."
        )
    now = utcnow()
    for row in rows:
        row.review = REVIEW[decision]
        row.reviewed_by = key_id
        row.reviewed_at = now
    audit.record(
        session,
        key_id,
        "video.review",
        str(image_uid),
        {"video_id": str(video_id), "decision": REVIEW[decision]},
    )
    session.flush()
    return rows[0]
