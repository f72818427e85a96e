"""Frames: every kept frame becomes an RGB photo (or its own JPEG when Pillow reads it right)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
)

from app.dicom.errors import CANNOT_UNDERSTAND, DicomRejected
from app.dicom.frames import frame_uploads, jpeg_info, selected_frames
from app.dicom.header import read_instance
from app.services.ingest import Upload
from app.settings import Settings
from tests.app.dicom import factory


@pytest.fixture
def settings() -> Settings:
    return Settings()


def _rgb(upload: Upload) -> np.ndarray:
    """What the ingest will see: the decoded image, or the passed-on JPEG decoded by Pillow."""
    if upload.image is not None:
        return np.asarray(upload.image.convert("RGB"))
    with Image.open(io.BytesIO(upload.data)) as img:
        return np.asarray(img.convert("RGB"))


def _corpus_bytes(name: str) -> bytes:
    """A pydicom test file as a Secondary Capture with all UIDs (some lack a study UID)."""
    raw = factory.corpus_file(name).read_bytes()
    ds = dcmread(io.BytesIO(raw))
    if ds.SOPClassUID == SecondaryCaptureImageStorage and "StudyInstanceUID" in ds:
        return raw  # as shipped
    return factory.relabelled(ds)


def _reference(raw: bytes) -> np.ndarray:
    """pydicom's own decode (YBR -> RGB) of the first frame."""
    arr = dcmread(io.BytesIO(raw)).pixel_array
    return arr[0] if arr.ndim == 4 else arr


def _mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


# ---- selection -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "keep", "expected"),
    [
        (1, 16, [1]),
        (5, 16, [1, 2, 3, 4, 5]),
        (16, 16, list(range(1, 17))),
        (100, 1, [1]),
        (100, 2, [1, 100]),
        (10, 4, [1, 4, 7, 10]),
    ],
)
def test_selected_frames(frames: int, keep: int, expected: list[int]) -> None:
    assert selected_frames(frames, keep) == expected


def test_selection_is_even_and_bounded() -> None:
    for frames in (17, 50, 999, 10_000):
        for keep in (2, 3, 16):
            chosen = selected_frames(frames, keep)
            assert len(chosen) == keep and chosen[0] == 1 and chosen[-1] == frames
            gaps = np.diff(chosen)
            assert gaps.max() - gaps.min() <= 1


# ---- factory instances ----------------------------------------------------------------------


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_native_rgb_is_exact(settings: Settings, transfer_syntax: str) -> None:
    photo = factory.synthetic_photo(1)
    ds = factory.vl_endoscopic(photo, transfer_syntax=transfer_syntax)
    inst = read_instance(factory.to_bytes(ds), settings)
    (upload,) = frame_uploads(inst, settings)
    assert upload.image is not None and upload.image.mode == "RGB"
    assert upload.image.size == photo.size
    assert np.array_equal(np.asarray(upload.image), np.asarray(photo))
    assert upload.data == bytes(ds.PixelData)  # the content hash is over the raw frame
    assert upload.filename == f"{ds.SOPInstanceUID}#1"


def test_jpeg_baseline_passes_through_and_matches_pydicom(settings: Settings) -> None:
    """The JPEG is handed on as is; Pillow's decode of it equals pydicom's (YBR handled)."""
    for seed in range(3):
        photo = factory.synthetic_photo(seed, size=(320, 240))
        ds = factory.vl_endoscopic(photo, transfer_syntax=JPEGBaseline8Bit)
        raw = factory.to_bytes(ds)
        (upload,) = frame_uploads(read_instance(raw, settings), settings)
        assert upload.image is None
        assert upload.data.startswith(b"\xff\xd8")
        assert _mean_diff(_rgb(upload), _reference(raw)) < 1.0
        assert (
            _mean_diff(_rgb(upload), np.asarray(photo)) < 12.0
        )  # and it is the photo (noisy: JPEG loses some)


def test_hyperkvasir_jpeg_instance(settings: Settings, hyperkvasir_paths: list[Path]) -> None:
    with Image.open(hyperkvasir_paths[0]) as img:
        ds = factory.vl_endoscopic(img, transfer_syntax=JPEGBaseline8Bit)
    raw = factory.to_bytes(ds)
    (upload,) = frame_uploads(read_instance(raw, settings), settings)
    assert _mean_diff(_rgb(upload), _reference(raw)) < 1.0


def test_multiframe_all_and_evenly_selected(settings: Settings) -> None:
    photos = [factory.synthetic_photo(i, size=(48, 32)) for i in range(4)]
    raw = factory.to_bytes(factory.multiframe(photos))
    inst = read_instance(raw, settings)
    uploads = frame_uploads(inst, settings)
    assert [u.filename.rsplit("#", 1)[1] for u in uploads] == ["1", "2", "3", "4"]
    for upload, photo in zip(uploads, photos, strict=True):
        assert np.array_equal(_rgb(upload), np.asarray(photo))
    two = frame_uploads(inst, Settings(dicom_max_frames=2))
    assert [u.filename.rsplit("#", 1)[1] for u in two] == ["1", "4"]
    assert np.array_equal(_rgb(two[1]), np.asarray(photos[3]))


