"""Switching a running server to a new active model, and noticing work done by other processes.

A re-index run by the CLI flips the active model in the DB; the server sees it on its next
check (`ModelWatcher`, every few seconds), loads the new bundle and its index (the snapshot
the job wrote, reconciled with the DB), and swaps both in. Until then searches answer from
the old index; the old one is dropped only after the swap. The same check adds vectors that
other processes committed (CLI import, late ingest) and removes deleted ids. Every worker of
`serve --workers N` runs its own watcher, so a flip reaches each of them within one interval;
with Milvus the switch also points the `<prefix>_current` alias at the new collection.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Embedding, Image
from app.services import faults, model_registry, vectors
from app.services.batching import MicroBatcher
from app.services.index_service import IndexService
from app.services.runtime import Runtime
from embedder import Embedder
from indexer.vector_index import VectorIndex

log = logging.getLogger(__name__)


def switch_runtime(rt: Runtime, emb: Embedder, index: VectorIndex) -> None:
    """Serve `emb` and its `index` from now on; the old batcher drains, the old index goes."""
    assert rt.index is not None
    s = rt.settings
    batcher = MicroBatcher(
        emb.embed_tensors,
        max_batch=s.batch_max_size,
        max_wait_ms=s.batch_max_wait_ms,
        on_batch=rt.metrics.on_batch,
    )
    old = rt.batcher
    rt.embedder, rt.batcher = emb, batcher
    rt.index.swap(emb.bundle_id, index)
    rt.index.activate()  # Milvus: the alias follows the DB's active model (idempotent)
    if old is not None:
        old.close()
    catch_up(rt.index, rt.sessions)  # vectors committed after the new index was built
    log.info("now serving model %s (%d vectors)", emb.bundle_id[:12], len(index))


def _live_count(session: Session, model_id: str) -> int:
    q = (
        sa.select(sa.func.count())
        .select_from(Embedding)
        .join(Image, Image.id == Embedding.image_id)
        .where(Embedding.model_id == model_id, Image.deleted_at.is_(None))
    )
    return int(session.scalar(q) or 0)


def catch_up(index: IndexService, sessions: sessionmaker[Session]) -> tuple[int, int]:
    """Make the live index hold exactly the DB's live vectors of its model; (added, removed).

    Cheap when nothing changed (one COUNT). The index ids are read before the DB ids, so an
    id the server adds meanwhile (after its commit) is never mistaken for a deleted one.
    """
    model_id, dim = index.model_id, index.dim
    with sessions() as session:
        if _live_count(session, model_id) == len(index):
            return 0, 0
        have = index.index.ids()
        db_ids = vectors.live_ids(session, model_id)
        missing = np.setdiff1d(db_ids, have, assume_unique=True)
        extra = np.setdiff1d(have, db_ids, assume_unique=True)
        for ids, vecs in vectors.vectors_for(session, model_id, dim, missing):
            index.add(ids, vecs, model_id=model_id)
    if len(extra):
        index.remove(extra)
    return len(missing), len(extra)


class ModelWatcher:
    """Checks the DB's active model every `interval_s`; switches the runtime when it changed."""

    def __init__(self, rt: Runtime, interval_s: float = 5.0) -> None:
        self.rt = rt
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def check(self) -> str:
        """One check; returns "switched", "caught-up" or "unchanged"."""
        rt = self.rt
        assert rt.index is not None
        with self._lock:
            with rt.sessions() as session:
                row = model_registry.active(session)
            if row is not None and row.id != rt.index.model_id and row.bundle_path:
                emb = Embedder.from_bundle(row.bundle_path, device=_device(rt))
                beside = IndexService.for_model(rt.sessions, rt.settings, row.id, emb.dim)
                beside.start()
                switch_runtime(rt, emb, beside.index)
                return "switched"
            added, removed = catch_up(rt.index, rt.sessions)
            return "caught-up" if added or removed else "unchanged"

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                try:
                    self.check()
                except Exception as exc:  # noqa: BLE001 - keep serving the current model
                    if faults.is_db_unavailable(exc):  # an outage: one line, next tick retries
                        log.warning("active-model check skipped: %s", type(exc).__name__)
                    else:
                        log.exception("active-model check failed")

        self._thread = threading.Thread(target=loop, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _device(rt: Runtime) -> str | None:
    return "cpu" if rt.settings.index_device == "cpu" else None
