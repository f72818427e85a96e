"""DB rows -> API schemas (URLs use public uids only)."""

from __future__ import annotations

from collections.abc import Sequence

from app.api import schemas
from app.db.models import DicomFrame, Image, Label, Procedure, VideoImage
from app.services.search import ImageRow, LabelRow, ProcedureRow


def procedure_out(p: Procedure | ProcedureRow) -> schemas.ProcedureOut:
    return schemas.ProcedureOut(
        id=p.id,
        source=p.source,
        external_id=p.external_id,
        kind=p.kind,
        performed_at=p.performed_at,
        room=getattr(p, "room", None),
        operator=getattr(p, "operator", None),
        created_at=p.created_at,
    )


def image_url(img: Image | ImageRow) -> str:
    return f"/v1/images/{img.uid}"


def file_url(img: Image | ImageRow) -> str:
    return f"/v1/images/{img.uid}/file"


def thumbnail_url(img: Image | ImageRow) -> str:
    return f"/v1/images/{img.uid}/thumbnail"


def dicom_ref(row: DicomFrame | None) -> schemas.DicomRef | None:
    """The DICOM UIDs of a photo, if it came as DICOM."""
    if row is None:
        return None
    return schemas.DicomRef(
        study_uid=row.study_uid,
        series_uid=row.series_uid,
        sop_instance_uid=row.sop_instance_uid,
        sop_class_uid=row.sop_class_uid,
        frame=row.frame,
    )


def video_ref(row: VideoImage | None) -> schemas.VideoRef | None:
    """The video a still was picked from, if it is one."""
    if row is None:
        return None
    return schemas.VideoRef(
        video_id=row.video_id,
        t_ms=row.t_ms,
        requirement=row.requirement,
        label=row.label,
        review=row.review,  # type: ignore[arg-type]
    )


def image_out(
    img: Image | ImageRow,
    labels: Sequence[Label | LabelRow] | None = None,
    dicom: DicomFrame | None = None,
    video: VideoImage | None = None,
) -> schemas.ImageOut:
    return schemas.ImageOut(
        id=img.uid,
        procedure_id=img.procedure_id,
        sha256=img.sha256,
        mime=img.mime,
        width=img.width,
        height=img.height,
        bytes=img.bytes,
        captured_at=img.captured_at,
        created_at=img.created_at,
        file_url=file_url(img),
        thumbnail_url=thumbnail_url(img),
        labels=[
            schemas.LabelOut(label=lab.label, source=lab.source, score=lab.score)
            for lab in labels or []
        ],
        dicom=dicom_ref(dicom),
        video=video_ref(video),
    )


def procedure_image_out(
    img: Image,
    landmark: schemas.Landmark | None,
    dicom: DicomFrame | None = None,
    video: VideoImage | None = None,
) -> schemas.ProcedureImageOut:
    """A procedure's photo with its labels (loaded with the image), links and landmark."""
    base = image_out(img, img.labels, dicom, video).model_dump()
    return schemas.ProcedureImageOut(**base, url=image_url(img), landmark=landmark)
