"""VL Endoscopic (and other) instances made with pydicom for the DICOM tests.

Every instance carries patient attributes (name, id, birth date, accession, physicians,
institution, descriptions) so that tests can prove none of them is kept anywhere.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    VLEndoscopicImageStorage,
    generate_uid,
)

from tests.paths import SHARED_DATA

# Values that must never appear in the database, files or logs.
PHI = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "PID-7731-SECRET",
    "PatientBirthDate": "19610214",
    "AccessionNumber": "ACC-99123",
    "InstitutionName": "Saint Secret Hospital",
    "ReferringPhysicianName": "Who^Doctor",
    "PerformingPhysicianName": "Scope^Ann",
    "OperatorsName": "Nurse^Ratched",
    "ImageComments": "patient Jane Doe, nervous",
}


def hyperkvasir_photos() -> list[Path]:
    """The real photos in ../shared/data (sorted, so tests are deterministic)."""
    found = (SHARED_DATA / "hyperkvasir").rglob("*")
    return sorted(p for p in found if p.suffix.lower() in {".jpg", ".jpeg"})


def synthetic_photo(seed: int = 0, size: tuple[int, int] = (320, 256)) -> Image.Image:
    """An endoscopy-like photo: a bright textured disc on a black surround."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    base = rng.integers(60, 200, size=3)
    noise = rng.normal(0, 18, size=(h, w, 3))
    waves = 30 * np.sin(xx[..., None] / (7 + seed % 5) + np.arange(3))
    img = np.clip(base + noise + waves, 0, 255)
    img[r > 0.95] = 0
    return Image.fromarray(img.astype(np.uint8), "RGB")


def _base(sop_class: str, study_uid: str | None, series_uid: str | None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = "ES"
    ds.StudyDate = "20261130"
    ds.StudyTime = "101500"
    ds.ContentDate = "20261130"
    ds.ContentTime = "102233.250"
    ds.TimezoneOffsetFromUTC = "+0100"
    ds.StudyDescription = "Gastroscopy"
    ds.SeriesDescription = "Photo documentation"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    return ds


def vl_endoscopic(
    image: Image.Image,
    *,
    transfer_syntax: str = ExplicitVRLittleEndian,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_class: str = VLEndoscopicImageStorage,
    description: str = "Gastroscopy",
    quality: int = 92,
) -> Dataset:
    """A single-frame true-colour instance of `image` (native RGB or JPEG Baseline YBR)."""
    rgb = image.convert("RGB")
    ds = _base(sop_class, study_uid, series_uid)
    ds.StudyDescription = description
    ds.Rows, ds.Columns = rgb.height, rgb.width
    ds.SamplesPerPixel = 3
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PlanarConfiguration = 0
    ds.BurnedInAnnotation = "NO"
    if transfer_syntax == JPEGBaseline8Bit:
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=quality)
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True  # encapsulated: as on the wire
        ds.LossyImageCompression = "01"
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = np.asarray(rgb).tobytes()
    return with_meta(ds, transfer_syntax)


def multiframe(images: list[Image.Image], **kw: object) -> Dataset:
    """A native multi-frame true-colour Secondary Capture of equally sized `images`."""
    from pydicom.uid import MultiFrameTrueColorSecondaryCaptureImageStorage

    ds = vl_endoscopic(images[0], sop_class=MultiFrameTrueColorSecondaryCaptureImageStorage, **kw)
    ds.NumberOfFrames = len(images)
    ds.PixelData = b"".join(np.asarray(i.convert("RGB")).tobytes() for i in images)
    return ds


def secondary_capture(image: Image.Image, **kw: object) -> Dataset:
    """Secondary Capture with Modality ES, as some bronchoscopy/endoscopy systems send."""
    return vl_endoscopic(image, sop_class=SecondaryCaptureImageStorage, **kw)


def jpeg_frames(ds: Dataset) -> list[bytes]:
    """The encapsulated JPEG stream of each frame (one fragment per frame)."""
    from pydicom.encaps import generate_frames

    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))


def with_meta(ds: Dataset, transfer_syntax: str) -> Dataset:
    """Attach the file meta a Part 10 file needs."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """The instance as a Part 10 file."""
    buf = io.BytesIO()
    implicit = ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    ds.save_as(buf, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return buf.getvalue()


def corpus_file(name: str) -> Path:
    """A file of pydicom's test corpus (pydicom-data, never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} missing (pydicom-data installed?)"
    return Path(path)


def relabelled(ds: Dataset) -> bytes:
    """`ds` as a Secondary Capture Part 10 file with all three UIDs (some corpus files lack a
    study UID), so that the checks after the SOP class run."""
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if keyword not in ds:
            setattr(ds, keyword, generate_uid())
    return to_bytes(ds)


def write(ds: Dataset, path: Path) -> Path:
    """Write the instance as a Part 10 file at `path`."""
    path.write_bytes(to_bytes(ds))
    return path


def content_time(ds: Dataset) -> datetime:
    """ContentDate/ContentTime with the offset, as EndoSeek should read it."""
    raw = f"{ds.ContentDate}{ds.ContentTime}{ds.TimezoneOffsetFromUTC}"
    return datetime.strptime(raw, "%Y%m%d%H%M%S.%f%z")


def video_endoscopic(
    bitstream: bytes,
    size: tuple[int, int],
    frames: int,
    fps: float,
    *,
    transfer_syntax: str = "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 HP / Level 4.1
    study_uid: str | None = None,
    fragments: int = 1,
) -> Dataset:
    """A Video Endoscopic instance carrying `bitstream` (an MP4, a transport stream, ...) in
    encapsulated Pixel Data: one fragment, or `fragments` pieces for the Fragmentable syntaxes;
    the Basic Offset Table empty, as PS3.5 8.2 requires for the MPEG syntaxes."""
    from pydicom.uid import VideoEndoscopicImageStorage

    ds = _base(VideoEndoscopicImageStorage, study_uid, None)
    ds.StudyDescription = "Colonoscopy"
    ds.SeriesDescription = "Procedure video"
    ds.Columns, ds.Rows = size
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = frames
    ds.FrameTime = f"{1000.0 / fps:.3f}"
    ds.CineRate = round(fps)
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.LossyImageCompression = "01"
    ds.BurnedInAnnotation = "NO"
    step = -(-len(bitstream) // fragments)
    step += step % 2  # even, so that only the last piece needs the pad byte
    pieces = [bitstream[i : i + step] for i in range(0, len(bitstream), step)]
    items = [b"\xfe\xff\x00\xe0\x00\x00\x00\x00"]  # the empty Basic Offset Table
    for piece in pieces:
        piece += b"\x00" * (len(piece) % 2)  # even item lengths: the last one padded
        items.append(b"\xfe\xff\x00\xe0" + len(piece).to_bytes(4, "little") + piece)
    ds.PixelData = b"".join(items)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return with_meta(ds, transfer_syntax)
