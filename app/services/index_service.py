"""The one owner of the live FaissIndex: load, catch up from the DB, snapshot, swap.

The database is the source of truth; the index is a cache of the active model's vectors. At
start the newest snapshot is loaded and reconciled with the embeddings table (rows added
after the watermark, or committed late, are added; ids deleted since are removed). Without a
snapshot the index is rebuilt from the table.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.services import faults, vectors
from app.settings import Settings
from indexer import FaissIndex, load_snapshot, save_snapshot

log = logging.getLogger(__name__)


class IndexService:
    """Holds the index of one model; thread-safe; `swap` replaces it atomically."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        index_dir: Path,
        *,
        model_id: str,
        dim: int,
        hnsw_threshold: int = 100_000,
        device: str = "auto",
        search_threads: int | None = None,
    ) -> None:
        self._sessions = session_factory
        self.index_dir = Path(index_dir)
        self.model_id = model_id
        self.dim = dim
        self._index_kw = {
            "hnsw_threshold": hnsw_threshold,
            "device": device,
            "search_threads": search_threads,
        }
        self._index: FaissIndex | None = None
        self._swap_lock = threading.RLock()
        self._dirty = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_model(
        cls, session_factory: sessionmaker[Session], settings: Settings, model_id: str, dim: int
    ) -> IndexService:
        """The index service of one model, placed and sized as the settings say."""
        return cls(
            session_factory,
            settings.index_dir,
            model_id=model_id,
            dim=dim,
            hnsw_threshold=settings.flat_index_limit,
            device=settings.index_device,
            search_threads=settings.index_search_threads or None,
        )

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._index is not None

    @property
    def index(self) -> FaissIndex:
        if self._index is None:
            raise RuntimeError("index not loaded")
        return self._index

    def start(self) -> dict[str, int]:
        """Load the newest snapshot (or rebuild) and reconcile with the DB; returns counts."""
        self.index_dir.mkdir(parents=True, exist_ok=True)
        snap = load_snapshot(self.index_dir, model_id=self.model_id, **self._index_kw)
        if snap is None:
            index, watermark = self.build(self.model_id, self.dim), 0
            stats = {"snapshot": 0, "watermark": 0, "added": len(index), "removed": 0}
        else:
            index, watermark = snap
            added, removed = self._reconcile(index, watermark)
            stats = {"snapshot": 1, "watermark": watermark, "added": added, "removed": removed}
        with self._swap_lock:
            self._index = index
            self._dirty = stats["added"] + stats["removed"]
        log.info("index ready: %d vectors (%s)", len(index), stats)
        return stats

    def build(self, model_id: str, dim: int) -> FaissIndex:
        """A fresh index of every live vector of `model_id`, from the DB."""
        index = FaissIndex(dim, **self._index_kw)
        with self._sessions() as session:
            for ids, vecs in vectors.iter_vectors(session, model_id, dim):
                index.add(ids, vecs)
        return index

    def _reconcile(self, index: FaissIndex, watermark: int) -> tuple[int, int]:
        """Make `index` hold exactly the DB's live ids (covers late commits, not just > wm)."""
        with self._sessions() as session:
            db_ids = vectors.live_ids(session, self.model_id)
            have = index.ids()
            missing = np.setdiff1d(db_ids, have, assume_unique=True)
            extra = np.setdiff1d(have, db_ids, assume_unique=True)
            for ids, vecs in vectors.vectors_for(session, self.model_id, self.dim, missing):
                index.add(ids, vecs)
        if len(extra):
            index.remove(extra)
        return len(missing), len(extra)

    def start_background(self, interval_s: float) -> None:
        """Snapshot every `interval_s` seconds when something changed."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    if self._dirty:
                        self.snapshot()
                except Exception as exc:  # noqa: BLE001 - keep serving; the next tick retries
                    if faults.is_disk_full(exc):
                        log.warning("index snapshot skipped, no space in %s", self.index_dir)
                    else:
                        log.exception("periodic snapshot failed")

        self._thread = threading.Thread(target=loop, name="index-snapshot", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and write a final snapshot."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._index is not None and self._dirty:
            self.snapshot()

    def snapshot(self) -> Path | None:
        """Write a snapshot of the live index (atomic); returns its path.

        A failed write (a full volume) leaves no partial snapshot and keeps the index marked
        changed, so the next periodic tick or the final snapshot at stop tries again.
        """
        with self._swap_lock:
            if self._index is None:
                return None
            ids = self._index.ids()
            watermark = int(ids[-1]) if len(ids) else 0
            dirty = self._dirty
            path = save_snapshot(
                self._index, self.index_dir, model_id=self.model_id, watermark=watermark
            )
            self._dirty -= dirty
            return path

    def swap(self, model_id: str, index: FaissIndex) -> None:
        """Make `index` (of `model_id`) the live one; used by the re-index flip."""
        with self._swap_lock:
            self._index, self.model_id, self.dim = index, model_id, index.dim
            self._dirty = max(1, len(index))

    # -- operations -------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vecs: np.ndarray, model_id: str | None = None) -> None:
        """Add committed vectors (ignored when they belong to another model than the live one)."""
        with self._swap_lock:
            if model_id is not None and model_id != self.model_id:
                return
            self.index.add(np.asarray(ids, dtype=np.int64), vecs)
            self._dirty += len(ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids of deleted images."""
        with self._swap_lock:
            n = self.index.remove(np.asarray(ids, dtype=np.int64))
            self._dirty += 1
            return n

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids); k is capped at the index size by the caller's over-fetch."""
        return self.index.search(np.atleast_2d(np.asarray(queries, dtype=np.float32)), k)

    def __len__(self) -> int:
        return 0 if self._index is None else len(self._index)
