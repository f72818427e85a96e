"""Procedure videos: upload (streamed to disk), status and progress, per-frame table, the
original (HTTP Range), cancel, and QA review of the picked stills.

WHY the upload reads the multipart body itself: Starlette's form parser spools a file to a
temporary file first; a multi-GB video would then be written twice. Here the `file` part is
fed chunk by chunk from the request stream into settings.video_dir/incoming (app.video.store).
The body limit of this route is settings.video_max_bytes (app/main.py gives BodyLimit
UPLOAD_PATH), not the photo limit.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app.api.deps import IngestKey, LabelKey, RuntimeDep, SearchKey, SessionDep
from app.db.models import Procedure, Video
from app.db.types import utcnow
from app.services import audit, jobs
from app.services.errors import ProblemError
from app.video import read, store
from app.video.review import review_pick
from app.video.store import on_start

__all__ = ["FORM_OVERHEAD", "UPLOAD_PATH", "on_start", "router"]

router = APIRouter(tags=["videos"])

UPLOAD_PATH = re.compile(r"/(v1|ui)/procedures/[^/]+/videos/?")  # REST and the web UI
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and small fields around the file
MAX_FIELD_BYTES = 16 * 1024  # a non-file form field (ignored) may hold at most this much

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "MP4, MOV, MKV, AVI or MPEG-TS",
                        }
                    },
                }
            }
        },
    }
}


# ---- schemas -------------------------------------------------------------------------------


class ProgressOut(BaseModel):
    """The analysis job's progress in analysed frames; `rate` frames/s, `eta_s` seconds left."""

    job_id: uuid.UUID
    job_status: str
    done: int
    total: int
    fraction: float | None
    rate: float | None
    eta_s: float | None
    error: str | None


class PickOut(BaseModel):
    """A still picked from the video for a requirement; counts once `review` is accepted."""

    image_id: uuid.UUID
    video_id: uuid.UUID
    requirement: str
    label: str
    t_ms: int = Field(description="Presentation time in the video, ms")
    score: float = Field(description="Smoothed vote share of the label at that time")
    quality: float
    rank: int
    review: Literal["needs_review", "accepted", "rejected"]
    reviewed_at: datetime | None
    image_url: str
    file_url: str
    thumbnail_url: str


class VideoOut(BaseModel):
    """A procedure video: what the probe found, the analysis status, progress and picks."""

    id: uuid.UUID
    procedure_id: uuid.UUID
    status: Literal["queued", "analysing", "done", "failed", "cancelled"]
    source: str
    sha256: str
    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration_s: float
    rotation: int
    bytes: int
    model_id: str | None
    kept: bool = Field(description="The original is kept (GET file_url plays it)")
    retain_until: datetime | None
    created_at: datetime
    finished_at: datetime | None
    url: str
    file_url: str | None
    progress: ProgressOut | None
    summary: dict[str, Any] = Field(description="Analysis config, decoder, counts per reason")
    picks: list[PickOut]


class LabelShare(BaseModel):
    label: str
    score: float


class FrameOut(BaseModel):
    """One analysed frame: quality verdict and features, top labels within the reach."""

    index: int
    t_ms: int
    ok: bool
    reason: str | None
    quality: float
    features: dict[str, float]
    labels: list[LabelShare]


class FramePage(BaseModel):
    """Frames in time order; pass `next_after` as `after` for the next page (null: no more)."""

    items: list[FrameOut]
    next_after: int | None


class ReviewIn(BaseModel):
    decision: Literal["accept", "reject"]


# ---- upload --------------------------------------------------------------------------------


class _FormFile:
    """python-multipart callbacks that keep the bytes of the first part named `file`."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.seen = False  # a `file` part began
        self.done = False  # ... and ended
        self._in_file = False
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._other = 0

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
        }

    def _begin(self) -> None:
        self._headers, self._in_file, self._other = {}, False, 0

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = bytes(self._value)
        self._field, self._value = bytearray(), bytearray()

    def _headers_done(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        # the part's name only: its filename parameter is never read (patient data)
        self._in_file = params.get(b"name") == b"file" and not self.seen
        self.seen = self.seen or self._in_file

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.out.append(bytes(data[start:end]))
            return
        self._other += end - start
        if self._other > MAX_FIELD_BYTES:
            raise ProblemError(413, "field_too_large", "A form field other than 'file' is too big.")

    def _end(self) -> None:
        if self._in_file:
            self.done = True
        self._in_file = False


def _boundary(request: Request) -> bytes:
    media, params = parse_options_header(request.headers.get("content-type", ""))
    if media != b"multipart/form-data":
        raise ProblemError(
            415, "not_multipart", "Send the video as multipart/form-data in the field 'file'."
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise ProblemError(400, "invalid_multipart", "The Content-Type has no boundary.")
    return boundary


async def _file_chunks(request: Request, boundary: bytes) -> AsyncIterator[bytes]:
    """The bytes of the form's `file` part, as they arrive."""
    form = _FormFile()
    parser = MultipartParser(boundary, form.callbacks())
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
            if form.out:
                data, form.out = b"".join(form.out), []
                yield data
    except MultipartParseError as exc:
        raise ProblemError(400, "invalid_multipart", "The body is not valid multipart.") from exc
    except ClientDisconnect as exc:  # gone, or cut off by BodyLimit (which answers itself)
        raise ProblemError(400, "incomplete_body", "The request body ended early.") from exc
    if not form.seen:
        raise ProblemError(422, "missing_file", "The form has no field 'file'.")
    if not form.done:
        raise ProblemError(400, "incomplete_body", "The file part ended early.")


