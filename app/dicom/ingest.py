"""DicomIngest: a checked DICOM instance -> photos (or a video) of its study's procedure.

The one ingest path for C-STORE (through the spool) and STOW-RS: the frames become
`Upload`s for app.services.ingest.IngestService, exactly like a REST upload, and a
`dicom_frames` row per frame keeps the UIDs that join each photo to the PACS's study.

Idempotent on the SOP Instance UID: an instance already stored answers with its photos and
stores nothing. New photos and their UID rows commit in one transaction; photos that were
already stored (the same pixels sent before) get their UID rows in a second one. `store_many`
does this for several instances at once (STOW-RS parts): one photo ingest per study.
Video Endoscopic instances take app/dicom/video.py instead (a video row and its analysis job),
in the same procedure.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, replace

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
from app.dicom.video import DicomVideo, is_video
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
    """What became of one instance: its procedure and photos (or video); `duplicate` if it
    was known."""

    identity: Identity
    procedure_id: uuid.UUID
    image_uids: list[uuid.UUID]
    duplicate: bool
    video_id: uuid.UUID | None = None


def procedure_for(rt: Runtime, source: str, ident: Identity) -> uuid.UUID:
    """The procedure (source, Study Instance UID) of an instance, made on first use; photos
    and videos of a study share it."""
    with rt.sessions() as session:
        proc, _ = procedures.create(
            session,
            source[:128],
            ident.study_uid,
            ident.kind,
            ident.captured_at,
            room=ident.room,
            operator=ident.operator,
            codes="keep",  # every instance repeats this: the first code of a study stays
        )
        return proc.id


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
        self.videos = DicomVideo(rt)

    def known(self, sop_instance_uid: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(image uid, procedure id) of an instance already received, in frame order."""
        return self._known_many([sop_instance_uid]).get(sop_instance_uid, [])

    def _known_many(self, uids: list[str]) -> dict[str, list[tuple[uuid.UUID, uuid.UUID]]]:
        """known() of several instances in one query: only those already received."""
        stmt = (
            sa.select(DicomFrame.sop_instance_uid, Image.uid, Image.procedure_id)
            .join(DicomFrame, DicomFrame.image_id == Image.id)
            .where(DicomFrame.sop_instance_uid.in_(sorted(set(uids))))
            .order_by(DicomFrame.sop_instance_uid, DicomFrame.frame)
        )
        out: dict[str, list[tuple[uuid.UUID, uuid.UUID]]] = {}
        with self.rt.sessions() as session:
            for sop, uid, proc in session.execute(stmt):
                out.setdefault(sop, []).append((uid, proc))
        return out

    def store(self, instance: Instance, source: str) -> StoredInstance:
        """Store `instance` in the procedure (source, Study Instance UID).

        Raises DicomRejected when its pixels do not decode; ProblemError for the service's
        faults (507 storage full, 503 database down), which callers answer as "out of
        resources" so that the sender retries."""
        (result,) = self.store_many([instance], source)
        if isinstance(result, DicomRejected):
            raise result
        return result

    def store_many(
        self, instances: list[Instance], source: str
    ) -> list[StoredInstance | DicomRejected]:
        """store() of several instances, in their order: a DicomRejected for each one refused.

        One lookup of the known SOP Instance UIDs, then one photo ingest (one transaction)
        per study for all the new instances' frames. When that ingest refuses the pixels
        (4xx: the service fails a whole call for one bad file) each instance of the study is
        stored alone, so that only the bad one is refused. The service's faults (5xx) raise
        ProblemError for the whole batch."""
        out: list[StoredInstance | DicomRejected | None] = [None] * len(instances)
        rows = self._known_many([i.identity.sop_instance_uid for i in instances])
        first: dict[str, int] = {}  # SOP Instance UID -> its first position in this batch
        groups: dict[str, list[tuple[int, list[Upload]]]] = {}
        for pos, instance in enumerate(instances):
            ident = instance.identity
            if is_video(instance):  # idempotent on its own (video.py): stored in order
                out[pos] = self._video(instance, source)
                continue
            if ident.sop_instance_uid in rows:
                known = rows[ident.sop_instance_uid]
                out[pos] = StoredInstance(
                    ident, known[0][1], [uid for uid, _ in known], duplicate=True
                )
                continue
            if ident.sop_instance_uid in first:  # sent twice in one batch: answered below
                continue
            first[ident.sop_instance_uid] = pos
            try:
                uploads = frame_uploads(instance, self.rt.settings)
            except DicomRejected as exc:
                out[pos] = exc
                continue
            groups.setdefault(ident.study_uid, []).append((pos, uploads))
        for members in groups.values():
            ident = instances[members[0][0]].identity
            procedure_id = self._procedure(source, ident)
            for chunk in self._chunks(members):
                got = self._store_chunk(procedure_id, [(instances[p], u) for p, u in chunk])
                for (pos, _), result in zip(chunk, got, strict=True):
                    out[pos] = result
        for pos, instance in enumerate(instances):
            if out[pos] is None:  # a twin of an instance earlier in the batch
                earlier = out[first[instance.identity.sop_instance_uid]]
                out[pos] = (
                    replace(earlier, identity=instance.identity, duplicate=True)
                    if isinstance(earlier, StoredInstance)
                    else earlier
                )
        return [r for r in out if r is not None]

    def _video(self, instance: Instance, source: str) -> StoredInstance | DicomRejected:
        try:
            return self.videos.store(instance, source)
        except DicomRejected as exc:
            return exc

    def _chunks(
        self, members: list[tuple[int, list[Upload]]]
    ) -> list[list[tuple[int, list[Upload]]]]:
        """A study's instances in runs of at most max_files_per_request frames (one alone
        may have more: the service then refuses it, as it would have refused it alone)."""
        limit = self.rt.settings.max_files_per_request
        chunks: list[list[tuple[int, list[Upload]]]] = []
        size = 0
        for member in members:
            n = len(member[1])
            if not chunks or size + n > limit:
                chunks.append([])
                size = 0
            chunks[-1].append(member)
            size += n
        return chunks

    def _store_chunk(
        self, procedure_id: uuid.UUID, items: list[tuple[Instance, list[Upload]]]
    ) -> list[StoredInstance | DicomRejected]:
        """One photo ingest for these instances; each alone if the service refuses one."""
        try:
            return self._ingest(procedure_id, items)
        except ProblemError as exc:
            if exc.status >= 500:
                raise
            if len(items) == 1:
                # the frames' pixels failed the photo checks (damaged, too many pixels)
                code = "corrupt_pixel_data" if exc.code == "corrupt_image" else exc.code
                rejected = DicomRejected(code, exc.detail, CANNOT_UNDERSTAND)
                rejected.__cause__ = exc
                return [rejected]
        return [r for item in items for r in self._store_chunk(procedure_id, [item])]

    def _ingest(
        self, procedure_id: uuid.UUID, items: list[tuple[Instance, list[Upload]]]
    ) -> list[StoredInstance]:
        """The frames of `items` as one IngestService call; their dicom_frames rows commit
        with the new photos, photos stored before (same pixels) are linked after."""
        uploads: list[Upload] = []
        owner: list[tuple[int, int]] = []  # per upload: (item index, frame number)
        for n, (_, ups) in enumerate(items):
            uploads.extend(ups)
            owner.extend((n, frame) for frame in _frame_numbers(ups))
        linked: set[int] = set()

        def link_new(session: Session, images: list[tuple[int, Image]]) -> None:
            # the new photos' provenance commits with them (one transaction, not two)
            for i, img in images:
                n, frame = owner[i]
                ident = items[n][0].identity
                if img.captured_at != ident.captured_at:  # each instance has its own time
                    img.captured_at = ident.captured_at
                session.add(_frame_row(ident, img.id, frame))
                linked.add(i)

        captured_at = items[0][0].identity.captured_at
        results = self.photos.ingest(procedure_id, uploads, captured_at, on_commit=link_new)
        rest: dict[int, list[tuple[int, int]]] = {}
        images: dict[int, list[uuid.UUID]] = {}
        for i, r in enumerate(results):
            n, frame = owner[i]
            images.setdefault(n, []).append(r.image.uid)
            if i not in linked:
                rest.setdefault(n, []).append((r.image.id, frame))
        out = []
        for n, (instance, _) in enumerate(items):
            ident = instance.identity
            if n in rest:  # photos stored before (same pixels): link them to this instance too
                self._link(ident, rest[n])
            if self.rt.settings.dicom_keep_originals:
                self._keep_original(instance)
            out.append(StoredInstance(ident, procedure_id, images.get(n, []), duplicate=False))
        return out

    def _procedure(self, source: str, ident: Identity) -> uuid.UUID:
        return procedure_for(self.rt, source, ident)

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
