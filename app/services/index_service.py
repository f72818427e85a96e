"""The one owner of the live vector index: load, catch up from the DB, snapshot, swap.

The database is the source of truth; the index is a cache of the active model's vectors. The
backend is a setting (`vector_backend`):

- faiss: the index lives in this process. At start the newest snapshot is loaded and
  reconciled with the embeddings table (rows added after the watermark, or committed late,
  are added; ids deleted since are removed); without a snapshot it is rebuilt from the table.
- milvus: one collection per model in a Milvus server (or a Milvus Lite file), shared by every
  worker. There are no snapshots (Milvus persists): start reconciles the collection with the
  table the same way, a "snapshot" is a flush, and the active model's collection carries the
  alias `<prefix>_current` (`activate`), flipped by a re-index.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.services import faults, vectors
from app.settings import Settings
from indexer import FaissIndex, load_snapshot, save_snapshot
from indexer.filters import IdFilter
from indexer.vector_index import VectorIndex

if TYPE_CHECKING:
    from indexer.backends import MilvusGenerations

log = logging.getLogger(__name__)


def milvus_options(settings: Settings) -> dict[str, Any]:
    """Where and how to reach Milvus: a Lite file (default beside the FAISS snapshots) or a
    server URL with token and TLS (keyword arguments of `milvus_generations`)."""
    uri = settings.milvus_uri or str(Path(settings.index_dir) / "milvus.db")
    if settings.milvus_tls and uri.startswith("http://"):
        uri = "https://" + uri.removeprefix("http://")
    return {
        "uri": uri,
        "token": settings.milvus_token.get_secret_value() if settings.milvus_token else "",
        "ca_pem_path": str(settings.milvus_tls_ca) if settings.milvus_tls_ca else None,
        "prefix": settings.milvus_prefix,
        "index_type": settings.milvus_index,
        "search_consistency": settings.milvus_search_consistency,
    }


_clients: dict[tuple[str, str, str | None], Any] = {}
_clients_lock = threading.Lock()


def milvus_generations(
    *,
    uri: str,
    token: str,
    ca_pem_path: str | None,
    prefix: str,
    index_type: str,
    search_consistency: str = "Strong",
) -> MilvusGenerations:
    """The model collections at `uri`, over one client per process and address."""
    from indexer.backends import MilvusGenerations, connect

    key = (uri, token, ca_pem_path)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = connect(uri, token=token, ca_pem_path=ca_pem_path)
    kw = {"index_type": index_type, "search_consistency": search_consistency}
    return MilvusGenerations(client, prefix, kw)


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
        backend: str = "faiss",
        milvus: dict[str, Any] | None = None,
    ) -> None:
        if backend not in ("faiss", "milvus"):
            raise ValueError(f"unknown vector backend {backend!r}")
        self.backend = backend
        self._milvus = milvus or {}
        self._sessions = session_factory
        self.index_dir = Path(index_dir)
        self.model_id = model_id
        self.dim = dim
        self._index_kw = {
            "hnsw_threshold": hnsw_threshold,
            "device": device,
            "search_threads": search_threads,
        }
        self._index: VectorIndex | None = None
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
            backend=settings.vector_backend,
            milvus=milvus_options(settings) if settings.vector_backend == "milvus" else None,
        )

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._index is not None

    @property
    def shared(self) -> bool:
        """True when other processes see this index's writes (a Milvus collection)."""
        return self.backend == "milvus"

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            raise RuntimeError("index not loaded")
        return self._index

    def start(self) -> dict[str, int]:
        """Load the newest snapshot (or rebuild) and reconcile with the DB; returns counts."""
        if self.backend == "milvus":
            index = self._open_milvus(self.model_id, self.dim)
            added, removed = self._fill(index) if len(index) == 0 else self._reconcile(index)
            stats = {"snapshot": 0, "watermark": 0, "added": added, "removed": removed}
        else:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            snap = load_snapshot(self.index_dir, model_id=self.model_id, **self._index_kw)
            if snap is None:
                index, watermark = self.build(self.model_id, self.dim), 0
                stats = {"snapshot": 0, "watermark": 0, "added": len(index), "removed": 0}
            else:
                index, watermark = snap
                added, removed = self._reconcile(index)
                stats = {"snapshot": 1, "watermark": watermark, "added": added, "removed": removed}
        with self._swap_lock:
            self._index = index
            self._dirty = stats["added"] + stats["removed"]
        log.info("index ready: %d vectors (%s, %s)", len(index), self.backend, stats)
        return stats

    def build(self, model_id: str, dim: int) -> VectorIndex:
        """An index holding exactly the live vectors of `model_id`, written from the DB.

        FAISS: a fresh index. Milvus: the model's collection, every vector upserted again and
        ids the DB no longer has removed (searches keep answering meanwhile).
        """
        if self.backend == "milvus":
            index = self._open_milvus(model_id, dim)
            self._fill(index, model_id, dim)
            self._remove_extra(index, model_id)
            return index
        index = FaissIndex(dim, **self._index_kw)
        self._fill(index, model_id, dim)
        return index

    def _open_milvus(self, model_id: str, dim: int) -> VectorIndex:
        return milvus_generations(**self._milvus).open(model_id, dim)

    def _fill(
        self, index: VectorIndex, model_id: str | None = None, dim: int | None = None
    ) -> tuple[int, int]:
        """Upsert every live vector of the model from the DB; (written, 0)."""
        model_id, dim = model_id or self.model_id, dim or self.dim
        n = 0
        with self._sessions() as session:
            for ids, vecs in vectors.iter_vectors(session, model_id, dim):
                index.add(ids, vecs)
                n += len(ids)
        return n, 0

    def _remove_extra(self, index: VectorIndex, model_id: str) -> int:
        """Remove ids the index has and the DB has not (deleted images)."""
        have = index.ids()
        with self._sessions() as session:
            db_ids = vectors.live_ids(session, model_id)
        extra = np.setdiff1d(have, db_ids, assume_unique=True)
        return index.remove(extra) if len(extra) else 0

    def _reconcile(self, index: VectorIndex) -> tuple[int, int]:
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
        """Stop the background thread and write a final snapshot (Milvus: flush)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._index is not None and self._dirty:
            self.snapshot()

    def snapshot(self) -> Path | None:
        """Write a snapshot of the live index (atomic); returns its path (Milvus: flush, None).

        A failed write (a full volume) leaves no partial snapshot and keeps the index marked
        changed, so the next periodic tick or the final snapshot at stop tries again.
        """
        with self._swap_lock:
            if self._index is None:
                return None
            dirty = self._dirty
            if self.backend == "milvus":
                self._index.flush()  # type: ignore[attr-defined]
                self._dirty -= dirty
                return None
            assert isinstance(self._index, FaissIndex)
            ids = self._index.ids()
            watermark = int(ids[-1]) if len(ids) else 0
            path = save_snapshot(
                self._index, self.index_dir, model_id=self.model_id, watermark=watermark
            )
            self._dirty -= dirty
            return path

    def activate(self) -> None:
        """Point the backend's "current" name at this model (Milvus: flip the alias
        atomically; FAISS has no shared name). Called once the DB made the model active."""
        if self.backend == "milvus":
            milvus_generations(**self._milvus).activate(self.model_id)

    def swap(self, model_id: str, index: VectorIndex) -> None:
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

    def search(
        self, queries: np.ndarray, k: int, allowed: IdFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids), among `allowed` ids only when given; padded -inf / -1."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if allowed is None:
            return self.index.search(q, k)
        return self.index.search(q, k, allowed=allowed)  # type: ignore[call-arg]

    def fetch_limit(self) -> int:
        """The largest k worth asking for: the size of an in-process index (cheap), the
        engine's top-k limit for Milvus (counting there is a round trip per search)."""
        if self._index is None:
            return 0
        if self.backend == "milvus":
            from indexer.milvus_index import MAX_TOPK

            return MAX_TOPK
        return len(self._index)

    def __len__(self) -> int:
        return 0 if self._index is None else len(self._index)
