"""Models a new photo must also be embedded with while a re-index is on its way.

While a re-index builds model B, the server still embeds uploads with its serving model A.
Photos ingested meanwhile must get a B vector too, or B's index would miss them after the
flip. `pending_models` names those extra models: the target of every live re-index job, and
the DB's active model if another process flipped it and this server has not switched yet.
`PendingEmbedders` loads each such bundle once and embeds raw uploads for them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.models import Job, Model
from app.services import jobs
from embedder import Embedder, decode_image

# asked on every upload: built once
_ACTIVE_REINDEX_JOBS = sa.select(Job).where(Job.kind == "reindex", Job.status.in_(jobs.ACTIVE))
_ACTIVE_MODEL = sa.select(Model.id).where(Model.active.is_(True))


def pending_models(session: Session, serving_model_id: str) -> list[Model]:
    """Models other than `serving_model_id` that new photos need vectors for, by id."""
    running = session.scalars(_ACTIVE_REINDEX_JOBS)
    wanted = {j.model_id for j in running if j.model_id and jobs.live(j)}
    active = session.scalar(_ACTIVE_MODEL)
    if active is not None:
        wanted.add(active)
    wanted.discard(serving_model_id)
    if not wanted:
        return []
    return list(session.scalars(sa.select(Model).where(Model.id.in_(wanted)).order_by(Model.id)))


class PendingEmbedders:
    """Embedders of pending models, loaded once from each model's bundle path; thread-safe."""

    def __init__(self, device: str | None = None, max_pixels: int = 40_000_000) -> None:
        self.device = device
        self.max_pixels = max_pixels
        self._cache: dict[str, Embedder] = {}
        self._lock = threading.Lock()

    def get(self, model: Model) -> Embedder:
        """The embedder of `model` (loads its bundle on first use)."""
        with self._lock:
            emb = self._cache.get(model.id)
            if emb is None:
                if not model.bundle_path:
                    raise FileNotFoundError(f"model {model.id[:12]} has no bundle path")
                emb = Embedder.from_bundle(model.bundle_path, device=self.device)
                if emb.bundle_id != model.id:
                    raise ValueError(f"bundle at {model.bundle_path} is not model {model.id[:12]}")
                self._cache[model.id] = emb
            return emb

    def retain(self, model_ids: Sequence[str]) -> None:
        """Forget embedders no longer pending (frees their memory)."""
        with self._lock:
            for mid in set(self._cache) - set(model_ids):
                del self._cache[mid]

    def embed(
        self, session: Session, serving_model_id: str, data: Sequence[bytes]
    ) -> dict[str, np.ndarray]:
        """model id -> (len(data), dim) vectors of the raw uploads for every pending model.

        The ingest service calls this next to its own embed and stores one Embedding row
        per (image, model) in the same transaction as the image.
        """
        models = pending_models(session, serving_model_id)
        self.retain([m.id for m in models])
        if not models or not data:
            return {}
        images = [decode_image(d, max_pixels=self.max_pixels) for d in data]
        return {m.id: self.get(m).embed(images) for m in models}
