"""The live reference gallery: reference-labelled photos' vectors of the serving model.

Rebuilt lazily whenever the model or the set of reference labels changed (a cheap
fingerprint query per use), so labels set by the API, the UI, the CLI or another process
and a re-index flip all reach the next prediction without explicit notifications.
"""

from __future__ import annotations

import threading

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import Image, Label
from app.documentation.gallery import ReferenceGallery
from app.services import vectors
from indexer import FaissIndex

REFERENCE = "reference"


def reference_labels(session: Session) -> dict[int, str]:
    """Image id -> reference label of every live reference photo (the newest label wins)."""
    q = (
        sa.select(Label.image_id, Label.label)
        .join(Image, Image.id == Label.image_id)
        .where(Label.source == REFERENCE, Image.deleted_at.is_(None))
        .order_by(Label.id)
    )
    return {int(i): lab for i, lab in session.execute(q)}


def reference_vectors(
    session: Session, model_id: str, dim: int
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(ids, vectors, id -> label) of the reference photos that have a vector of `model_id`."""
    labels = reference_labels(session)
    ids, vecs = [np.zeros(0, np.int64)], [np.zeros((0, dim), np.float32)]
    for chunk_ids, chunk in vectors.vectors_for(session, model_id, dim, np.array(sorted(labels))):
        ids.append(chunk_ids)
        vecs.append(chunk)
    return np.concatenate(ids), np.concatenate(vecs), labels


# asked on every upload (the ingest hook): built once; an index range over (source, id)
_FINGERPRINT = sa.select(sa.func.count(Label.id), sa.func.coalesce(sa.func.max(Label.id), 0)).where(
    Label.source == REFERENCE
)


def fingerprint(session: Session) -> tuple[int, int]:
    """(count, newest id) of reference labels: changes whenever one is set or removed."""
    row = session.execute(_FINGERPRINT).one()
    return int(row[0]), int(row[1])


class LiveGallery:
    """One ReferenceGallery (a FaissIndex) per (model, reference set); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, tuple[int, int]] | None = None
        self._gallery: ReferenceGallery | None = None

    def get(self, session: Session, model_id: str, dim: int) -> ReferenceGallery | None:
        """The gallery for `model_id` (None while it has no reference photo)."""
        key = (model_id, fingerprint(session))
        with self._lock:
            if key != self._key:
                self._gallery = build_gallery(session, model_id, dim)
                self._key = key
            return self._gallery


def build_gallery(session: Session, model_id: str, dim: int) -> ReferenceGallery | None:
    """A FaissIndex over the reference vectors of `model_id`, or None when there are none."""
    ids, vecs, labels = reference_vectors(session, model_id, dim)
    if not len(ids):
        return None
    index = FaissIndex(dim, device="cpu")  # small: exact search on the CPU
    index.add(ids, vecs)
    return ReferenceGallery(index, {int(i): labels[int(i)] for i in ids})
