"""What the reference-gallery pages show: landmark rows, suggestions, uncertain photos.

One place assembles them from the running service's documentation (standards, live
gallery, thresholds), so the UI routes only render.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import Image, Label
from app.documentation.reference_stats import LandmarkRow, landmark_rows, overview_labels, stale
from app.documentation.references import REFERENCE
from app.documentation.service import Documentation
from app.documentation.suggest import (
    Suggestion,
    Uncertain,
    landmarks_of,
    merged,
    novel,
    rank,
    uncertain_of,
    unreferenced_of,
    votes,
)
from app.documentation.thresholds import Calibration, ThresholdPolicy

REFERENCES_SHOWN = 48
UNCERTAIN_SHOWN = 20


@dataclass(frozen=True)
class Overview:
    """The gallery page: every listed landmark, the calibration and the top suggestions."""

    rows: list[LandmarkRow]
    policy: ThresholdPolicy
    stale: str | None
    suggestions: list[Suggestion]
    total_references: int

    @property
    def calibration(self) -> Calibration | None:
        return self.policy if isinstance(self.policy, Calibration) else None


@dataclass(frozen=True)
class Landmark:
    """One landmark's page: its row, some of its references, why photos stayed uncertain."""

    row: LandmarkRow
    policy: ThresholdPolicy
    references: list[Image]
    uncertain: list[Uncertain]
    reasons: Counter[str] = field(default_factory=Counter)
    suggestions: list[Suggestion] = field(default_factory=list)

    @property
    def calibration(self) -> Calibration | None:
        return self.policy if isinstance(self.policy, Calibration) else None


def _counts(docs: Documentation, session: Session) -> dict[str, int]:
    model_id, dim = docs.model
    gallery = docs.gallery.get(session, model_id, dim)
    return dict(gallery.counts) if gallery is not None else {}


def overview(docs: Documentation, session: Session, top: int = 10) -> Overview:
    counts = _counts(docs, session)
    policy = docs.policy(docs.model[0])
    labels = overview_labels(docs.standards, counts, policy)
    rows = landmark_rows(labels, docs.standards, counts, policy)
    voted = votes(docs, session)
    unlike = novel(voted, unreferenced_of(docs.standards, counts))
    suggested = merged(unlike, rank(voted, policy, landmarks_of(docs)), top)
    return Overview(rows, policy, stale(policy, counts), suggested, sum(counts.values()))


def reference_images(session: Session, label: str, limit: int = REFERENCES_SHOWN) -> list[Image]:
    """The newest live reference photos of `label`."""
    q = (
        sa.select(Image)
        .join(Label, Label.image_id == Image.id)
        .where(Label.source == REFERENCE, Label.label == label, Image.deleted_at.is_(None))
        .order_by(Image.id.desc())
        .limit(limit)
    )
    return list(session.scalars(q))


def landmark(docs: Documentation, session: Session, label: str, top: int = 10) -> Landmark:
    counts = _counts(docs, session)
    policy = docs.policy(docs.model[0])
    (row,) = landmark_rows([label], docs.standards, counts, policy)
    voted = votes(docs, session)
    uncertain = uncertain_of(docs, session, label, voted)
    reasons = Counter(u.reason.code for u in uncertain)
    gaps = {
        kind: names
        for kind, names in unreferenced_of(docs.standards, counts).items()
        if label in names and row.status == "no_references"
    }
    unlike = novel(voted, {kind: [label] for kind in gaps}, top)
    return Landmark(
        row,
        policy,
        reference_images(session, label),
        uncertain[:UNCERTAIN_SHOWN],
        reasons,
        merged(unlike, rank(voted, policy, landmarks_of(docs), label), top),
    )
