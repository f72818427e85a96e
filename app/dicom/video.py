"""Video Endoscopic Image Storage instances -> procedure videos (app.video analysis).

WHY its own module: a video instance is not a photo. Its Pixel Data is one MPEG-2, H.264 or
HEVC bitstream cut into encapsulated fragments (a single one, or many for the "Fragmentable"
syntaxes), whose frames the header cannot describe: NumberOfFrames may be in the tens of
thousands and no fragment is a frame. So the still-image checks (frame count, codestream shape
per frame) do not apply; instead, before any codec runs:

1. `checked_video` (called by header.py for these SOP classes): a video transfer syntax, the
   UIDs, Rows x Columns within `video_max_pixels`, encapsulated Pixel Data whose items are all
   whole, at least one byte of bitstream and at most `video_max_bytes`, and a first fragment
   that starts like a container or stream PyAV reads (ISO BMFF, MPEG-2 transport or program
   stream, or an elementary stream's start code).
2. `checked_stream` (the C-STORE receiver before Success; DicomVideo before storing): the
   fragments joined into a file, probed by app.video.probe (first frame decoded, limits), and
   the codec must be the one the transfer syntax names.
3. `DicomVideo.store`: idempotent on the SOP Instance UID (a re-sent instance stores nothing),
   the (source, Study Instance UID) procedure exactly as for stills, then
   app.video.store.submit_video (video row + analysis job), with the UIDs as its origin.

De-identification: the data set went through deid.py (C-STORE spool) or is only read (STOW);
nothing of it but the three UIDs is kept. Text the processor burned into the picture is not in
any stored still: the analysis stores picked frames through the photo ingest, whose
field-of-view mask removes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pydicom.uid import UID

from app.dicom import conformance
from app.dicom.errors import CANNOT_UNDERSTAND, DATASET_MISMATCH, DicomRejected
from app.dicom.header import Instance, int_attribute, items_of, syntax_rejected
from app.dicom.identity import identity_of, number_of_frames
from app.settings import Settings

if TYPE_CHECKING:
    from app.dicom.ingest import StoredInstance
    from app.services.runtime import Runtime

log = logging.getLogger(__name__)

SOURCE = "dicom"  # Video.source of every video that came through the DICOM node
INCOMING = "incoming"  # under settings.video_dir, as for uploads (app.video.store)
_HEAD = 512  # bytes of the bitstream the container sniff looks at
# an MPEG-1 stream is legal inside the MPEG-2 syntaxes (MPEG-2 decoders read it)
_SAME_CODEC = {"mpeg2video": {"mpeg2video", "mpeg1video"}}


# ---- header checks (no codec) ----------------------------------------------------------------


def checked_video(ds: Dataset, settings: Settings, *, dimse: bool) -> Instance:
    """A Video Endoscopic data set -> a checked Instance (see step 1 of the module docstring).

    Raises DicomRejected; reads attributes and walks the encapsulation items only."""
    ts = str(ds.file_meta.TransferSyntaxUID)
    if ts not in conformance.VIDEO_TRANSFER_SYNTAXES:
        raise syntax_rejected(f"{ts if UID(ts).is_valid else 'invalid UID'}", dimse=dimse)
    identity = identity_of(ds, settings)
    if "PixelData" not in ds:
        raise DicomRejected("no_pixel_data", "the instance has no Pixel Data", DATASET_MISMATCH)
    rows, columns = int_attribute(ds, "Rows"), int_attribute(ds, "Columns")
    frames = number_of_frames(ds)
    if rows <= 0 or columns <= 0 or frames <= 0:
        raise DicomRejected(
            "invalid_attribute", "Rows, Columns and frames must be positive", DATASET_MISMATCH
        )
    if rows * columns > settings.video_max_pixels:
        raise DicomRejected(
            "video_too_large",
            f"{columns}x{rows} pixels per frame (at most {settings.video_max_pixels})",
            CANNOT_UNDERSTAND,
        )
    elem = ds["PixelData"]
    if not elem.is_undefined_length:
        raise DicomRejected(
            "pixel_data_mismatch", "native pixel data in a video syntax", DATASET_MISMATCH
        )
    fragments = _fragments(bytes(elem.value or b""))
    size = sum(len(f) for f in fragments)
    if size == 0:
        raise DicomRejected("corrupt_pixel_data", "no video bitstream", CANNOT_UNDERSTAND)
    if size > settings.video_max_bytes:
        raise DicomRejected(
            "video_too_large_bytes",
            f"a bitstream of {size} bytes (at most {settings.video_max_bytes})",
            CANNOT_UNDERSTAND,
        )
    if suffix_of(_head(fragments), conformance.VIDEO_CODECS[ts]) is None:
        raise DicomRejected(
            "corrupt_pixel_data",
            "the bitstream does not start like a video container or stream",
            CANNOT_UNDERSTAND,
        )
    samples = int_attribute(ds, "SamplesPerPixel", required=False, default=3)
    bits = int_attribute(ds, "BitsAllocated", required=False, default=8)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()[:16]
    return Instance(ds, identity, ts, rows, columns, samples, frames, bits, photometric)


def is_video(instance: Instance) -> bool:
    """Whether the instance is a clip for the video path (not photos)."""
    return instance.identity.sop_class_uid in conformance.VIDEO_SOP_CLASSES


def _fragments(buffer: bytes) -> list[memoryview]:
    """The bitstream's pieces: every item after the Basic Offset Table, in order (views, no
    copies). Items that are not whole make the data corrupt (header.items_of)."""
    items = items_of(buffer)
    if len(items) < 2:  # the offset table item and at least one fragment
        raise DicomRejected("corrupt_pixel_data", "no pixel data fragments", CANNOT_UNDERSTAND)
    view = memoryview(buffer)
    return [view[offset : offset + length] for offset, length in items[1:]]


def fragments_of(instance: Instance) -> list[memoryview]:
    """The checked instance's bitstream fragments."""
    return _fragments(bytes(instance.dataset["PixelData"].value or b""))


