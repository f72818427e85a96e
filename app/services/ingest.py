"""Photo ingest: validate -> write file -> embed -> one DB transaction -> index -> answer.

If any step fails nothing is left behind: files this request created and no live row uses
are removed, the transaction rolls back, and vectors reach the index only after the commit.
A crash between file write and commit leaves an orphan file that the start-up sweep removes.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa
import torch
from PIL import Image as PILImage
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import Embedding, Image, Procedure
from app.db.session import session_scope
from app.services import faults, vectors
from app.services.batching import MicroBatcher
from app.services.errors import ProblemError
from app.services.ingest_hooks import IngestAnnotation
from app.services.pending_models import PendingEmbedders
from app.services.runtime import Runtime
from app.services.storage import sha256_hex, storage_key
from app.services.stored_photo import ToEncode, photo_to_store
from embedder import Embedder, ImageDecodeError

log = logging.getLogger(__name__)


# adds rows to the ingest's transaction: (session, [(upload index, new image), ...])
OnCommit = Callable[[Session, list[tuple[int, "Image"]]], None]


@dataclass
class Upload:
    """One received photo (the name is only echoed back in errors).

    `image` is set when another decoder already made the pixels (a DICOM frame through
    pydicom); `data` is then what they were decoded from (their content hash)."""

    filename: str | None
    data: bytes
    image: PILImage.Image | None = None


@dataclass
class Decoded:
    """A validated upload ready to store and embed: `data` is what is stored (the field of
    view masked, see app.services.stored_photo) and `sha256` its hash."""

    sha256: str
    mime: str
    width: int
    height: int
    data: bytes
    tensor: torch.Tensor
    # the model's answer when it was started before the stored bytes were encoded
    vector: Future[np.ndarray] | None = None


@dataclass
class IngestResult:
    """Per-file answer: the stored image, whether it already existed, hook annotations."""

    image: Image
    duplicate: bool
    annotation: IngestAnnotation | None = None


def _decode(rt: Runtime, serving: Serving, upload: Upload) -> Decoded:
    """Runs in the decode pool: sniff, decode with the pixel limit, mask the field of view,
    preprocess; any failure of the bytes is an ImageDecodeError.

    A photo the mask changed must be re-encoded (~10 ms at 1080p): the model starts on it
    first, so the encoding overlaps the forward pass instead of adding to it. If its bytes
    turn out to be stored already, that forward pass is the only waste."""
    s = rt.settings
    kept = photo_to_store(
        upload.data,
        max_pixels=s.max_pixels,
        fov_mask=s.fov_mask,
        prepare=serving.embedder.preprocess,
        image=upload.image,
    )
    vector = None
    if isinstance(kept, ToEncode):
        vector = serving.batcher.submit(kept.prepared)
        kept = kept.encode()
    return Decoded(
        kept.sha256, kept.mime, kept.width, kept.height, kept.data, kept.prepared, vector
    )


# HTTP status of each ImageDecodeError code (422 for the others).
_DECODE_STATUS = {"unsupported_type": 415, "image_too_large": 413}


def decode_problem(exc: ImageDecodeError, index: int) -> ProblemError:
    """The one mapping of a bad upload to problem+json, for every REST path that decodes."""
    return ProblemError(
        _DECODE_STATUS.get(exc.code, 422),
        exc.code,
        f"File {index}: {exc.message}",
        file_index=index,
    )


@dataclass(frozen=True)
class Serving:
    """The model one request uses from start to end, read once so that a model switch
    in the middle of a request can never pair one model's vectors with another's id."""

    embedder: Embedder
    batcher: MicroBatcher

    @classmethod
    def of(cls, rt: Runtime) -> Serving:
        assert rt.embedder is not None and rt.batcher is not None
        return cls(rt.embedder, rt.batcher)


_pending: dict[int, PendingEmbedders] = {}


def _pending_for(rt: Runtime) -> PendingEmbedders:
    """One cache of pending-model embedders per runtime (bundles load once)."""
    return _pending.setdefault(id(rt), PendingEmbedders(max_pixels=rt.settings.max_pixels))


# Statements of every upload, built once: building a select and deriving its cache key costs
# about as much as running it on SQLite (~0.3 ms each on a small CPU).
_EXISTING = sa.select(Image).where(
    Image.procedure_id == sa.bindparam("procedure_id"),
    Image.sha256.in_(sa.bindparam("shas", expanding=True)),
    Image.deleted_at.is_(None),
)
_KNOWN_VECTORS = (
    sa.select(Image.sha256, Embedding.vector)
    .join(Embedding, Embedding.image_id == Image.id)
    .where(
        Image.sha256.in_(sa.bindparam("shas", expanding=True)),
        Embedding.model_id == sa.bindparam("model_id"),
    )
)


def _known(
    session: Session, procedure_id: uuid.UUID, shas: list[str], model_id: str, dim: int
) -> tuple[dict[str, Image], dict[str, np.ndarray]]:
    """Live images of these hashes in the procedure, and stored `model_id` vectors of the
    other hashes (anywhere: the same bytes need no second forward pass)."""
    shas_in = {"procedure_id": procedure_id, "shas": sorted(set(shas))}
    existing = {r.sha256: r for r in session.scalars(_EXISTING, shas_in)}
    others = sorted(set(shas) - set(existing))
    known = {}
    if others:
        found = session.execute(_KNOWN_VECTORS, {"shas": others, "model_id": model_id})
        for sha, raw in found:
            known[sha] = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dim)
    return existing, known


@dataclass
class Decoding:
    """Uploads queued on the decode pool (content hashes known at once, for the locks and
    lookups); `IngestService.collect` waits for them."""

    futures: list[Future[Decoded]]
    shas: list[str]
    started: float


class IngestService:
    """Stores uploads for one procedure; thread-safe (one instance per runtime)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.pending = _pending_for(rt)

    def validate(self, uploads: list[Upload], serving: Serving | None = None) -> list[Decoded]:
        """Decode every file in the pool; the first bad one fails the whole request (4xx)."""
        return self.collect(self.start_decode(uploads, serving or Serving.of(self.rt)))

    def start_decode(self, uploads: list[Upload], serving: Serving) -> Decoding:
        """Check file count and sizes (4xx), then queue every file on the decode pool."""
        s, rt = self.rt.settings, self.rt
        if not uploads:
            raise ProblemError(422, "no_files", "Send one or more files in the 'files' field.")
        if len(uploads) > s.max_files_per_request:
            raise ProblemError(
                413, "too_many_files", f"At most {s.max_files_per_request} files per request."
            )
        for i, up in enumerate(uploads):
            if up.image is None and len(up.data) > s.max_upload_bytes:
                raise ProblemError(
                    413,
                    "file_too_large",
                    f"File {i} is larger than the limit of {s.max_upload_bytes} bytes.",
                    file_index=i,
                )
        assert rt.decode_pool is not None
        started = time.perf_counter()
        shas = [sha256_hex(up.data) for up in uploads]
        futures = [rt.decode_pool.submit(_decode, rt, serving, up) for up in uploads]
        return Decoding(futures, shas, started)

    def collect(self, decoding: Decoding) -> list[Decoded]:
        """The decoded files in order; the first bad one fails the whole request (4xx)."""
        out = []
        try:
            for i, fut in enumerate(decoding.futures):
                try:
                    out.append(fut.result())
                except ImageDecodeError as exc:
                    raise decode_problem(exc, i) from exc
        finally:
            self.rt.metrics.observe("decode", time.perf_counter() - decoding.started)
        return out

    def ingest(
        self,
        procedure_id: uuid.UUID,
        uploads: list[Upload],
        captured_at: datetime | None = None,
        on_commit: OnCommit | None = None,
    ) -> list[IngestResult]:
        """Store the uploads in one procedure; same bytes again return the existing image.

        `on_commit(session, [(upload index, new image), ...])` adds a caller's rows to the
        transaction that stores the new images (DICOM provenance: one commit, not two).

        The files decode in the pool while this thread reads what the database already
        knows (the procedure, stored copies of the same bytes, their vectors), so the only
        work between a photo's arrival and the model is its decoding.
        """
        faults.require_space(self.rt.settings)  # 507 before any work while a volume is low
        serving = Serving.of(self.rt)
        decoding = self.start_decode(uploads, serving)
        with self.rt.sha_locks.hold(decoding.shas):
            try:
                return self._store(procedure_id, decoding, captured_at, serving, on_commit)
            except IntegrityError:
                # a concurrent request stored the same bytes first: answer with its image
                return self._store(procedure_id, decoding, captured_at, serving, on_commit)

    def _lookup(
        self, procedure_id: uuid.UUID, shas: list[str], model_id: str, dim: int
    ) -> tuple[Procedure, dict[str, Image], dict[str, np.ndarray]]:
        """One session: the procedure (404 if unknown), live images of these bytes in it, and
        vectors of `model_id` already stored for the other bytes (anywhere, to be reused)."""
        with self.rt.sessions() as session:
            procedure = session.get(Procedure, procedure_id)
            if procedure is None:
                raise ProblemError(404, "procedure_not_found", "No procedure with this id.")
            existing, known = _known(session, procedure_id, shas, model_id, dim)
        return procedure, existing, known

    def _store(
        self,
        procedure_id: uuid.UUID,
        decoding: Decoding,
        captured_at: datetime | None,
        serving: Serving,
        on_commit: OnCommit | None = None,
    ) -> list[IngestResult]:
        rt = self.rt
        assert rt.index is not None
        model_id, dim = serving.embedder.bundle_id, serving.embedder.dim
        procedure, existing, known = self._lookup(procedure_id, decoding.shas, model_id, dim)
        decoded = self.collect(decoding)
        masked = sorted({d.sha256 for d in decoded} - set(decoding.shas))
        if masked:
            # the field-of-view mask changed these photos: what is stored has a new hash
            with rt.sessions() as session:
                more = _known(session, procedure_id, masked, model_id, dim)
            existing.update(more[0])
            known.update(more[1])
        new: dict[str, Decoded] = {}
        for d in decoded:
            if d.sha256 not in existing:
                new.setdefault(d.sha256, d)
        created: list[str] = []
        try:
            # The model runs while this thread writes the files and looks up pending models,
            # so one photo costs max(forward, I/O) rather than their sum; the "write" step is
            # therefore a part of the "embed" step's time, not an addition to it.
            with rt.metrics.step("embed"):
                queued = {
                    sha: d.vector or serving.batcher.submit(d.tensor)
                    for sha, d in new.items()
                    if sha not in known
                }
                with rt.metrics.step("write"):
                    for d in new.values():
                        _, key, was_new = rt.storage.put(d.data, d.mime)
                        if was_new:
                            created.append(key)
                with rt.sessions() as session:
                    # a re-index in progress (or a flip not yet seen) needs its vectors too
                    extra = self.pending.embed(session, model_id, [d.data for d in new.values()])
                done = {sha: known[sha] if sha in known else queued[sha].result() for sha in new}
            with rt.metrics.step("database"):
                order = [d.sha256 for d in decoded]
                fresh = self._commit(
                    procedure, new, done, captured_at, model_id, extra, on_commit, order
                )
        except BaseException:
            self._cleanup(created)
            raise
        if fresh:
            with rt.metrics.step("index"):
                ids = np.array([img.id for img, _ in fresh.values()], dtype=np.int64)
                rt.index.add(ids, np.stack([done[s] for s in fresh]), model_id=model_id)
            rt.metrics.images.inc(len(fresh))
        results, seen = [], set()
        for d in decoded:
            if d.sha256 in existing:
                results.append(IngestResult(existing[d.sha256], duplicate=True))
                continue
            img, ann = fresh[d.sha256]
            results.append(IngestResult(img, duplicate=d.sha256 in seen, annotation=ann))
            seen.add(d.sha256)
        return results

    def _commit(
        self,
        procedure: Procedure,
        new: dict[str, Decoded],
        vecs: dict[str, np.ndarray],
        captured_at: datetime | None,
        model_id: str,
        extra: dict[str, np.ndarray] | None = None,
        on_commit: OnCommit | None = None,
        order: list[str] | None = None,
    ) -> dict[str, tuple[Image, IngestAnnotation | None]]:
        """One transaction: images, their vectors and whatever the hooks add.

        `procedure` is the one read at the start of the request (procedures are never deleted;
        the foreign key still guards the insert)."""
        rt = self.rt
        if not new:
            return {}
        out: dict[str, tuple[Image, IngestAnnotation | None]] = {}
        with session_scope(rt.sessions) as session:
            for i, (sha, d) in enumerate(new.items()):
                img = Image(
                    procedure_id=procedure.id,
                    sha256=sha,
                    storage_key=storage_key(sha, d.mime),
                    mime=d.mime,
                    width=d.width,
                    height=d.height,
                    bytes=len(d.data),
                    captured_at=captured_at,
                )
                session.add(img)
                session.flush()
                session.add(
                    Embedding(
                        image_id=img.id, model_id=model_id, vector=vectors.to_bytes(vecs[sha])
                    )
                )
                for other_id, mat in (extra or {}).items():
                    session.add(
                        Embedding(
                            image_id=img.id, model_id=other_id, vector=vectors.to_bytes(mat[i])
                        )
                    )
                ann = None
                for hook in rt.hooks:
                    ann = hook(session, procedure, img, vecs[sha]) or ann
                out[sha] = (img, ann)
            if on_commit is not None:
                firsts = {}
                for i, sha in enumerate(order or []):
                    if sha in out:
                        firsts.setdefault(sha, i)
                on_commit(session, [(i, out[sha][0]) for sha, i in firsts.items()])
        return out

    def _cleanup(self, keys: list[str]) -> None:
        """Remove files this request created unless a live image uses them."""
        if not keys:
            return
        try:
            with self.rt.sessions() as session:
                used = set(
                    session.scalars(
                        sa.select(Image.storage_key).where(
                            Image.storage_key.in_(keys), Image.deleted_at.is_(None)
                        )
                    )
                )
        except sa.exc.SQLAlchemyError:
            # the database cannot say whether another writer (an import) uses these bytes:
            # keep the files (an orphan costs space, a deleted live file loses a photo); the
            # start-up sweep removes them, and the request's own error is the one answered
            log.warning("database unavailable: %d new file(s) kept for the sweep", len(keys))
            return
        for key in keys:
            if key not in used:
                with contextlib.suppress(OSError):
                    self.rt.storage.delete(key)
