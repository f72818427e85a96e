"""Receiving a video: stream it to disk, probe it, keep it, and queue its analysis job.

WHY the order: an upload is written to settings.video_dir/"incoming" chunk by chunk (a
multi-GB file is never held in memory) and fsynced; the probe refuses broken or unsupported
input (415/422/413) before any row or job exists, deleting the file; only then the file is
renamed to its content address and the Video row and its Job commit in one transaction. The
caller answers 202 after that commit, so an acknowledged video is never lost: a crash before
the job's thread starts leaves a pending job that `on_start` runs at the next start.

Patient data: the upload's file name is never stored or logged; `origin` holds DICOM UIDs only.
Files: `submit_video` owns the path it is given (moved on success, deleted otherwise).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.db.models import Procedure, Video
from app.db.types import utcnow
from app.services import jobs
from app.services.errors import ProblemError
from app.services.job_threads import VIDEO_ANALYSIS, threads_of
from app.services.storage import fsync_dir

if TYPE_CHECKING:
    from fastapi import UploadFile

    from app.db.models import Job
    from app.services.runtime import Runtime

log = logging.getLogger(__name__)

INCOMING = "incoming"
CHUNK = 1024 * 1024  # bytes read from an UploadFile at a time
WRITE_BLOCK = 4 * 1024 * 1024  # bytes gathered before one write (one thread hop)
LEFTOVER_AGE_S = 24 * 3600.0  # incoming or unreferenced files older than this are crash leftovers
# short container name (app.video.probe) -> file extension of the kept original
EXTENSIONS = {
    "mp4": "mp4",
    "mov": "mov",
    "matroska": "mkv",
    "webm": "webm",
    "avi": "avi",
    "mpegts": "ts",
    "mpeg": "mpg",
}
MEDIA_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
    "avi": "video/x-msvideo",
    "ts": "video/mp2t",
    "mpg": "video/mpeg",
}

# incoming path -> (sha256, bytes) computed while receiving (saves a second read of the file)
_hashed: dict[Path, tuple[str, int]] = {}
_hashed_lock = threading.Lock()


@dataclass(frozen=True)
class SubmittedVideo:
    """The video row, its analysis job, and whether this call created them (False: the same
    file was already in the procedure)."""

    video: Video
    job: Job | None
    created: bool


def incoming_dir(rt: Runtime) -> Path:
    path = Path(rt.settings.video_dir) / INCOMING
    path.mkdir(parents=True, exist_ok=True)
    return path


def too_large(limit: int) -> ProblemError:
    return ProblemError(413, "video_too_large_bytes", f"The video exceeds {limit} bytes.")


class _Sink:
    """A temporary file under incoming/ that hashes what it writes (runs in a worker thread)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"{uuid.uuid4().hex}.part"
        self._fh = open(self.path, "xb")  # noqa: SIM115 - closed by finish/abort
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self.sha.update(data)
        self.size += len(data)

    def finish(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)


