"""De-identification: no factory PHI value survives in the bytes we would write."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.datadict import keyword_dict
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

from app.dicom.deid import ACTIONS, DEIDENTIFICATION_METHOD, deidentify, to_part10
from app.dicom.header import read_instance
from app.settings import Settings
from tests.app.dicom import factory

# Extra identifying values planted beside factory.PHI, in places the factory does not use.
EXTRA = {
    "PatientAddress": "12 Secret Lane",
    "OtherPatientIDs": "OTHER-ID-5521",
    "InstitutionAddress": "Hospital Road 99",
    "InstitutionalDepartmentName": "Endoscopy Unit Secret",
    "NameOfPhysiciansReadingStudy": "Reader^Rita",
    "StationName": "SCOPE-ROOM-7",
    "DeviceSerialNumber": "SN-SECRET-0042",
    "RequestedProcedureDescription": "Colonoscopy for Jane",
    "PatientAge": "064Y",
}


def _needles() -> list[bytes]:
    """Every PHI value and each part of a person name (family, given, middle)."""
    out: set[str] = set()
    for value in [*factory.PHI.values(), *EXTRA.values()]:
        out.add(value)
        out.update(part for part in value.split("^") if len(part) > 2)
    return sorted(v.encode() for v in out)


def _loaded(transfer_syntax: str = ExplicitVRLittleEndian) -> Dataset:
    """A factory instance carrying PHI everywhere: top level, sequences, private, overlays."""
    ds = factory.vl_endoscopic(factory.synthetic_photo(5), transfer_syntax=transfer_syntax)
    for keyword, value in EXTRA.items():
        setattr(ds, keyword, value)
    request = Dataset()
    request.RequestedProcedureID = factory.PHI["AccessionNumber"]
    request.ScheduledProcedureStepDescription = factory.PHI["ImageComments"]
    ds.RequestAttributesSequence = Sequence([request])
    performer = Dataset()
    performer.PersonName = factory.PHI["PerformingPhysicianName"]
    performer.CodeMeaning = "ok"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C1", "99L", "Gastroscopy"
    code.ContributingEquipmentSequence = Sequence([performer])  # PHI two levels down
    code.add_new(0x00091010, "LO", factory.PHI["PatientName"])  # private in a sequence
    ds.ProcedureCodeSequence = Sequence([code])
    ds.add_new(0x00090010, "LO", "ACME 1.0")  # private creator
    ds.add_new(0x00091001, "LO", factory.PHI["PatientID"])
    ds.add_new(0x60000010, "US", 8)  # overlay rows...
    ds.add_new(0x60003000, "OW", factory.PHI["PatientBirthDate"].encode())
    ds.add_new(0x50003000, "OW", factory.PHI["OperatorsName"].encode())  # curve data
    ds.add_new(0x00204000, "LT", factory.PHI["ImageComments"])
    ds.add_new(0x00324000, "LT", "study comment " + factory.PHI["PatientName"])
    ds.add_new(0x00081110, "SQ", Sequence([Dataset()]))  # ReferencedStudySequence
    return ds


def test_action_table_uses_real_keywords() -> None:
    assert set(ACTIONS.values()) <= {"X", "Z", "D"}
    unknown = [keyword for keyword in ACTIONS if keyword not in keyword_dict]
    assert unknown == []


@pytest.mark.parametrize(
    "transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit]
)
def test_no_phi_in_written_bytes(transfer_syntax: str) -> None:
    ds = _loaded(transfer_syntax)
    before = factory.to_bytes(ds)
    assert all(needle in before for needle in _needles())  # the test plants what it greps
    deidentify(ds)
    out = to_part10(ds)
    leaked = [needle for needle in _needles() if needle in out]
    assert leaked == []
    assert b"SECRET" not in out.upper()


def test_keeps_uids_pixels_and_validity() -> None:
    ds = _loaded()
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SOPClassUID)
    pixels = bytes(ds.PixelData)
    deidentify(ds)
    back = dcmread(BytesIO(to_part10(ds)))
    assert (back.StudyInstanceUID, back.SeriesInstanceUID) == uids[:2]
    assert (back.SOPInstanceUID, back.SOPClassUID) == uids[2:]
    assert back.file_meta.MediaStorageSOPInstanceUID == uids[2]
    assert bytes(back.PixelData) == pixels
    assert back.PatientIdentityRemoved == "YES"
    assert back.DeidentificationMethod == DEIDENTIFICATION_METHOD
    assert [c.CodeValue for c in back.DeidentificationMethodCodeSequence] == ["113100", "113110"]
    assert "PatientName" in back and not back.PatientName  # Z: present, empty
    assert "InstitutionName" not in back and "StudyDescription" not in back  # X
    assert "ImageComments" not in back and "RequestAttributesSequence" not in back
    assert "TimezoneOffsetFromUTC" not in back
    # the de-identified copy still passes the header check
    inst = read_instance(to_part10(ds), Settings())
    assert inst.identity.sop_instance_uid == uids[2]


def test_private_overlay_and_curve_groups_removed_everywhere() -> None:
    ds = _loaded()
    deidentify(ds)
    tags = [elem.tag for elem in ds.iterall()]
    assert not any(tag.is_private for tag in tags)
    assert not any((tag.group & 0xFF00) in (0x5000, 0x6000) for tag in tags)
    # the coded procedure survives (kind rules need codes, not names), its names do not
    item = ds.ProcedureCodeSequence[0]
    assert item.CodeMeaning == "Gastroscopy"
    assert item.ContributingEquipmentSequence[0].PersonName == "ANONYMIZED"  # D: dummy


def test_deidentify_is_idempotent() -> None:
    ds = _loaded()
    deidentify(ds)
    once = to_part10(ds)
    deidentify(ds)
    assert to_part10(ds) == once


def _pydicom_part10(ds: Dataset) -> bytes:
    """What pydicom's own writer makes of `ds` (to_part10 completed its file meta first)."""
    buf = BytesIO()
    implicit = ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    ds.save_as(buf, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    "transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit]
)
@pytest.mark.parametrize("odd", [False, True])
def test_to_part10_writes_the_bytes_pydicom_writes(transfer_syntax: str, odd: bool) -> None:
    # to_part10 appends the Pixel Data element itself (header, value as received, padding,
    # sequence delimiter): the file must be the one pydicom's writer makes, received as a C-STORE
    # data set (wire) or built in memory, odd-length values padded alike
    ds = factory.vl_endoscopic(factory.synthetic_photo(6), transfer_syntax=transfer_syntax)
    if odd and transfer_syntax != JPEGBaseline8Bit:
        ds.PixelData = ds.PixelData + b"\x01"
    for candidate in (ds, dcmread(BytesIO(factory.to_bytes(ds)))):
        deidentify(candidate)
        out = to_part10(candidate)
        assert out[:132] == b"\x00" * 128 + b"DICM"
        assert out[128:] == _pydicom_part10(candidate)[128:]
        sent = bytes(candidate.PixelData)
        back = bytes(dcmread(BytesIO(out)).PixelData)
        assert back == sent + b"\x00" * (len(sent) % 2)  # an odd value gains its pad byte


