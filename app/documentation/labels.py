"""Human labels of a photo (the one implementation behind the API, the UI and the CLI).

A photo carries at most one human label: `manual` (what QA staff say it shows) or
`reference` (the same, and the photo joins the reference gallery). Setting one replaces the
previous human label; predictions stay (reports rank human labels first anyway). The live
gallery notices the change on its next use (see references.LiveGallery). Labels come from
the vocabulary only (vocabulary.py: the standards' landmarks and the general labels).
"""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import Image, Label
from app.documentation.thresholds import UNRECOGNISED
from app.documentation.vocabulary import Vocabulary, shipped_vocabulary
from app.services import audit

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
HUMAN_SOURCES = ("manual", "reference")


class LabelError(ValueError):
    """A label the standards could never accept; the message is safe to show. `vocabulary`
    lists the labels that would be accepted (empty when the form itself was wrong)."""

    def __init__(self, message: str, vocabulary: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.vocabulary = vocabulary


def check_label(label: str, vocabulary: Vocabulary | None = None) -> str:
    """A label of the vocabulary (default: the shipped standards' and general labels):
    lower-case words joined by hyphens as in the standard files, never 'unrecognised'."""
    if not SLUG.match(label) or len(label) > 64:
        raise LabelError("a label is lower-case words joined by hyphens, e.g. z-line")
    if label == UNRECOGNISED:
        raise LabelError(f"'{UNRECOGNISED}' is what a prediction says, not a label")
    vocabulary = vocabulary or shipped_vocabulary()
    if label not in vocabulary:
        raise LabelError(
            f"'{label}' is not in the label vocabulary (the standards' landmarks and the "
            f"general labels): {', '.join(vocabulary.labels)}",
            vocabulary.labels,
        )
    return label


def set_label(
    session: Session, image: Image, label: str, *, reference: bool, key_id: uuid.UUID | None
) -> Label:
    """Replace the photo's human label; `reference` also makes it a reference photo."""
    check_label(label)
    _drop_human(session, image)
    row = Label(
        image_id=image.id,
        label=label,
        source="reference" if reference else "manual",
        created_by=key_id,
    )
    session.add(row)
    audit.record(
        session, key_id, "image.label.set", str(image.uid), {"label": label, "reference": reference}
    )
    return row


def clear_label(session: Session, image: Image, *, key_id: uuid.UUID | None) -> int:
    """Remove the photo's human label (and its place in the gallery); returns rows removed."""
    removed = _drop_human(session, image)
    audit.record(session, key_id, "image.label.clear", str(image.uid), {"removed": removed})
    return removed


def _drop_human(session: Session, image: Image) -> int:
    result = session.execute(
        sa.delete(Label).where(Label.image_id == image.id, Label.source.in_(HUMAN_SOURCES))
    )
    return int(result.rowcount or 0)
