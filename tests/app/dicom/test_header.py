"""Header checks: every bad instance is a DicomRejected with a stable code, before any decode."""

from __future__ import annotations

import logging
import struct
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.data import data_manager
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    VideoPhotographicImageStorage,
    VLPhotographicImageStorage,
)

from app.dicom import conformance
from app.dicom.errors import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    SOP_CLASS_NOT_SUPPORTED,
    TRANSFER_SYNTAX_NOT_SUPPORTED,
    DicomRejected,
)
from app.dicom.header import Instance, instance_from_dataset, read_instance
from app.settings import Settings
from tests.app.dicom import factory


@pytest.fixture
def settings() -> Settings:
    return Settings()


def _photo(seed: int = 0) -> Dataset:
    return factory.vl_endoscopic(factory.synthetic_photo(seed, size=(64, 48)))


def _patched(raw: bytes, old: bytes, new: bytes) -> bytes:
    """Edit encoded bytes (for values pydicom itself refuses to write)."""
    assert raw.count(old) == 1 and len(old) == len(new)
    return raw.replace(old, new)


def _with_frames_text(text: bytes) -> bytes:
    """A Part 10 photo whose NumberOfFrames (IS, 2 bytes) holds `text`."""
    ds = _photo()
    ds.NumberOfFrames = "1"
    raw = factory.to_bytes(ds)
    element = struct.pack("<HH2sH", 0x0028, 0x0008, b"IS", 2)
    if len(text) != 2:
        padded = text + b" " * (len(text) % 2)
        head, tail = raw.split(element + b"1 ")
        return head + struct.pack("<HH2sH", 0x0028, 0x0008, b"IS", len(padded)) + padded + tail
    return _patched(raw, element + b"1 ", element + text)


def _rejected(data: bytes, settings: Settings) -> DicomRejected:
    with pytest.raises(DicomRejected) as info:
        read_instance(data, settings)
    return info.value


def _relabelled(name: str) -> bytes:
    """A pydicom test file as a Secondary Capture, so the checks after the SOP class run."""
    return factory.relabelled(dcmread(factory.corpus_file(name), force=True))


# ---- good instances ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit]
)
def test_factory_instances_pass(settings: Settings, transfer_syntax: str) -> None:
    ds = factory.vl_endoscopic(factory.synthetic_photo(1), transfer_syntax=transfer_syntax)
    inst = read_instance(factory.to_bytes(ds), settings)
    assert isinstance(inst, Instance)
    assert inst.transfer_syntax == transfer_syntax
    assert (inst.rows, inst.columns, inst.samples, inst.frames) == (256, 320, 3, 1)
    assert inst.bits_allocated == 8
    assert inst.encapsulated == (transfer_syntax == JPEGBaseline8Bit)
    assert inst.identity.sop_instance_uid == ds.SOPInstanceUID
    assert inst.identity.study_uid == ds.StudyInstanceUID
    assert inst.identity.kind == "upper_gi"
    assert inst.identity.modality == "ES"


def test_multiframe_secondary_capture_and_photographic(settings: Settings) -> None:
    photos = [factory.synthetic_photo(i, size=(40, 30)) for i in range(4)]
    inst = read_instance(factory.to_bytes(factory.multiframe(photos)), settings)
    assert inst.frames == 4 and inst.identity.frames == 4
    sc = factory.secondary_capture(photos[0])
    assert read_instance(factory.to_bytes(sc), settings).identity.sop_class_uid == sc.SOPClassUID
    vlp = factory.vl_endoscopic(photos[0], sop_class=VLPhotographicImageStorage)
    assert read_instance(factory.to_bytes(vlp), settings).rows == 30


