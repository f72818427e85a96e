"""Header first, pixels second: parse an instance and check it before anything decodes pixels.

WHY: a C-STORE or STOW part is untrusted input. Every check here reads attributes and walks the
encapsulation items only (no codec runs), so a header claiming a 65535x65535 image over a few
bytes, truncated pixel data, a deeply nested sequence or garbage all end as a DicomRejected with
a stable code - never another exception, never a multi-gigabyte allocation.

Accepted pixel formats (documented in docs/dicom.md): 1 or 3 samples; BitsAllocated 8, or 16 for
greyscale only (JPEG Extended 12-bit, 16-bit monochrome: frames.py scales to 8 bits); the
photometric interpretations in conformance.PHOTOMETRICS. Modality is not checked beyond the SOP
class: Secondary Capture arrives as ES, XC or OT in the wild and all of them are photos.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from io import BytesIO

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_fragmented_frames
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGExtended12Bit

from app.dicom import conformance
from app.dicom.errors import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    SOP_CLASS_NOT_SUPPORTED,
    TRANSFER_SYNTAX_NOT_SUPPORTED,
    DicomRejected,
)
from app.dicom.identity import Identity, identity_of, number_of_frames
from app.dicom.jpeg_markers import JPEG_LS_SOF, SOS, is_frame_header, marker_segments
from app.settings import Settings


def quiet_pydicom() -> None:
    """pydicom's value-validation warnings quote the offending value (a patient name, say) and
    also log it on the 'pydicom' logger: turn validation on reading off and keep that logger at
    ERROR, so no attribute value reaches our logs. Idempotent; run at import."""
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.ERROR)


quiet_pydicom()


@dataclass
class Instance:
    """A checked instance: attributes read, pixel data still the raw (encoded) bytes."""

    dataset: Dataset
    identity: Identity
    transfer_syntax: str
    rows: int
    columns: int
    samples: int
    frames: int
    bits_allocated: int
    photometric: str = ""

    @property
    def encapsulated(self) -> bool:
        """Compressed pixel data (fragments) rather than native."""
        return self.transfer_syntax not in conformance.NATIVE_TRANSFER_SYNTAXES


def read_instance(data: bytes, settings: Settings) -> Instance:
    """Part 10 bytes (or a bare dataset without file meta: little endian guessed, encapsulated
    pixel data then refused since its codec is unknown) -> a checked Instance."""
    try:
        ds = dcmread(BytesIO(data), force=True)
        _fill_transfer_syntax(ds)
        return _checked(ds, settings, dimse=False)
    except DicomRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - RecursionError, MemoryError, struct.error, ...
        raise _cannot_understand(exc) from None


def instance_from_dataset(ds: Dataset, settings: Settings) -> Instance:
    """The same checks for pynetdicom's event.dataset (the caller sets ds.file_meta from
    event.file_meta). A transfer syntax we do not take answers 0xA900 here (DIMSE has no
    0xC122; the association should not have accepted it in the first place)."""
    try:
        if not isinstance(getattr(ds, "file_meta", None), FileMetaDataset):
            ds.file_meta = FileMetaDataset()
        _fill_transfer_syntax(ds)
        return _checked(ds, settings, dimse=True)
    except DicomRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - as in read_instance
        raise _cannot_understand(exc) from None


def _cannot_understand(exc: BaseException) -> DicomRejected:
    # Only the exception's type: its text may quote attribute values.
    return DicomRejected(
        "cannot_understand", f"cannot parse the data set ({type(exc).__name__})", CANNOT_UNDERSTAND
    )


def _fill_transfer_syntax(ds: Dataset) -> None:
    """No TransferSyntaxUID in the meta: take the encoding pydicom detected (native only)."""
    if ds.file_meta.get("TransferSyntaxUID"):
        return
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is False:
        raise syntax_rejected("explicit VR big endian (retired)", dimse=False)
    ts = ImplicitVRLittleEndian if implicit in (True, None) else ExplicitVRLittleEndian
    ds.file_meta.TransferSyntaxUID = ts


def syntax_rejected(what: str, *, dimse: bool) -> DicomRejected:
    status = DATASET_MISMATCH if dimse else TRANSFER_SYNTAX_NOT_SUPPORTED
    return DicomRejected(
        "transfer_syntax_not_supported", f"transfer syntax not supported: {what}", status
    )


def _checked(ds: Dataset, settings: Settings, *, dimse: bool) -> Instance:
    """All checks, in order of cheapness; pixel data is only sliced, never decoded."""
    _walk(ds)
    sop_class = str(ds.get("SOPClassUID", "") or "").strip()
    if sop_class in conformance.VIDEO_SOP_CLASSES:
        from app.dicom.video import checked_video  # video.py builds on this module

        return checked_video(ds, settings, dimse=dimse)
    if sop_class in conformance.REFUSED_VIDEO_SOP_CLASSES:
        raise DicomRejected(
            "video_not_supported",
            f"{conformance.REFUSED_VIDEO_SOP_CLASSES[sop_class]} is not stored",
            SOP_CLASS_NOT_SUPPORTED,
        )
    if sop_class not in conformance.STILL_SOP_CLASSES:
        name = UID(sop_class).name if sop_class and UID(sop_class).is_valid else "unknown"
        raise DicomRejected(
            "sop_class_not_supported", f"SOP class not supported: {name}", SOP_CLASS_NOT_SUPPORTED
        )
    ts = str(ds.file_meta.TransferSyntaxUID)
    if ts not in conformance.TRANSFER_SYNTAXES:
        raise syntax_rejected(ts if UID(ts).is_valid else "invalid UID", dimse=dimse)
    identity = identity_of(ds, settings)
    inst = _pixel_module(ds, settings, identity, ts)
    if inst.encapsulated:
        check_fragments(inst)
    else:
        _check_native_length(inst)
    return inst


def _walk(ds: Dataset) -> None:
    """Convert every public element once, so a malformed value or sequence fails here (as
    cannot_understand) and not later in deid or ingest. Private elements are skipped: deid
    removes them unread."""
    for elem in ds:
        if elem.tag.is_private:
            continue
        value = elem.value
        if elem.VR == "SQ":
            for item in value:
                _walk(item)


def int_attribute(ds: Dataset, keyword: str, *, required: bool = True, default: int = 0) -> int:
    """An integer attribute; absent or malformed -> DicomRejected (0xA900)."""
    raw = ds.get(keyword)
    if raw is None or str(raw).strip() == "":
        if required:
            raise DicomRejected("missing_attribute", f"{keyword} is missing", DATASET_MISMATCH)
        return default
    try:
        return int(str(raw).strip())
    except ValueError:
        raise DicomRejected(
            "invalid_attribute", f"{keyword} is not an integer", DATASET_MISMATCH
        ) from None


def _pixel_module(ds: Dataset, settings: Settings, identity: Identity, ts: str) -> Instance:
    """Image Pixel module attributes against our limits (cheapest checks first)."""
    if "PixelData" not in ds:
        raise DicomRejected("no_pixel_data", "the instance has no Pixel Data", DATASET_MISMATCH)
    rows, columns = int_attribute(ds, "Rows"), int_attribute(ds, "Columns")
    samples = int_attribute(ds, "SamplesPerPixel")
    bits = int_attribute(ds, "BitsAllocated")
    bits_stored = int_attribute(ds, "BitsStored", required=False, default=bits)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    frames = number_of_frames(ds)
    if rows <= 0 or columns <= 0 or frames <= 0:
        raise DicomRejected(
            "invalid_attribute", "Rows, Columns and frames must be positive", DATASET_MISMATCH
        )
    if frames > conformance.MAX_FRAMES:
        raise DicomRejected(
            "too_many_frames",
            f"{frames} frames (at most {conformance.MAX_FRAMES})",
            CANNOT_UNDERSTAND,
        )
    if rows * columns > settings.max_pixels:
        raise DicomRejected(
            "image_too_large",
            f"{columns}x{rows} pixels per frame (at most {settings.max_pixels})",
            CANNOT_UNDERSTAND,
        )
    if samples not in (1, 3) or bits not in (8, 16) or (bits == 16 and samples != 1):
        raise DicomRejected(
            "unsupported_pixel_format",
            f"{samples} samples of {bits} bits are not supported (8-bit colour, 8/16-bit grey)",
            CANNOT_UNDERSTAND,
        )
    if not 1 <= bits_stored <= bits:
        raise DicomRejected("invalid_attribute", "BitsStored out of range", DATASET_MISMATCH)
    if ts == JPEGExtended12Bit and bits_stored > 8:
        # only pylibjpeg-libjpeg (GPL, left out) decodes 12-bit JPEG; say so before decoding
        raise DicomRejected(
            "unsupported_pixel_format", "12-bit JPEG Extended is not supported", CANNOT_UNDERSTAND
        )
    if photometric not in conformance.PHOTOMETRICS:
        raise DicomRejected(
            "unsupported_pixel_format",
            f"photometric interpretation {photometric[:16] or 'missing'} is not supported",
            CANNOT_UNDERSTAND,
        )
    if (samples == 1) != photometric.startswith("MONOCHROME"):
        raise DicomRejected(
            "invalid_attribute",
            f"{samples} samples do not fit {photometric}",
            DATASET_MISMATCH,
        )
    return Instance(ds, identity, ts, rows, columns, samples, frames, bits, photometric)


def frame_bytes(inst: Instance) -> int:
    """Bytes of one native frame (YBR_FULL_422 native is 2 bytes per pixel, PS3.3 C.7.6.3)."""
    pixels = inst.rows * inst.columns
    if inst.photometric == "YBR_FULL_422" and inst.samples == 3:
        return pixels * 2 * inst.bits_allocated // 8
    return pixels * inst.samples * inst.bits_allocated // 8


def _check_native_length(inst: Instance) -> None:
    """Native pixel data must hold exactly the frames the header claims (plus the pad byte)."""
    elem = inst.dataset["PixelData"]
    if elem.is_undefined_length:
        raise DicomRejected(
            "pixel_data_mismatch", "encapsulated pixel data in a native syntax", DATASET_MISMATCH
        )
    expected = frame_bytes(inst) * inst.frames
    got = len(elem.value or b"")
    if got not in (expected, expected + expected % 2):
        raise DicomRejected(
            "pixel_data_mismatch",
            f"pixel data holds {got} bytes, the header implies {expected}",
            DATASET_MISMATCH,
        )


_ITEM = 0xFFFEE000
# Fragments (plus the offset table item) we walk at most: a still has a handful per frame; a
# part of millions of empty items is an attack on the parser's time.
MAX_ITEMS = 100_000
_SEQ_END = 0xFFFEE0DD


def items_of(buffer: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each item's value in an encapsulated Pixel Data value; every item
    must be a whole (FFFE,E000) item inside the buffer, or the data is corrupt."""
    out: list[tuple[int, int]] = []
    pos, end = 0, len(buffer)
    while pos + 8 <= end:
        group, element, length = struct.unpack_from("<HHL", buffer, pos)
        tag = group << 16 | element
        if tag == _SEQ_END:
            break
        if tag != _ITEM or length == 0xFFFFFFFF or pos + 8 + length > end:
            raise DicomRejected(
                "corrupt_pixel_data", "malformed encapsulated pixel data", CANNOT_UNDERSTAND
            )
        out.append((pos + 8, length))
        if len(out) > MAX_ITEMS:
            raise DicomRejected(
                "corrupt_pixel_data", "too many pixel data fragments", CANNOT_UNDERSTAND
            )
        pos += 8 + length
    if pos != end and pos + 8 > end:
        raise DicomRejected(
            "corrupt_pixel_data", "trailing bytes in encapsulated pixel data", CANNOT_UNDERSTAND
        )
    return out