def test_to_part10_drops_a_sender_preamble() -> None:
    ds = dcmread(BytesIO(b"Doe^Jane".ljust(128, b"!") + factory.to_bytes(_loaded())[128:]))
    deidentify(ds)
    assert to_part10(ds)[:128] == b"\x00" * 128


def test_to_part10_without_file_meta() -> None:
    ds = _loaded()
    del ds.file_meta
    raw = to_part10(ds)
    assert raw[128:132] == b"DICM"
    back = dcmread(BytesIO(raw))
    assert back.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert np.array_equal(back.pixel_array, np.asarray(factory.synthetic_photo(5)))


@pytest.mark.parametrize(
    "name",
    ["nested_priv_SQ.dcm", "rtplan.dcm", "SC_rgb_jpeg.dcm", "CT_small.dcm", "reportsi.dcm"],
)
def test_corpus_files_deidentify_and_write(name: str) -> None:
    path = get_testdata_file(name, download=False)
    assert path is not None
    ds = dcmread(path, force=True)
    if not ds.file_meta.get("TransferSyntaxUID"):
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.SOPClassUID = ds.get("SOPClassUID") or "1.2.840.10008.5.1.4.1.1.7"  # Part 10 needs both
    ds.SOPInstanceUID = ds.get("SOPInstanceUID") or generate_uid()
    deidentify(ds)
    back = dcmread(BytesIO(to_part10(ds)))
    assert back.PatientIdentityRemoved == "YES"
    assert not any(elem.tag.is_private for elem in back.iterall())
    assert not any(elem.VR == "PN" and elem.value for elem in back.iterall())


def test_unknown_public_elements_and_free_text_are_dropped() -> None:
    ds = _loaded()
    ds.add_new(0x00471001, "UN", factory.PHI["PatientName"].encode())  # public UN
    ds.add_new(0x00181030, "LO", "Protocol for Jane")  # ProtocolName: X
    ds.add_new(0x00080081, "ST", factory.PHI["InstitutionName"])  # InstitutionAddress: X
    deidentify(ds)
    out = to_part10(ds)
    assert factory.PHI["PatientName"].encode() not in out
    assert b"Jane" not in out
    assert not any(elem.VR in {"UN", "LT", "ST", "UT"} for elem in ds.iterall())