async def _chunks_of(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(CHUNK):
        yield chunk


async def receive(rt: Runtime, chunks: AsyncIterator[bytes] | UploadFile) -> Path:
    """Stream the upload into incoming/ (fsynced) and return its path; 413
    `video_too_large_bytes` above settings.video_max_bytes (nothing is left behind)."""
    limit = rt.settings.video_max_bytes
    source = chunks if hasattr(chunks, "__aiter__") else _chunks_of(chunks)  # type: ignore[arg-type]
    sink = await anyio.to_thread.run_sync(_Sink, incoming_dir(rt))
    block: list[bytes] = []
    held = 0
    try:
        async for chunk in source:  # type: ignore[union-attr]
            if sink.size + held + len(chunk) > limit:
                raise too_large(limit)
            block.append(chunk)
            held += len(chunk)
            if held >= WRITE_BLOCK:
                await anyio.to_thread.run_sync(sink.write, b"".join(block))
                block, held = [], 0
        if block:
            await anyio.to_thread.run_sync(sink.write, b"".join(block))
        await anyio.to_thread.run_sync(sink.finish)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(sink.abort)
        raise
    with _hashed_lock:
        _hashed[sink.path] = (sink.sha.hexdigest(), sink.size)
    return sink.path


def discard(path: Path) -> None:
    """Delete a received file that will not be submitted (and forget its hash)."""
    with _hashed_lock:
        _hashed.pop(path, None)
    path.unlink(missing_ok=True)


def _digest(path: Path) -> tuple[str, int]:
    with _hashed_lock:
        known = _hashed.pop(path, None)
    if known is not None:
        return known
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            sha.update(block)
            size += len(block)
    return sha.hexdigest(), size


def file_key(sha256: str, container: str) -> str:
    """Where the kept original lives under settings.video_dir (content-addressed)."""
    return f"{sha256[:2]}/{sha256}.{EXTENSIONS.get(container, 'video')}"


def media_type(key: str) -> str:
    return MEDIA_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")


def original_path(rt: Runtime, video: Video) -> Path | None:
    """The kept original, or None when it was not kept or has been deleted."""
    if video.file_key is None:
        return None
    path = Path(rt.settings.video_dir) / video.file_key
    return path if path.is_file() else None


def _existing(session: sa.orm.Session, procedure_id: uuid.UUID, sha256: str) -> Video | None:
    return session.scalar(
        sa.select(Video).where(Video.procedure_id == procedure_id, Video.sha256 == sha256)
    )


def _same_again(rt: Runtime, procedure_id: uuid.UUID, sha256: str) -> SubmittedVideo | None:
    with rt.sessions() as session:
        video = _existing(session, procedure_id, sha256)
        if video is None:
            return None
        job = jobs.get(session, video.job_id) if video.job_id else None
        session.expunge_all()
    return SubmittedVideo(video, job, created=False)


def _keep(rt: Runtime, path: Path, key: str) -> None:
    """Move the file to its key (a copy first when it lies on another file system)."""
    target = Path(rt.settings.video_dir) / key
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = target.with_name(f".{uuid.uuid4().hex}.part")
        try:
            with open(path, "rb") as src, open(tmp, "xb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        path.unlink()
    fsync_dir(target.parent)


def submit_video(
    rt: Runtime,
    procedure_id: uuid.UUID,
    path: Path,
    *,
    source: str = "upload",
    origin: dict[str, Any] | None = None,
) -> SubmittedVideo:
    """Probe, keep and queue a video file of the procedure (takes ownership of `path`).

    404 `procedure_not_found`; the probe's refusal as a problem with its status and code; the
    same bytes in the same procedure again -> the existing video (created=False). On success
    the analysis job is started in a thread of this process."""
    from app.video.errors import VideoRejected
    from app.video.probe import probe

    s = rt.settings
    try:
        sha256, size = _digest(path)
        with rt.sessions() as session:
            if session.get(Procedure, procedure_id) is None:
                raise ProblemError(404, "procedure_not_found", "No procedure with this id.")
        again = _same_again(rt, procedure_id, sha256)
        if again is not None:
            discard(path)
            return again
        try:
            info = probe(path, max_duration_s=s.video_max_duration_s, max_pixels=s.video_max_pixels)
        except VideoRejected as exc:
            raise ProblemError(exc.status, exc.code, exc.message) from None
        key = file_key(sha256, info.container)
        with rt.sha_locks.hold([sha256]):
            _keep(rt, path, key)
            try:
                submitted = _create(rt, procedure_id, sha256, size, info, key, source, origin)
            except IntegrityError:  # the same file arrived at once in another request
                again = _same_again(rt, procedure_id, sha256)
                if again is None:
                    raise
                return again
    except BaseException:
        discard(path)
        raise
    log.info("video %s queued (%s, %.0f s)", submitted.video.id, info.codec, info.duration_s)
    if submitted.job is not None:
        threads_of(rt).start(submitted.job.id, submitted.job.kind)
    return submitted


def _create(
    rt: Runtime,
    procedure_id: uuid.UUID,
    sha256: str,
    size: int,
    info: Any,
    key: str,
    source: str,
    origin: dict[str, Any] | None,
) -> SubmittedVideo:
    """The Video row and its pending job, in one transaction."""
    with rt.sessions.begin() as session:
        video = Video(
            id=uuid.uuid4(),
            procedure_id=procedure_id,
            sha256=sha256,
            container=info.container,
            codec=info.codec,
            width=info.width,
            height=info.height,
            fps=float(info.fps),
            duration_s=float(info.duration_s),
            rotation=int(info.rotation),
            bytes=size,
            source=source,
            origin=dict(origin or {}),
            file_key=key,
            status="queued",
            analysis={"probe": {"pix_fmt": info.pix_fmt, "has_audio": info.has_audio}},
        )
        session.add(video)
        session.flush()
        job = jobs.create(session, VIDEO_ANALYSIS, {"video_id": str(video.id)})
        video.job_id = job.id
        session.flush()
        session.expunge_all()
    return SubmittedVideo(video, job, created=True)


def purge_expired(rt: Runtime) -> int:
    """Delete kept originals past `retain_until`; returns how many rows lost their file.

    A file shared by two rows (the same video in two procedures) goes when no row keeps it."""
    now = utcnow()
    removed = 0
    with rt.sessions.begin() as session:
        expired = list(
            session.scalars(
                sa.select(Video).where(Video.file_key.is_not(None), Video.retain_until < now)
            )
        )
        keys = {v.file_key for v in expired}
        for video in expired:
            video.file_key = None
            removed += 1
        session.flush()
        still = set(session.scalars(sa.select(Video.file_key).where(Video.file_key.in_(keys))))
    for key in keys - still:
        assert key is not None
        with contextlib.suppress(FileNotFoundError):
            (Path(rt.settings.video_dir) / key).unlink()
    if removed:
        log.info("deleted %d video original(s) past their retention", removed)
    return removed


def sweep_leftovers(rt: Runtime, older_than_s: float = LEFTOVER_AGE_S) -> int:
    """Remove crash leftovers: incoming files and kept files no row names, older than a day
    (younger ones may belong to an upload another process is receiving right now)."""
    root = Path(rt.settings.video_dir)
    cutoff = time.time() - older_than_s
    with rt.sessions() as session:
        named = set(session.scalars(sa.select(Video.file_key).where(Video.file_key.is_not(None))))
    removed = 0
    for path in root.glob("*/*"):
        if not path.is_file():
            continue
        key = path.relative_to(root).as_posix()
        leftover = path.parent.name == INCOMING or key not in named
        with contextlib.suppress(FileNotFoundError):
            if leftover and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def on_start(rt: Runtime) -> None:
    """At service start: retention, crash leftovers, and the video jobs no live run holds
    (queued ones included: their upload was acknowledged)."""
    purge_expired(rt)
    sweep_leftovers(rt)
    started = threads_of(rt).resume_kinds((VIDEO_ANALYSIS,))
    if started:
        log.info("resumed %d video analysis job(s)", len(started))


def retention_end(rt: Runtime) -> timedelta | None:
    """How long an analysed original is kept (None: delete it when the analysis ends)."""
    s = rt.settings
    if not s.video_keep_original or s.video_retention_days <= 0:
        return None
    return timedelta(days=s.video_retention_days)