def encapsulated_frames(inst: Instance) -> list[list[bytes]]:
    """The fragments of each frame (pydicom's split: basic/extended offset table, else one
    fragment per frame, else JPEG EOI markers). Cheap: slices only, no codec."""
    elem = inst.dataset["PixelData"]
    if not elem.is_undefined_length:
        raise DicomRejected(
            "pixel_data_mismatch", "native pixel data in a compressed syntax", DATASET_MISMATCH
        )
    buffer = bytes(elem.value or b"")
    items = items_of(buffer)
    if len(items) < 2:  # the basic offset table item and at least one fragment
        raise DicomRejected("corrupt_pixel_data", "no pixel data fragments", CANNOT_UNDERSTAND)
    ds = inst.dataset
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    try:
        frames = [
            list(f)
            for f in generate_fragmented_frames(
                buffer, number_of_frames=inst.frames, extended_offsets=extended
            )
        ]
    except DicomRejected:
        raise
    except Exception:  # noqa: BLE001 - bad offsets, unsplittable fragments
        raise DicomRejected(
            "corrupt_pixel_data", "cannot split the fragments into frames", CANNOT_UNDERSTAND
        ) from None
    if len(frames) < inst.frames:
        raise DicomRejected(
            "pixel_data_mismatch",
            f"{len(frames)} encoded frames, the header claims {inst.frames}",
            DATASET_MISMATCH,
        )
    return frames[: inst.frames]


