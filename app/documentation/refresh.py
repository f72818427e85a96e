"""Re-vote stored predictions against today's reference gallery.

A photo's prediction is stored once, at ingest, against the gallery of that moment; after QA
staff labelled new references, older photos keep their old votes. Re-calibrating from the UI
also re-votes them (within their procedure's reach, as at ingest), so the checklists follow
the new references at once. On a large archive this would hold a request too long: above
`limit` stored predictions nothing is re-voted and the caller says so.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import Image, Label, Procedure
from app.documentation.service import Documentation
from app.services import vectors

LIMIT = 20_000  # about ten seconds on two cores with the baseline model


def _predicted(model_id: str) -> sa.Select:
    return (
        sa.select(Label, Procedure.kind)
        .join(Image, Image.id == Label.image_id)
        .join(Procedure, Procedure.id == Image.procedure_id)
        .where(Label.source == "predicted", Label.model_id == model_id, Image.deleted_at.is_(None))
    )


def refresh_predictions(docs: Documentation, session: Session, limit: int = LIMIT) -> int | None:
    """Re-vote the serving model's stored predictions; returns how many changed, or None
    when there are more than `limit` (left as they are)."""
    model_id, dim = docs.model
    predictor = docs.predictor(session, model_id, dim)
    if predictor is None:
        return 0
    count = session.scalar(sa.select(sa.func.count()).select_from(_predicted(model_id).subquery()))
    if (count or 0) > limit:
        return None
    by_kind: dict[str, dict[int, Label]] = {}
    for row, kind in session.execute(_predicted(model_id)):
        by_kind.setdefault(kind, {})[row.image_id] = row
    changed = 0
    for kind, rows in by_kind.items():
        reach = docs.reach(kind)
        ids = np.array(sorted(rows), dtype=np.int64)
        for chunk_ids, vecs in vectors.vectors_for(session, model_id, dim, ids):
            for image_id, vote in zip(
                chunk_ids.tolist(), predictor.predict(vecs, reach), strict=True
            ):
                row = rows[int(image_id)]
                if vote.label is None:
                    session.delete(row)
                    changed += 1
                elif (row.label, row.score) != (vote.label, vote.score):
                    row.label, row.score = vote.label, vote.score
                    changed += 1
    session.commit()
    return changed
