"""DICOMweb STOW-RS: POST /dicomweb/studies[/{study}] (scope ingest); the work is app.dicom.stow.

The body is read by the handler itself (no body parameter here: FastAPI must not buffer it).
Errors before storing anything (401, 406, 413, 415) are problem+json like every other route;
the Store Instances Response (200/202/409) is application/dicom+json.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from app.api.deps import IngestKey, RuntimeDep
from app.dicom.stow import DICOM_JSON, store_instances

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

PREFIX = "/dicomweb/"  # BodyLimit applies stow_max_request_bytes under it (app/main.py)
_UID = r"^[0-9]+(\.[0-9]+)*$"
_RESPONSES: dict[int | str, dict] = {
    200: {"description": "Every instance stored", "content": {DICOM_JSON: {}}},
    202: {
        "description": "Some stored, some failed (FailedSOPSequence)",
        "content": {DICOM_JSON: {}},
    },
    409: {"description": "No instance stored (FailedSOPSequence)", "content": {DICOM_JSON: {}}},
}
# The body (multipart/related; type="application/dicom", PS3.18 10.5) is described in words, not
# as an OpenAPI requestBody: no OpenAPI tool can generate or check multipart/related parts.
_DESCRIPTION = (
    'Body: `multipart/related; type="application/dicom"; boundary=...` (the boundary quoted or '
    "not, Content-Length or chunked), one DICOM Part 10 instance per part. Answer: the PS3.18 "
    "Store Instances Response as application/dicom+json, 200 every instance stored, 202 some, "
    "409 none (FailedSOPSequence with FailureReason per failed part). See docs/dicom.md."
)


@router.post(
    "/studies",
    summary="STOW-RS: store DICOM instances (multipart/related; type=application/dicom)",
    responses=_RESPONSES,
    response_class=Response,
    description=_DESCRIPTION,
)
async def store(request: Request, rt: RuntimeDep, _: IngestKey) -> Response:
    return await store_instances(request, rt, None)


@router.post(
    "/studies/{study}",
    summary="STOW-RS: store DICOM instances of one study (others fail with 0xA900)",
    responses=_RESPONSES,
    response_class=Response,
    description=_DESCRIPTION,
)
async def store_study(
    request: Request,
    rt: RuntimeDep,
    _: IngestKey,
    study: Annotated[str, Path(max_length=64, pattern=_UID, description="Study Instance UID")],
) -> Response:
    return await store_instances(request, rt, study)
