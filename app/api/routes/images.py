"""Image upload into a procedure, metadata, file, thumbnail, labels, delete."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile, status
from fastapi.responses import FileResponse

from app.api import schemas
from app.api.convert import file_url, image_out, thumbnail_url
from app.api.deps import AdminKey, IngestKey, LabelKey, RuntimeDep, SearchKey, SessionDep
from app.documentation import labels
from app.services import audit
from app.services import images as svc
from app.services.errors import ProblemError
from app.services.ingest import IngestService, Upload
from app.video.read import video_of

router = APIRouter(tags=["images"])


def _read(upload: UploadFile, limit: int) -> Upload:
    """Read at most limit+1 bytes: enough to tell an over-size file without holding it all."""
    return Upload(upload.filename, upload.file.read(limit + 1))


@router.post(
    "/v1/procedures/{procedure_id}/images",
    status_code=status.HTTP_201_CREATED,
    summary="Upload one or many photos (multipart field 'files')",
)
def upload_images(
    procedure_id: uuid.UUID,
    rt: RuntimeDep,
    _: IngestKey,
    files: Annotated[list[UploadFile], File(description="JPEG/PNG/... photos")],
    captured_at: Annotated[schemas.AwareDatetime | None, Form()] = None,
) -> schemas.IngestResponse:
    uploads = [_read(f, rt.settings.max_upload_bytes) for f in files]
    results = IngestService(rt).ingest(procedure_id, uploads, captured_at)
    items = []
    for r in results:
        ann = r.annotation
        items.append(
            schemas.IngestItem(
                id=r.image.uid,
                sha256=r.image.sha256,
                duplicate=r.duplicate,
                thumbnail_url=thumbnail_url(r.image),
                file_url=file_url(r.image),
                landmark=schemas.Landmark(label=ann.landmark, score=ann.score) if ann else None,
                fulfils=ann.fulfils if ann else [],
            )
        )
    return schemas.IngestResponse(procedure_id=procedure_id, items=items)


@router.get("/v1/images/{image_id}", summary="Image metadata")
def get_image(image_id: uuid.UUID, session: SessionDep, key: SearchKey) -> schemas.ImageOut:
    img = svc.get_live(session, image_id)
    labels = svc.labels_of(session, [img.id])[img.id]
    dicom = svc.dicom_of(session, [img.id]).get(img.id)
    video = video_of(session, [img.id]).get(img.id)
    audit.record(session, key.key_id, "image.view", str(image_id))
    session.commit()
    return image_out(img, labels, dicom, video)


@router.get("/v1/images/{image_id}/file", summary="The original file", response_class=FileResponse)
def get_file(image_id: uuid.UUID, session: SessionDep, rt: RuntimeDep, key: SearchKey):  # noqa: ANN201
    img = svc.get_live(session, image_id)
    path = svc.file_path(rt, img)
    audit.record(session, key.key_id, "image.file", str(image_id))
    session.commit()
    return FileResponse(path, media_type=img.mime)


@router.get(
    "/v1/images/{image_id}/thumbnail", summary="A JPEG thumbnail", response_class=FileResponse
)
def get_thumbnail(  # noqa: ANN201
    image_id: uuid.UUID,
    session: SessionDep,
    rt: RuntimeDep,
    _: SearchKey,
    size: Annotated[int | None, Query(ge=16, le=1024)] = None,
):
    img = svc.get_live(session, image_id)
    return FileResponse(svc.thumbnail_path(rt, img, size), media_type="image/jpeg")


def _set_label(
    session: SessionDep, image_id: uuid.UUID, label: str, reference: bool, key_id: uuid.UUID
) -> schemas.ImageOut:
    img = svc.get_live(session, image_id)
    try:
        labels.set_label(session, img, label, reference=reference, key_id=key_id)
    except labels.LabelError as exc:
        extra = {"vocabulary": list(exc.vocabulary)} if exc.vocabulary else {}
        raise ProblemError(422, "invalid_label", str(exc), **extra) from exc
    session.commit()
    return image_out(img, svc.labels_of(session, [img.id])[img.id])


@router.put(
    "/v1/images/{image_id}/label",
    summary="Set the photo's label; reference=true adds it to the reference gallery (scope label)",
)
def set_label(
    image_id: uuid.UUID, body: schemas.LabelSet, session: SessionDep, key: LabelKey
) -> schemas.ImageOut:
    return _set_label(session, image_id, body.label, body.reference, key.key_id)


@router.delete(
    "/v1/images/{image_id}/label",
    summary="Remove the photo's label (and its place in the reference gallery)",
)
def clear_label(image_id: uuid.UUID, session: SessionDep, key: LabelKey) -> schemas.ImageOut:
    img = svc.get_live(session, image_id)
    labels.clear_label(session, img, key_id=key.key_id)
    session.commit()
    return image_out(img, svc.labels_of(session, [img.id])[img.id])


@router.post(
    "/v1/images/{image_id}/labels",
    status_code=status.HTTP_201_CREATED,
    summary="Label an image (deprecated: use PUT /v1/images/{image_id}/label)",
    deprecated=True,
)
def add_label(
    image_id: uuid.UUID, body: schemas.LabelCreate, session: SessionDep, key: LabelKey
) -> schemas.ImageOut:
    return _set_label(session, image_id, body.label, body.source == "reference", key.key_id)


@router.delete(
    "/v1/images/{image_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete an image"
)
def delete_image(image_id: uuid.UUID, rt: RuntimeDep, key: AdminKey) -> None:
    svc.delete(rt, image_id, key.key_id)
