"""POST /v1/search/segments: similar moments in procedure videos, by photo, image or segment.

Mirrors /v1/search: multipart/form-data with a `file` (a photo, validated and embedded like
an upload, never stored), or the fields `image_id` (a stored image's uid) or `segment_id` (a
segment of a video) as form fields or JSON; `k` results, best first.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.api.deps import RuntimeDep, SearchKey, SessionDep
from app.services import audit
from app.services.errors import ProblemError
from app.services.search import SearchService
from app.video.segments import search_segments as run_search
from app.video.segments import segment_vector

router = APIRouter(tags=["search"])
MAX_ID = 2**63 - 1  # segment ids are BIGINT rows: a larger number is a 422, not a DB error


class SegmentQuery(BaseModel):
    """What to search with when no file is sent: a stored image or a segment (one of them)."""

    model_config = ConfigDict(extra="forbid")

    image_id: uuid.UUID | None = None
    segment_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    k: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _at_most_one(self) -> SegmentQuery:
        if self.image_id is not None and self.segment_id is not None:
            raise ValueError("give image_id or segment_id, not both")
        return self


class SegmentHitOut(BaseModel):
    """A window of a video (times in ms from its start) and its cosine similarity."""

    rank: int
    score: float
    segment_id: int
    video_id: uuid.UUID
    procedure_id: uuid.UUID
    start_ms: int
    end_ms: int


class SegmentSearchOut(BaseModel):
    model_id: str
    k: int
    results: list[SegmentHitOut]


_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "image_id": {"type": "string", "format": "uuid"},
                        "segment_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                        "k": {"type": "integer", "default": 10},
                    },
                }
            },
            "application/json": {"schema": SegmentQuery.model_json_schema()},
        },
    }
}


def _invalid(exc: ValidationError) -> ProblemError:
    errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in exc.errors()]
    first = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:3])
    return ProblemError(422, "validation_error", f"Invalid request: {first}", errors=errors)


async def _query(request: Request, max_bytes: int) -> tuple[SegmentQuery, bytes | None]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: bytes | None = None
    if ctype == "application/json":
        try:
            raw = await request.json()
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ProblemError(
                400, "malformed_json", "The request body is not valid JSON."
            ) from exc
        fields = raw if isinstance(raw, dict) else {"_": raw}
    elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form()
        upload = form.get("file")
        if isinstance(upload, UploadFile):
            data = await upload.read(max_bytes + 1)
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
    else:
        raise ProblemError(
            415,
            "unsupported_media_type",
            "Send multipart/form-data (a photo in 'file', or image_id / segment_id) or JSON.",
        )
    try:
        query = SegmentQuery.model_validate(fields)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    given = (data is not None) + (query.image_id is not None) + (query.segment_id is not None)
    if given != 1:
        raise ProblemError(
            422, "no_query", "Send exactly one of: a photo in 'file', image_id, segment_id."
        )
    return query, data


@router.post(
    "/v1/search/segments",
    summary="Find similar moments in procedure videos",
    openapi_extra=_OPENAPI,
    responses={200: {"model": SegmentSearchOut}},
)
async def search_segments(
    request: Request, rt: RuntimeDep, session: SessionDep, key: SearchKey
) -> SegmentSearchOut:
    s = rt.settings
    query, data = await _query(request, s.max_upload_bytes)
    if query.k > s.max_k:
        raise ProblemError(422, "k_too_large", f"k must be between 1 and {s.max_k}.")
    assert rt.index is not None
    model_id = rt.index.model_id

    def vector() -> tuple[np.ndarray, str]:
        svc = SearchService(rt)
        if data is not None:
            return svc.vector_for_upload(data), "upload"
        if query.image_id is not None:
            return svc.vector_for_image(session, query.image_id)[0], f"image:{query.image_id}"
        vec = segment_vector(session, int(query.segment_id or 0), model_id)
        if vec is None:
            raise ProblemError(
                404, "segment_not_found", "No segment with this id for the active model."
            )
        return vec, f"segment:{query.segment_id}"

    def run() -> tuple[list, str]:
        vec, target = vector()
        hits = run_search(rt, session, vector=vec, k=query.k, exclude_segment=query.segment_id)
        return hits, target

    hits, target = await run_in_threadpool(run)
    audit.record(
        session, key.key_id, "search.segments", target, {"k": query.k, "results": len(hits)}
    )
    await run_in_threadpool(session.commit)
    return SegmentSearchOut(
        model_id=model_id,
        k=query.k,
        results=[
            SegmentHitOut(
                rank=i + 1,
                score=h.score,
                segment_id=h.segment_id,
                video_id=h.video_id,
                procedure_id=h.procedure_id,
                start_ms=h.start_ms,
                end_ms=h.end_ms,
            )
            for i, h in enumerate(hits)
        ],
    )