def check_fragments(inst: Instance) -> None:
    """Every frame has bytes, and they start like the codec the transfer syntax names."""
    for fragments in encapsulated_frames(inst):
        head = fragments[0][:12] if fragments else b""
        if not head or not _looks_like(inst, head, fragments):
            raise DicomRejected(
                "corrupt_pixel_data",
                "a frame does not start with the codec's marker",
                CANNOT_UNDERSTAND,
            )
        if inst.transfer_syntax in conformance.JPEG_LS_TRANSFER_SYNTAXES and not _ends_jpeg(
            fragments
        ):
            raise DicomRejected(
                "corrupt_pixel_data",
                "a JPEG-LS frame does not end with an EOI marker (truncated)",
                CANNOT_UNDERSTAND,
            )
        if fragments[0].startswith(_JP2_SIGNATURE) and not _jp2_boxes_ok(b"".join(fragments)):
            raise DicomRejected(
                "corrupt_pixel_data", "a JP2 frame has malformed boxes", CANNOT_UNDERSTAND
            )
        if inst.transfer_syntax not in conformance.RLE_TRANSFER_SYNTAXES:
            _check_codestream_shape(inst, fragments)


def _jp2_boxes_ok(data: bytes) -> bool:
    """A JP2-wrapped JPEG 2000 frame (not conformant in DICOM, but sent): every box before the
    codestream box (jp2c) is whole and at least a box header long. WHY: pydicom 3.0's
    get_j2k_parameters walks these boxes with `offset += length` and loops forever on a zero
    length (found by tests/app/dicom/test_decode_fuzz.py); this walk takes the same steps."""
    pos = 0
    while pos + 8 <= len(data):
        if data[pos + 4 : pos + 8] == b"jp2c":
            return True
        length = int.from_bytes(data[pos : pos + 4], "big")
        if length < 8:
            return False
        pos += length
    return False