def _head(fragments: list[memoryview]) -> bytes:
    out = bytearray()
    for fragment in fragments:
        out += fragment[: _HEAD - len(out)]
        if len(out) >= _HEAD:
            break
    return bytes(out)


def suffix_of(head: bytes, codec: str) -> str | None:
    """The file suffix for a bitstream that starts with `head` (FFmpeg probes by content; the
    suffix only helps it with elementary streams), or None when it starts like none of the
    forms PS3.5 and real senders use."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return ".mp4"  # ISO base media (MP4, QuickTime)
    if head[:1] == b"\x47" and (len(head) <= 188 or head[188:189] == b"\x47"):
        return ".ts"  # MPEG-2 transport stream (188-byte packets)
    if head[4:5] == b"\x47" and (len(head) <= 196 or head[196:197] == b"\x47"):
        return ".m2ts"  # BDAV transport stream (192-byte packets, the BD-compatible syntax)
    if head.startswith(b"\x00\x00\x01\xba"):
        return ".mpg"  # MPEG-2 program stream
    if head.startswith(b"\x00\x00\x01") or head.startswith(b"\x00\x00\x00\x01"):
        return {"mpeg2video": ".m2v", "hevc": ".hevc"}.get(codec, ".h264")  # elementary
    return None


def write_bitstream(instance: Instance, directory: Path) -> Path:
    """The joined fragments as a new file in `directory` (fsynced: it becomes the kept
    original). The caller removes it unless app.video.store moved it."""
    fragments = fragments_of(instance)
    suffix = suffix_of(_head(fragments), conformance.VIDEO_CODECS[instance.transfer_syntax])
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"dicom-{uuid.uuid4().hex}{suffix or '.bin'}"
    try:
        with open(path, "xb") as out:
            for fragment in fragments:
                out.write(fragment)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def probe_bitstream(path: Path, instance: Instance, settings: Settings) -> None:
    """Probe the written bitstream (first frame decoded, limits) and check its codec against
    the transfer syntax; DicomRejected (0xC000, the probe's code) when it fails."""
    from app.video.errors import VideoRejected
    from app.video.probe import probe

    try:
        info = probe(
            path,
            max_duration_s=settings.video_max_duration_s,
            max_pixels=settings.video_max_pixels,
        )
    except VideoRejected as exc:
        raise DicomRejected(exc.code, exc.message, CANNOT_UNDERSTAND) from None
    want = conformance.VIDEO_CODECS[instance.transfer_syntax]
    if info.codec not in _SAME_CODEC.get(want, {want}):
        raise DicomRejected(
            "codec_mismatch",
            f"the bitstream is {info.codec[:32]}, the transfer syntax says {want}",
            DATASET_MISMATCH,
        )


def checked_stream(instance: Instance, settings: Settings, directory: Path) -> None:
    """write_bitstream + probe_bitstream, the file removed after: for the C-STORE receiver,
    so that a bitstream that does not decode fails its C-STORE instead of the spool."""
    path = write_bitstream(instance, directory)
    try:
        probe_bitstream(path, instance, settings)
    finally:
        path.unlink(missing_ok=True)


# ---- storing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownVideo:
    """A video already received under a SOP Instance UID."""

    video_id: uuid.UUID
    procedure_id: uuid.UUID


class DicomVideo:
    """Checked Video Endoscopic instances -> Video rows + analysis jobs; thread-safe."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def known(self, sop_instance_uid: str) -> KnownVideo | None:
        """The video stored for this SOP Instance UID, if any (origin holds the UIDs)."""
        import sqlalchemy as sa

        from app.db.models import Video

        stmt = (
            sa.select(Video.id, Video.procedure_id)
            .where(Video.source == SOURCE)
            .where(Video.origin["sop_instance_uid"].as_string() == sop_instance_uid)
            .order_by(Video.created_at)
            .limit(1)
        )
        with self.rt.sessions() as session:
            row = session.execute(stmt).first()
        return KnownVideo(row[0], row[1]) if row else None

    def store(self, instance: Instance, source: str) -> StoredInstance:
        """Store the clip in the procedure (source, Study Instance UID) and start its analysis.

        Raises DicomRejected when the bitstream is refused (nothing stored, no procedure made);
        ProblemError for the service's faults (5xx: the spool retries, STOW answers them)."""
        from app.dicom.ingest import StoredInstance, procedure_for
        from app.services.errors import ProblemError
        from app.video.store import submit_video

        ident = instance.identity
        known = self.known(ident.sop_instance_uid)
        if known is not None:
            return StoredInstance(
                ident, known.procedure_id, [], duplicate=True, video_id=known.video_id
            )
        path = write_bitstream(instance, self.rt.settings.video_dir / INCOMING)
        try:
            probe_bitstream(path, instance, self.rt.settings)
            procedure_id = procedure_for(self.rt, source, ident)
            origin = {
                "study_uid": ident.study_uid,
                "series_uid": ident.series_uid,
                "sop_instance_uid": ident.sop_instance_uid,
            }
            try:
                submitted = submit_video(self.rt, procedure_id, path, source=SOURCE, origin=origin)
            except ProblemError as exc:
                if exc.status >= 500:
                    raise
                rejected = DicomRejected(exc.code, str(exc.detail), CANNOT_UNDERSTAND)
                raise rejected from exc
        finally:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)  # moved into video_dir when submitted
        video_id = submitted.video.id
        log.info(
            "DICOM video stored: video %s, %s", video_id, "new" if submitted.created else "known"
        )
        return StoredInstance(
            ident, procedure_id, [], duplicate=not submitted.created, video_id=video_id
        )