def _procedure_exists(rt: Any, procedure_id: uuid.UUID) -> bool:
    with rt.sessions() as session:
        return session.get(Procedure, procedure_id) is not None


def _out(rt: Any, video_id: uuid.UUID) -> VideoOut:
    with rt.sessions() as session:
        video = session.get(Video, video_id)
        assert video is not None
        return VideoOut(**read.video_out(session, video))


@router.post(
    "/v1/procedures/{procedure_id}/videos",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Upload a procedure video (multipart field 'file'); its analysis starts",
    openapi_extra=_UPLOAD_BODY,
    responses={200: {"model": VideoOut, "description": "The same file is already there"}},
)
async def upload_video(
    procedure_id: uuid.UUID, request: Request, response: Response, rt: RuntimeDep, key: IngestKey
) -> VideoOut:
    """202 once the video and its analysis job are stored (never lost after this answer);
    415/422/413 from the probe before any job; 200 with the existing video for the same file."""
    if not await run_in_threadpool(_procedure_exists, rt, procedure_id):
        raise ProblemError(404, "procedure_not_found", "No procedure with this id.")
    path = await store.receive(rt, _file_chunks(request, _boundary(request)))
    submitted = await run_in_threadpool(store.submit_video, rt, procedure_id, path)
    video = submitted.video
    if not submitted.created:
        response.status_code = status.HTTP_200_OK

    def audited() -> VideoOut:
        with rt.sessions.begin() as session:
            action = "video.upload" if submitted.created else "video.upload_again"
            audit.record(session, key.key_id, action, str(video.id))
        return _out(rt, video.id)

    return await run_in_threadpool(audited)


# ---- reading -------------------------------------------------------------------------------


def _video(session: SessionDep, video_id: uuid.UUID) -> Video:
    video = read.get_video(session, video_id)
    if video is None:
        raise ProblemError(404, "video_not_found", "No video with this id.")
    return video


@router.get("/v1/procedures/{procedure_id}/videos", summary="The procedure's videos")
def list_videos(procedure_id: uuid.UUID, session: SessionDep, _: SearchKey) -> list[VideoOut]:
    if session.get(Procedure, procedure_id) is None:
        raise ProblemError(404, "procedure_not_found", "No procedure with this id.")
    return [VideoOut(**v) for v in read.videos_of(session, procedure_id)]


@router.get("/v1/videos/{video_id}", summary="A video: status, progress, ETA, picks, summary")
def get_video(video_id: uuid.UUID, session: SessionDep, _: SearchKey) -> VideoOut:
    return VideoOut(**read.video_out(session, _video(session, video_id)))


@router.get("/v1/videos/{video_id}/frames", summary="The per-frame table, one page")
def get_frames(
    video_id: uuid.UUID,
    session: SessionDep,
    _: SearchKey,
    after: Annotated[int | None, Query(ge=-1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=read.FRAMES_MAX)] = 200,
) -> FramePage:
    _video(session, video_id)
    rows = read.frame_rows(session, video_id, after, limit)
    more = len(rows) == limit and bool(read.frame_rows(session, video_id, rows[-1]["index"], 1))
    return FramePage(
        items=[FrameOut(**r) for r in rows], next_after=rows[-1]["index"] if more else None
    )


@router.get(
    "/v1/videos/{video_id}/file",
    summary="The original video (HTTP Range); 404 video_not_kept once deleted",
    response_class=FileResponse,
)
def get_video_file(video_id: uuid.UUID, session: SessionDep, rt: RuntimeDep, key: SearchKey):  # noqa: ANN201
    video = _video(session, video_id)
    path = store.original_path(rt, video)
    if path is None:
        raise ProblemError(404, "video_not_kept", "The original of this video is not kept.")
    audit.record(session, key.key_id, "video.file", str(video_id))
    session.commit()
    return FileResponse(path, media_type=store.media_type(path.name))


# ---- acting --------------------------------------------------------------------------------


@router.post("/v1/videos/{video_id}/cancel", summary="Cancel the video's analysis")
def cancel_video(video_id: uuid.UUID, session: SessionDep, key: IngestKey) -> VideoOut:
    """A queued analysis is cancelled at once; a running one stops after its current chunk
    (the status says "cancelled" once it has). 409 when the analysis has ended."""
    video = _video(session, video_id)
    job = jobs.get(session, video.job_id) if video.job_id is not None else None
    if read.status_of(video, job) in ("done", "failed"):
        raise ProblemError(409, "video_not_cancellable", "The analysis has ended.")
    if job is not None:
        try:
            job = jobs.request_cancel(session, job.id)
        except jobs.JobBusyError as exc:
            raise ProblemError(409, "job_busy", str(exc)) from exc
    if (job is None or job.status == "cancelled") and video.status in read.ACTIVE:
        video.status = "cancelled"
        video.finished_at = utcnow()
    audit.record(session, key.key_id, "video.cancel", str(video_id))
    session.commit()
    return VideoOut(**read.video_out(session, video))


@router.post(
    "/v1/videos/{video_id}/picks/{image_id}/review",
    summary="Accept or reject a still picked from the video (scope label)",
)
def review(
    video_id: uuid.UUID, image_id: uuid.UUID, body: ReviewIn, session: SessionDep, key: LabelKey
) -> PickOut:
    row = review_pick(session, video_id, image_id, body.decision, key.key_id)
    session.commit()
    return PickOut(**read.pick_out(row, image_id))
