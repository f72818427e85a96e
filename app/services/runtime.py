"""Everything a running service holds: DB, storage, model, batcher, index, metrics.

Built once per process by the app's lifespan (or by a CLI verb / benchmark) and started in
order: register the model, sweep crash leftovers, load the index, then accept requests.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Image
from app.db.session import create_db_engine, create_session_factory, session_scope
from app.services import model_registry
from app.services.batching import MicroBatcher
from app.services.index_service import IndexService
from app.services.ingest_hooks import IngestHook
from app.services.metrics import Metrics
from app.services.shalocks import ShaLocks
from app.services.storage import Storage
from app.settings import Settings
from embedder import Embedder

log = logging.getLogger(__name__)


class ModelMismatchError(RuntimeError):
    """The DB's active model is not the configured bundle and its own bundle is missing."""


@dataclass
class Runtime:
    """The service's components; `start()` makes them ready, `stop()` shuts them down."""

    settings: Settings
    engine: sa.Engine
    sessions: sessionmaker[Session]
    storage: Storage
    metrics: Metrics = field(default_factory=Metrics)
    hooks: list[IngestHook] = field(default_factory=list)
    sha_locks: ShaLocks = field(default_factory=ShaLocks)
    embedder: Embedder | None = None
    batcher: MicroBatcher | None = None
    index: IndexService | None = None
    decode_pool: ThreadPoolExecutor | None = None

    @classmethod
    def create(cls, settings: Settings, hooks: list[IngestHook] | None = None) -> Runtime:
        """Build (not start) the components from settings."""
        settings.ensure_dirs()
        engine = create_db_engine(
            settings.database_url, connect_timeout_s=settings.db_connect_timeout_s
        )
        storage = Storage(settings.storage_dir, settings.thumbnail_size)
        return cls(settings, engine, create_session_factory(engine), storage, hooks=hooks or [])

    @property
    def model_id(self) -> str:
        assert self.index is not None
        return self.index.model_id

    def start(self) -> None:
        """Load the model, sweep orphans, load the index, start the batcher."""
        s = self.settings
        self.embedder = self._load_model()
        with session_scope(self.sessions) as session:
            live = session.scalars(sa.select(Image.sha256).where(Image.deleted_at.is_(None)))
            removed = self.storage.sweep(live)
        if removed:
            log.info("swept %d orphan file(s) from storage", removed)
        self.index = IndexService.for_model(
            self.sessions, s, self.embedder.bundle_id, self.embedder.dim
        )
        self.index.start()
        self.index.activate()  # the DB's active model (Milvus: the "current" alias follows)
        self.index.start_background(s.snapshot_interval_s)
        self.metrics.index_size.set_function(lambda: len(self.index or ()))
        self.decode_pool = ThreadPoolExecutor(s.decode_threads, thread_name_prefix="decode")
        self.batcher = MicroBatcher(
            self.embedder.embed_tensors,
            max_batch=s.batch_max_size,
            max_wait_ms=s.batch_max_wait_ms,
            on_batch=self.metrics.on_batch,
        )

    def _load_model(self) -> Embedder:
        """The active model's embedder; the configured bundle becomes active on first start."""
        bundle = self.settings.bundle
        embedder = Embedder.from_bundle(bundle, device=_torch_device(self.settings.index_device))
        with session_scope(self.sessions) as session:
            model_registry.register(session, embedder, str(Path(bundle).resolve()))
            current = model_registry.active(session)
            if current is None:
                model_registry.activate(session, embedder.bundle_id)
                return embedder
            if current.id == embedder.bundle_id:
                return embedder
            path = current.bundle_path
        if path and Path(path).exists():
            log.warning("ENDOSEEK_BUNDLE differs from the active model; serving %s", path)
            return Embedder.from_bundle(path, device=_torch_device(self.settings.index_device))
        raise ModelMismatchError(
            f"the active model {current.id[:12]} has no bundle at {path!r}; set "
            "ENDOSEEK_BUNDLE to that bundle or re-index with the configured one"
        )

    def stop(self) -> None:
        """Drain the batcher, snapshot the index, release the pool and the engine."""
        if self.batcher is not None:
            self.batcher.close()
        if self.index is not None:
            try:
                self.index.stop()
            except Exception:  # noqa: BLE001 - the next start rebuilds or catches up
                log.exception("final index snapshot failed")
        if self.decode_pool is not None:
            self.decode_pool.shutdown(wait=True)
        self.engine.dispose()


def _torch_device(index_device: str) -> str | None:
    """Run the model on the CPU when the operator pinned the service to the CPU."""
    return "cpu" if index_device == "cpu" else None