def test_multiframe_jpeg(settings: Settings) -> None:
    photos = [factory.synthetic_photo(i, size=(64, 48)) for i in range(3)]
    ds = factory.vl_endoscopic(photos[0], transfer_syntax=JPEGBaseline8Bit)
    jpegs = []
    for photo in photos:
        buf = io.BytesIO()
        photo.save(buf, format="JPEG", quality=92)
        jpegs.append(buf.getvalue())
    ds.PixelData = encapsulate(jpegs)
    ds.NumberOfFrames = 3
    uploads = frame_uploads(read_instance(factory.to_bytes(ds), settings), settings)
    assert [u.data.rstrip(b"\0") for u in uploads] == jpegs


def _grey(bits: int, photometric: str) -> bytes:
    ds = factory.vl_endoscopic(factory.synthetic_photo(2, size=(32, 16)))
    ramp = np.tile(np.arange(32), (16, 1))
    values = ramp * (4095 // 31) if bits == 16 else ramp * 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored = bits, 12 if bits == 16 else 8
    ds.HighBit = ds.BitsStored - 1
    del ds.PlanarConfiguration
    ds.PixelData = values.astype(np.uint16 if bits == 16 else np.uint8).tobytes()
    return factory.to_bytes(ds)


@pytest.mark.parametrize("bits", [8, 16])
def test_greyscale_becomes_rgb(settings: Settings, bits: int) -> None:
    (upload,) = frame_uploads(read_instance(_grey(bits, "MONOCHROME2"), settings), settings)
    rgb = _rgb(upload)
    assert rgb.shape == (16, 32, 3)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] >= 240  # dark left, bright right
    (inverted,) = frame_uploads(read_instance(_grey(bits, "MONOCHROME1"), settings), settings)
    assert np.array_equal(_rgb(inverted), 255 - rgb)


# ---- pydicom's corpus across transfer syntaxes ----------------------------------------------

# (file, reference file for the colours, tolerance of the mean absolute difference)
CORPUS = [
    ("SC_rgb_rle.dcm", "SC_rgb.dcm", 0.0),
    ("SC_rgb_rle_2frame.dcm", "SC_rgb_2frame.dcm", 0.0),
    ("SC_rgb_gdcm_KY.dcm", "SC_rgb.dcm", 0.5),
    ("SC_rgb_jls_lossy_line.dcm", "SC_rgb.dcm", 3.0),
    ("SC_rgb_jls_lossy_sample.dcm", "SC_rgb.dcm", 3.0),
    ("SC_ybr_full_uncompressed.dcm", "SC_rgb.dcm", 2.0),
    ("SC_ybr_full_422_uncompressed.dcm", "SC_rgb.dcm", 2.0),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb.dcm", 3.0),
    ("SC_rgb_dcmtk_+eb+cy+s4.dcm", "SC_rgb.dcm", 3.0),
    ("SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb.dcm", 3.0),
    ("SC_rgb_small_odd_jpeg.dcm", "SC_rgb_small_odd.dcm", 8.0),
    ("SC_rgb_2frame.dcm", "SC_rgb_2frame.dcm", 0.0),
]


@pytest.mark.parametrize(("name", "reference", "tolerance"), CORPUS)
def test_corpus_frames_decode_with_right_colours(
    settings: Settings, name: str, reference: str, tolerance: float
) -> None:
    raw = _corpus_bytes(name)
    inst = read_instance(raw, settings)
    uploads = frame_uploads(inst, settings)
    assert len(uploads) == inst.frames
    ref_ds = dcmread(factory.corpus_file(reference))
    ref = ref_ds.pixel_array
    refs = list(ref) if ref.ndim == 4 else [ref]
    for upload, expected in zip(uploads, refs, strict=True):
        got = _rgb(upload)
        assert got.shape == (inst.rows, inst.columns, 3)
        assert _mean_diff(got, expected) <= tolerance + 1e-9


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg.dcm",
        "SC_jpeg_no_color_transform.dcm",
        "SC_rgb_jpeg_app14_dcmd.dcm",
        "SC_rgb_jpeg_dcmd.dcm",
    ],
)
def test_rgb_jpegs_are_not_passed_to_pillow(settings: Settings, name: str) -> None:
    """RGB JPEGs without a colour transform: Pillow mis-colours them, so pydicom decodes."""
    raw = _corpus_bytes(name)
    (upload,) = frame_uploads(read_instance(raw, settings), settings)
    assert upload.image is not None
    assert _mean_diff(_rgb(upload), _reference(raw)) == 0.0