def _check_codestream_shape(inst: Instance, fragments: list[bytes]) -> None:
    """The codec allocates what the frame's own header (JPEG/JPEG-LS SOF, JPEG 2000 SIZ) says,
    not what Rows/Columns say: a 4 KB JPEG-LS frame claiming 20000x20000 makes pyjpegls
    allocate gigabytes. So it must agree with the checked header before any codec runs."""
    shape = _codestream_shape(inst.transfer_syntax, fragments[0])
    if shape is None and len(fragments) > 1:
        shape = _codestream_shape(inst.transfer_syntax, b"".join(fragments))
    if shape != (inst.rows, inst.columns, inst.samples):
        got = "unreadable" if shape is None else "{1}x{0} with {2} components".format(*shape)
        raise DicomRejected(
            "corrupt_pixel_data",
            f"a frame's codestream is {got}, the header says {inst.columns}x{inst.rows} "
            f"with {inst.samples} samples",
            CANNOT_UNDERSTAND,
        )


_SIZ = b"\xff\x4f\xff\x51"  # JPEG 2000 SOC then SIZ


def _codestream_shape(ts: str, data: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) from a JPEG, JPEG-LS or JPEG 2000 frame header; None when
    there is none before the first scan or the bytes end first."""
    try:
        if ts in conformance.JPEG_2000_TRANSFER_SYNTAXES:
            pos = data.find(_SIZ)  # at 0 for a codestream, inside the jp2c box for JP2
            if pos < 0:
                return None
            x, y, x0, y0 = struct.unpack_from(">IIII", data, pos + 8)
            (components,) = struct.unpack_from(">H", data, pos + 40)
            return y - y0, x - x0, components
        for marker, pos, _ in marker_segments(data):
            if is_frame_header(marker) or marker == JPEG_LS_SOF:
                _, height, width, components = struct.unpack_from(">BHHB", data, pos + 4)
                return height, width, components
            if marker == SOS:  # a scan before any frame header
                return None
    except struct.error:
        return None
    return None


def _ends_jpeg(fragments: list[bytes]) -> bool:
    """The frame ends with EOI (FFD9), then at most zero padding. WHY for JPEG-LS: CharLS
    (pyjpegls 1.5) spends 4-12 s of CPU per frame on a stream that ends without a marker
    (tests/app/dicom/test_decode_fuzz.py), so 16 truncated frames would pin a worker for
    minutes; with any marker at the end it fails at once. Encoders always write EOI."""
    tail = b"".join(f[-64:] for f in fragments[-2:])[-64:]
    return tail.rstrip(b"\x00").endswith(b"\xff\xd9")


_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def _looks_like(inst: Instance, head: bytes, fragments: list[bytes]) -> bool:
    """Cheap magic-number sanity check of a frame's first bytes."""
    ts = inst.transfer_syntax
    if ts in conformance.JPEG_TRANSFER_SYNTAXES or ts in conformance.JPEG_LS_TRANSFER_SYNTAXES:
        return head.startswith(b"\xff\xd8")
    if ts in conformance.JPEG_2000_TRANSFER_SYNTAXES:
        return head.startswith(b"\xff\x4f\xff\x51") or head.startswith(_JP2_SIGNATURE)
    if ts in conformance.RLE_TRANSFER_SYNTAXES:
        first = fragments[0]
        if len(first) < 64:
            return False
        segments = struct.unpack_from("<L", first, 0)[0]
        return segments == inst.samples * inst.bits_allocated // 8
    return False