def test_no_pixel_decode_while_checking(settings: Settings, monkeypatch) -> None:
    """The header check must never call a codec."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixel data decoded during the header check")

    monkeypatch.setattr(Decoder, "as_array", boom)
    monkeypatch.setattr(Decoder, "iter_array", boom)
    monkeypatch.setattr(Decoder, "as_buffer", boom)
    for ts in (ExplicitVRLittleEndian, JPEGBaseline8Bit):
        ds = factory.vl_endoscopic(factory.synthetic_photo(2), transfer_syntax=ts)
        read_instance(factory.to_bytes(ds), settings)


def test_dataset_without_file_meta_is_read(settings: Settings) -> None:
    """A bare data set (no preamble, no meta): native little endian is guessed."""
    for implicit in (True, False):
        ds = _photo()
        ds.file_meta = FileMetaDataset()
        buf = BytesIO()
        ds.save_as(buf, implicit_vr=implicit, little_endian=True)  # no file meta written
        raw = buf.getvalue()
        assert b"DICM" not in raw[:132]
        inst = read_instance(raw, settings)
        expected = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        assert inst.transfer_syntax == expected


def test_instance_from_dataset(settings: Settings) -> None:
    src = _photo()
    ds = dcmread(BytesIO(factory.to_bytes(src)))
    meta = ds.file_meta
    del ds.file_meta  # pynetdicom hands dataset and file meta separately
    ds.file_meta = meta
    inst = instance_from_dataset(ds, settings)
    assert inst.identity.sop_instance_uid == src.SOPInstanceUID


# ---- SOP class, transfer syntax, UIDs -----------------------------------------------------


def test_video_and_other_sop_classes(settings: Settings) -> None:
    ds = _photo()
    ds.SOPClassUID = VideoPhotographicImageStorage  # Video Endoscopic: test_video.py
    err = _rejected(factory.to_bytes(ds), settings)
    assert (err.code, err.status) == ("video_not_supported", SOP_CLASS_NOT_SUPPORTED)
    ds.SOPClassUID = CTImageStorage
    err = _rejected(factory.to_bytes(ds), settings)
    assert (err.code, err.status) == ("sop_class_not_supported", SOP_CLASS_NOT_SUPPORTED)
    del ds.SOPClassUID
    assert _rejected(factory.to_bytes(ds), settings).code == "sop_class_not_supported"


def test_transfer_syntax_not_supported(settings: Settings) -> None:
    err = _rejected(factory.corpus_file("image_dfl.dcm").read_bytes(), settings)  # deflated
    assert (err.code, err.status) == (
        "transfer_syntax_not_supported",
        TRANSFER_SYNTAX_NOT_SUPPORTED,
    )
    assert DeflatedExplicitVRLittleEndian not in conformance.TRANSFER_SYNTAXES
    # DIMSE has no 0xC122: the same refusal answers 0xA900 there
    ds = dcmread(BytesIO(factory.to_bytes(_photo())))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2
    with pytest.raises(DicomRejected) as info:
        instance_from_dataset(ds, settings)
    assert (info.value.code, info.value.status) == (
        "transfer_syntax_not_supported",
        DATASET_MISMATCH,
    )


def test_big_endian_without_meta_is_refused(settings: Settings) -> None:
    err = _rejected(factory.corpus_file("ExplVR_BigEndNoMeta.dcm").read_bytes(), settings)
    assert err.code in {"transfer_syntax_not_supported", "sop_class_not_supported"}


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_missing_or_invalid_uid(settings: Settings, keyword: str) -> None:
    ds = _photo()
    delattr(ds, keyword)
    err = _rejected(factory.to_bytes(ds), settings)
    assert (err.code, err.status) == ("missing_attribute", DATASET_MISMATCH)
    ds = _photo()
    setattr(ds, keyword, "1.2.abc")
    err = _rejected(factory.to_bytes(ds), settings)
    assert (err.code, err.status) == ("invalid_attribute", DATASET_MISMATCH)


# ---- pixel module ------------------------------------------------------------------------


def test_no_pixel_data(settings: Settings) -> None:
    ds = _photo()
    del ds.PixelData
    assert _rejected(factory.to_bytes(ds), settings).code == "no_pixel_data"


@pytest.mark.parametrize("keyword", ["Rows", "Columns", "SamplesPerPixel", "BitsAllocated"])
def test_missing_pixel_attribute(settings: Settings, keyword: str) -> None:
    ds = _photo()
    ds["PixelData"].VR = "OB"  # the writer needs no BitsAllocated then
    delattr(ds, keyword)
    err = _rejected(factory.to_bytes(ds), settings)
    assert (err.code, err.status) == ("missing_attribute", DATASET_MISMATCH)


def test_truncated_native_pixel_data(settings: Settings) -> None:
    ds = _photo()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    err = _rejected(factory.to_bytes(ds), settings)
    assert (err.code, err.status) == ("pixel_data_mismatch", DATASET_MISMATCH)
    ds = _photo()
    ds.PixelData = ds.PixelData + b"\0" * 64  # too long is as wrong as too short
    assert _rejected(factory.to_bytes(ds), settings).code == "pixel_data_mismatch"


def test_mr_truncated_from_the_corpus(settings: Settings) -> None:
    err = _rejected(factory.corpus_file("MR_truncated.dcm").read_bytes(), settings)
    assert err.code == "sop_class_not_supported"  # MR: refused first on its class
    err = _rejected(_relabelled("MR_truncated.dcm"), settings)
    assert (err.code, err.status) == ("pixel_data_mismatch", DATASET_MISMATCH)


def test_huge_image_claim_over_tiny_pixel_data(settings: Settings) -> None:
    """65535 x 65535 over a few bytes (orthanc-tests' oob-monochrome): refused by arithmetic."""
    for samples, photometric in ((1, "MONOCHROME2"), (3, "RGB")):
        ds = _photo()
        ds.Rows = ds.Columns = 65535
        ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, photometric
        ds.PixelData = b"\0" * 16
        err = _rejected(factory.to_bytes(ds), settings)
        assert (err.code, err.status) == ("image_too_large", CANNOT_UNDERSTAND)
        roomy = Settings(max_pixels=65535 * 65535)
        err = _rejected(factory.to_bytes(ds), roomy)
        assert err.code == "pixel_data_mismatch"


def test_frames_limits(settings: Settings) -> None:
    ds = _photo()
    ds.NumberOfFrames = conformance.MAX_FRAMES + 1
    assert _rejected(factory.to_bytes(ds), settings).code == "too_many_frames"
    for bad in ("0", "-3"):
        ds.NumberOfFrames = bad
        assert _rejected(factory.to_bytes(ds), settings).code == "invalid_attribute"
    ds.NumberOfFrames = 2  # header says 2, pixel data holds 1
    assert _rejected(factory.to_bytes(ds), settings).code == "pixel_data_mismatch"


def test_bad_vr_value_is_rejected(settings: Settings) -> None:
    """Wrong VRs: an IS holding letters (like pydicom's badVR.dcm) and a US holding text."""
    err = _rejected(_with_frames_text(b"1A"), settings)  # NumberOfFrames
    assert (err.code, err.status) == ("invalid_attribute", DATASET_MISMATCH)
    raw = factory.to_bytes(_photo())
    rows = struct.pack("<HH2sH", 0x0028, 0x0010, b"US", 2)
    assert raw.count(rows) == 1
    bad = raw.replace(rows, struct.pack("<HH2sH", 0x0028, 0x0010, b"US", 3), 1)
    assert isinstance(_rejected(bad, settings), DicomRejected)


@pytest.mark.parametrize(
    ("samples", "bits", "photometric"),
    [(3, 16, "RGB"), (1, 1, "MONOCHROME2"), (1, 32, "MONOCHROME2"), (1, 8, "PALETTE COLOR")],
)
def test_unsupported_pixel_formats(settings: Settings, samples, bits, photometric) -> None:
    ds = _photo()
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored = samples, bits, bits
    ds.PhotometricInterpretation = photometric
    ds.PixelData = b"\0" * (ds.Rows * ds.Columns * samples * max(bits, 8) // 8)
    err = _rejected(factory.to_bytes(ds), settings)
    assert (err.code, err.status) == ("unsupported_pixel_format", CANNOT_UNDERSTAND)


def test_samples_must_fit_photometric(settings: Settings) -> None:
    ds = _photo()
    ds.PhotometricInterpretation = "MONOCHROME2"
    assert _rejected(factory.to_bytes(ds), settings).code == "invalid_attribute"


def test_twelve_bit_jpeg_extended_is_unsupported(settings: Settings) -> None:
    err = _rejected(_relabelled("JPGExtended.dcm"), settings)
    assert err.code == "unsupported_pixel_format"


# ---- encapsulated pixel data --------------------------------------------------------------


def _jpeg_instance() -> Dataset:
    return factory.vl_endoscopic(factory.synthetic_photo(3), transfer_syntax=JPEGBaseline8Bit)


def test_jpeg_frame_without_soi_marker(settings: Settings) -> None:
    ds = _jpeg_instance()
    ds.PixelData = encapsulate([b"\x00\x01not a jpeg at all"])
    err = _rejected(factory.to_bytes(ds), settings)
    assert (err.code, err.status) == ("corrupt_pixel_data", CANNOT_UNDERSTAND)


def test_empty_and_malformed_fragments(settings: Settings) -> None:
    ds = _jpeg_instance()
    ds.PixelData = struct.pack("<HHL", 0xFFFE, 0xE000, 0)  # offset table only, no fragment
    assert _rejected(factory.to_bytes(ds), settings).code == "corrupt_pixel_data"
    ds = _jpeg_instance()
    ds.PixelData = (
        struct.pack("<HHL", 0xFFFE, 0xE000, 0)
        + struct.pack("<HHL", 0xFFFE, 0xE000, 0x7FFFFFF0)
        + b"\xff\xd8\xff"
    )  # fragment claims 2 GB
    assert isinstance(_rejected(factory.to_bytes(ds), settings), DicomRejected)
    ds = _jpeg_instance()
    ds.PixelData = (
        struct.pack("<HHL", 0xFFFE, 0xE000, 0)
        + struct.pack("<HHL", 0x0010, 0x0010, 4)
        + b"\xff\xd8\xff\xd9"
    )  # not an item tag
    assert isinstance(_rejected(factory.to_bytes(ds), settings), DicomRejected)


def test_native_pixel_data_in_compressed_syntax(settings: Settings) -> None:
    raw = factory.to_bytes(_photo())
    native = ExplicitVRLittleEndian.encode() + b"\0"
    raw = _patched(raw, native, RLELossless.encode() + b"\0")
    assert _rejected(raw, settings).code in {
        "pixel_data_mismatch",
        "cannot_understand",
    }


def test_encapsulated_frames_fewer_than_claimed(settings: Settings) -> None:
    ds = _jpeg_instance()
    ds.NumberOfFrames = 3
    assert _rejected(factory.to_bytes(ds), settings).code in {
        "pixel_data_mismatch",
        "corrupt_pixel_data",
    }


def test_rle_segment_count_checked(settings: Settings) -> None:
    ds = dcmread(BytesIO(_relabelled("SC_rgb_rle.dcm")))
    read_instance(factory.to_bytes(ds), settings)
    ds.PixelData = encapsulate([struct.pack("<L", 9) + b"\0" * 60])
    assert _rejected(factory.to_bytes(ds), settings).code == "corrupt_pixel_data"


# ---- parser failures -----------------------------------------------------------------------


def _deeply_nested(depth: int) -> bytes:
    """A Part 10 file whose sequence nests `depth` levels (orthanc-tests' regression shape)."""
    head = factory.to_bytes(_photo())
    # insert right after the file meta: an undefined-length SQ (0008,1115) nested `depth` deep
    meta_end = head.index(b"\x08\x00\x16\x00")  # (0008,0016) SOP Class UID, first element
    open_sq = struct.pack("<HH2sHL", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
    open_item = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    close_item = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    close_sq = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    nest = (open_sq + open_item) * depth + (close_item + close_sq) * depth
    # (0008,1115) sorts after (0008,0016): place it before (0008,1030)-ish tags is not needed
    # for the parser; pydicom reads elements in file order.
    body = head[meta_end:]
    return head[:meta_end] + nest + body


def test_deeply_nested_sequence(settings: Settings) -> None:
    err = _rejected(_deeply_nested(5000), settings)
    assert (err.code, err.status) == ("cannot_understand", CANNOT_UNDERSTAND)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"DICM",
        b"\0" * 128 + b"DICM",
        bytes(range(256)) * 40,
        np.random.default_rng(7).bytes(50_000),
    ],
    ids=["empty", "dicm", "preamble", "bytes", "random"],
)
def test_garbage(settings: Settings, data: bytes) -> None:
    assert isinstance(_rejected(data, settings), DicomRejected)


def test_truncated_files(settings: Settings) -> None:
    for ts in (ExplicitVRLittleEndian, JPEGBaseline8Bit):
        raw = factory.to_bytes(
            factory.vl_endoscopic(factory.synthetic_photo(4), transfer_syntax=ts)
        )
        for cut in (200, 400, len(raw) // 2, len(raw) - 7):
            assert isinstance(_rejected(raw[:cut], settings), DicomRejected)


def test_messages_carry_no_patient_attributes(settings: Settings) -> None:
    bad = []
    ds = _photo()
    ds.PixelData = ds.PixelData[:10]
    bad.append(factory.to_bytes(ds))
    bad.append(_with_frames_text(factory.PHI["PatientID"].encode()))
    bad.append(_deeply_nested(3000))
    for data in bad:
        err = _rejected(data, settings)
        for value in factory.PHI.values():
            assert value not in err.message and value not in repr(err)


MALFORMED = [
    "MR_truncated.dcm",
    "badVR.dcm",
    "no_meta.dcm",
    "ExplVR_LitEndNoMeta.dcm",
    "ExplVR_BigEndNoMeta.dcm",
    "nested_priv_SQ.dcm",
    "bad_sequence.dcm",
    "meta_missing_tsyntax.dcm",
    "UN_sequence.dcm",
    "rtplan_truncated.dcm",
    "image_dfl.dcm",
]


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_corpus_files(settings: Settings, name: str) -> None:
    raw = factory.corpus_file(name).read_bytes()
    assert isinstance(_rejected(raw, settings), DicomRejected)
    for cut in (len(raw) // 3, len(raw) - 3):
        assert isinstance(_rejected(raw[:cut], settings), DicomRejected)


def _all_corpus_files() -> list[Path]:
    roots = [Path(data_manager.DATA_ROOT) / "test_files"]
    roots += [Path(s.data_path) for s in data_manager.external_data_sources().values()]
    files = [p for root in roots for p in root.rglob("*") if p.is_file()]
    return sorted(p for p in files if p.suffix.lower() not in {".txt", ".json", ".md", ".py"})


def test_whole_corpus_is_accepted_or_rejected(settings: Settings) -> None:
    """Every file pydicom and pydicom-data ship: an Instance or a DicomRejected, nothing else."""
    files = _all_corpus_files()
    assert len(files) > 100
    accepted = 0
    for path in files:
        try:
            inst = read_instance(path.read_bytes(), settings)
        except DicomRejected:
            continue
        accepted += 1
        assert inst.identity.sop_class_uid in conformance.STILL_SOP_CLASSES
    assert accepted >= 10  # the SC_rgb family and friends


def test_too_many_fragments(settings: Settings) -> None:
    ds = _jpeg_instance()
    empty_item = struct.pack("<HHL", 0xFFFE, 0xE000, 0)
    ds.PixelData = empty_item * (200_001)
    err = _rejected(factory.to_bytes(ds), settings)
    assert err.code == "corrupt_pixel_data"


def test_no_attribute_values_in_logs_or_warnings(
    settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydicom's validation warnings quote values ("Invalid value for VR IS: 'PID-...'");
    header.py turns that validation off for reading, so no value reaches logs or warnings."""
    raw = _with_frames_text(factory.PHI["PatientID"].encode())  # an IS holding a patient id

    def messages() -> str:
        caplog.clear()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            _rejected(raw, settings)
        return " ".join([r.getMessage() for r in caplog.records] + [str(w.message) for w in seen])

    caplog.set_level(logging.DEBUG)
    assert factory.PHI["PatientID"] not in messages()
    # the test bites: with pydicom's default reading validation the value would leak
    monkeypatch.setattr(pydicom_config.settings, "reading_validation_mode", pydicom_config.WARN)
    assert factory.PHI["PatientID"] in messages()
