"""DicomIngest: a checked DICOM instance -> photos of its study's procedure.

The one ingest path for C-STORE (through the spool) and STOW-RS: the frames become
`Upload`s for app.services.ingest.IngestService, exactly like a REST upload, and a
`dicom_frames` row per frame keeps the UIDs that join each photo to the PACS's study.

Idempotent on the SOP Instance UID: an instance already stored answers with its photos and
stores nothing. New photos and their UID rows commit in one transaction; photos that were
already stored (the same pixels sent before) get their UID rows in a second one.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import DicomFrame, Image
from app.db.session import session_scope
from app.dicom.deid import deidentify, to_part10
from app.dicom.errors import CANNOT_UNDERSTAND, DicomRejected
from app.dicom.frames import frame_uploads
from app.dicom.header import Instance
from app.dicom.identity import Identity
from app.services import procedures
from app.services.errors import ProblemError
from app.services.ingest import IngestService, Upload
from app.services.runtime import Runtime
from app.services.storage import atomic_write, sha256_hex

log = logging.getLogger(__name__)

ORIGINALS = "dicom"  # under storage_dir; never matched by the photo sweep's `??/??/*`
_FRAME_NAME = re.compile(r"#(\d+)$")  # frames.frame_uploads names them "<sop uid>#<n>"


@dataclass(frozen=True)
class StoredInstance:
    """What became of one instance: its procedure and photos; `duplicate` if it was known."""

    identity: Identity
    procedure_id: uuid.UUID
    image_uids: list[uuid.UUID]
    duplicate: bool


def _frame_numbers(uploads: list[Upload]) -> list[int]:
    """1-based frame numbers: from the uploads' names ("<sop uid>#N") or their order."""
    out = []
    for i, up in enumerate(uploads):
        m = _FRAME_NAME.search(up.filename or "")
        out.append(int(m.group(1)) if m else i + 1)
    return out


def _frame_row(ident: Identity, image_id: int, frame: int) -> DicomFrame:
    return DicomFrame(
        image_id=image_id,
        study_uid=ident.study_uid,
        series_uid=ident.series_uid,
        sop_instance_uid=ident.sop_instance_uid,
        sop_class_uid=ident.sop_class_uid,
        frame=frame,
    )


class DicomIngest:
    """Stores DICOM instances through the service's ingest path; thread-safe."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.photos = IngestService(rt)

    def known(self, sop_instance_uid: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(image uid, procedure id) of an instance already received, in frame order."""
        stmt = (
            sa.select(Image.uid, Image.procedure_id)
            .join(DicomFrame, DicomFrame.image_id == Image.id)
            .where(DicomFrame.sop_instance_uid == sop_instance_uid)
            .order_by(DicomFrame.frame)
        )
        with self.rt.sessions() as session:
            return [(uid, proc) for uid, proc in session.execute(stmt)]

    def store(self, instance: Instance, source: str) -> StoredInstance:
        """Store `instance` in the procedure (source, Study Instance UID).

        Raises DicomRejected when its pixels do not decode; ProblemError for the service's
        faults (507 storage full, 503 database down), which callers answer as "out of
        resources" so that the sender retries."""
        ident = instance.identity
        rows = self.known(ident.sop_instance_uid)
        if rows:
            return StoredInstance(ident, rows[0][1], [uid for uid, _ in rows], duplicate=True)
        procedure_id = self._procedure(source, ident)
        uploads = frame_uploads(instance, self.rt.settings)
        frames = _frame_numbers(uploads)
        linked: set[int] = set()

        def link_new(session: Session, images: list[tuple[int, Image]]) -> None:
            # the new photos' provenance commits with them (one transaction, not two)
            for i, img in images:
                session.add(_frame_row(ident, img.id, frames[i]))
                linked.add(i)

        try:
            results = self.photos.ingest(
                procedure_id, uploads, ident.captured_at, on_commit=link_new
            )
        except ProblemError as exc:
            if exc.status >= 500:
                raise
            # the frames' pixels failed the photo checks (damaged, too many pixels)
            code = "corrupt_pixel_data" if exc.code == "corrupt_image" else exc.code
            raise DicomRejected(code, exc.detail, CANNOT_UNDERSTAND) from exc
        rest = [(r.image.id, frames[i]) for i, r in enumerate(results) if i not in linked]
        if rest:  # photos stored before (same pixels): link them to this instance too
            self._link(ident, rest)
        if self.rt.settings.dicom_keep_originals:
            self._keep_original(instance)
        return StoredInstance(ident, procedure_id, [r.image.uid for r in results], duplicate=False)

    def _procedure(self, source: str, ident: Identity) -> uuid.UUID:
        with self.rt.sessions() as session:
            proc, _ = procedures.create(
                session, source[:128], ident.study_uid, ident.kind, ident.captured_at
            )
            return proc.id

    def _link(self, ident: Identity, images: list[tuple[int, int]]) -> None:
        """One dicom_frames row per (SOP instance, frame); a concurrent twin is fine."""
        try:
            with session_scope(self.rt.sessions) as session:
                for image_id, frame in images:
                    session.add(_frame_row(ident, image_id, frame))
        except IntegrityError:
            log.info("instance stored concurrently by another association; kept theirs")

    def _keep_original(self, instance: Instance) -> None:
        """A de-identified copy of the instance (setting dicom_keep_originals)."""
        ds = instance.dataset.copy()
        if hasattr(instance.dataset, "file_meta"):
            ds.file_meta = instance.dataset.file_meta.copy()
        deidentify(ds)
        data = to_part10(ds)
        digest = sha256_hex(instance.identity.sop_instance_uid.encode())
        path = self.rt.settings.storage_dir / ORIGINALS / digest[:2] / f"{digest}.dcm"
        atomic_write(path, data)