def test_every_passed_on_corpus_jpeg_matches_pydicom(settings: Settings) -> None:
    names = [
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "SC_rgb_dcmtk_+eb+cy+s2.dcm",
        "SC_rgb_dcmtk_+eb+cy+n1.dcm",
        "SC_rgb_dcmtk_+eb+cy+n2.dcm",
        "SC_rgb_jpeg_lossy_gdcm.dcm",
        "SC_rgb_small_odd_jpeg.dcm",
    ]
    for name in names:
        raw = _corpus_bytes(name)
        (upload,) = frame_uploads(read_instance(raw, settings), settings)
        assert upload.image is None, name
        assert _mean_diff(_rgb(upload), _reference(raw)) < 1.0, name


def test_jpeg2000_greyscale(settings: Settings) -> None:
    raw = _corpus_bytes("JPEG2000.dcm")
    inst = read_instance(raw, settings)
    (upload,) = frame_uploads(inst, settings)
    assert upload.image is not None and upload.image.size == (inst.columns, inst.rows)


# ---- failures ---------------------------------------------------------------------------------


def test_twelve_bit_jpeg_is_refused_before_decoding(settings: Settings) -> None:
    """JPEG-lossy.dcm: 12-bit JPEG Extended, which no non-GPL plugin decodes."""
    with pytest.raises(DicomRejected) as info:
        read_instance(_corpus_bytes("JPEG-lossy.dcm"), settings)
    assert info.value.code == "unsupported_pixel_format"


def _truncated_j2k() -> bytes:
    """A JPEG 2000 instance whose codestream stops after 200 bytes (markers still valid)."""
    ds = dcmread(io.BytesIO(_corpus_bytes("SC_rgb_gdcm_KY.dcm")))
    (codestream,) = generate_frames(ds.PixelData, number_of_frames=1)
    ds.PixelData = encapsulate([codestream[:200]])
    return factory.to_bytes(ds)


@pytest.mark.parametrize("case", ["JPEG2000-embedded-sequence-delimiter.dcm", "truncated-j2k"])
def test_codestreams_that_do_not_decode(settings: Settings, case: str) -> None:
    raw = _truncated_j2k() if case == "truncated-j2k" else _corpus_bytes(case)
    with pytest.raises(DicomRejected) as info:  # the header check (codestream's SIZ) or codec
        frame_uploads(read_instance(raw, settings), settings)
    assert (info.value.code, info.value.status) == ("corrupt_pixel_data", CANNOT_UNDERSTAND)


def test_garbage_jpeg_fragment(settings: Settings) -> None:
    ds = factory.vl_endoscopic(factory.synthetic_photo(4), transfer_syntax=JPEGBaseline8Bit)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8])
    with pytest.raises(DicomRejected) as info:  # no SOF: the header check refuses it
        frame_uploads(read_instance(factory.to_bytes(ds), settings), settings)
    assert info.value.code == "corrupt_pixel_data"


def test_jpeg_with_wrong_size_is_decoded_not_passed(settings: Settings) -> None:
    """A JPEG whose SOF disagrees with Rows/Columns is refused (by the header check, which
    compares the frame's SOF with Rows/Columns before any codec runs)."""
    ds = factory.vl_endoscopic(
        factory.synthetic_photo(4, size=(64, 48)), transfer_syntax=JPEGBaseline8Bit
    )
    ds.Rows = 50
    with pytest.raises(DicomRejected) as info:
        frame_uploads(read_instance(factory.to_bytes(ds), settings), settings)
    assert info.value.code == "corrupt_pixel_data"


def test_jpeg_info() -> None:
    buf = io.BytesIO()
    factory.synthetic_photo(0, size=(40, 30)).save(buf, format="JPEG")
    info = jpeg_info(buf.getvalue())
    assert info is not None
    assert (info["width"], info["height"], info["components"], info["precision"]) == (40, 30, 3, 8)
    assert info["jfif"] is True
    assert jpeg_info(b"not a jpeg") is None
    assert jpeg_info(b"\xff\xd8\xff\xc0\x00") is None
    progressive = io.BytesIO()
    factory.synthetic_photo(0, size=(40, 30)).save(progressive, format="JPEG", progressive=True)
    assert jpeg_info(progressive.getvalue()) is None  # not baseline: never passed on


def test_whole_corpus_decodes_or_is_rejected(settings: Settings) -> None:
    """Every accepted pydicom/pydicom-data file: right-sized RGB photos or DicomRejected."""
    from tests.app.dicom.test_header import _all_corpus_files

    decoded = 0
    for path in _all_corpus_files():
        try:
            inst = read_instance(path.read_bytes(), settings)
            uploads = frame_uploads(inst, settings)
        except DicomRejected:
            continue
        decoded += 1
        assert len(uploads) == min(inst.frames, settings.dicom_max_frames)
        for upload in uploads:
            assert _rgb(upload).shape == (inst.rows, inst.columns, 3), path.name
    assert decoded >= 10
