"""De-identification before anything is written: PS3.15 Basic Application Confidentiality Profile.

WHY: the receiver's spool and the optional kept originals are files on disk; no patient attribute
may reach them. The actions follow PS3.15 table E.1-1 for the attributes that occur in
endoscopy stills and their worklist context; where the table offers a choice we take the
strictest that keeps the file valid (X for optional attributes, Z for type 1/2 ones).

Beyond the table (stricter): every private element, every curve (50xx) and overlay (60xx)
group, every remaining Person Name and free-text (LT/ST/UT) element is dropped or emptied, in
every sequence item too; so is any public element of VR UN (unknown to the dictionary) and any
element whose value does not parse.

Documented deviation: Study, Series and SOP Instance UIDs (and other UIDs) are KEPT (the table
says U, replace) because the PACS join - the whole point of a DICOM node - needs them; the
DeidentificationMethodCodeSequence therefore names the Retain UIDs Option (113110).
"""

from __future__ import annotations

from io import BytesIO

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ImplicitVRLittleEndian,
)

REMOVE = "X"
EMPTY = "Z"
DUMMY = "D"

# keyword -> action, PS3.15 table E.1-1 (Basic Profile column), strictest valid choice.
ACTIONS: dict[str, str] = {
    # patient
    "PatientName": EMPTY,
    "PatientID": EMPTY,
    "PatientBirthDate": EMPTY,
    "PatientSex": EMPTY,
    "PatientBirthTime": REMOVE,
    "PatientAge": REMOVE,
    "PatientSize": REMOVE,
    "PatientWeight": REMOVE,
    "PatientAddress": REMOVE,
    "PatientBirthName": REMOVE,
    "PatientMotherBirthName": REMOVE,
    "PatientTelephoneNumbers": REMOVE,
    "PatientTelecomInformation": REMOVE,
    "PatientComments": REMOVE,
    "PatientReligiousPreference": REMOVE,
    "PatientInsurancePlanCodeSequence": REMOVE,
    "PatientPrimaryLanguageCodeSequence": REMOVE,
    "PatientPrimaryLanguageModifierCodeSequence": REMOVE,
    "PatientState": REMOVE,
    "PatientTransportArrangements": REMOVE,
    "PatientInstitutionResidence": REMOVE,
    "PatientSexNeutered": REMOVE,
    "OtherPatientIDs": REMOVE,
    "OtherPatientIDsSequence": REMOVE,
    "OtherPatientNames": REMOVE,
    "IssuerOfPatientID": REMOVE,
    "IssuerOfPatientIDQualifiersSequence": REMOVE,
    "ReferencedPatientSequence": REMOVE,
    "ReferencedPatientPhotoSequence": REMOVE,
    "ReferencedPatientAliasSequence": REMOVE,
    "ResponsiblePerson": REMOVE,
    "ResponsibleOrganization": REMOVE,
    "AdditionalPatientHistory": REMOVE,
    "Allergies": REMOVE,
    "MedicalAlerts": REMOVE,
    "MedicalRecordLocator": REMOVE,
    "EthnicGroup": REMOVE,
    "Occupation": REMOVE,
    "SmokingStatus": REMOVE,
    "PregnancyStatus": REMOVE,
    "LastMenstrualDate": REMOVE,
    "MilitaryRank": REMOVE,
    "BranchOfService": REMOVE,
    "CountryOfResidence": REMOVE,
    "RegionOfResidence": REMOVE,
    "InsurancePlanIdentification": REMOVE,
    "SpecialNeeds": REMOVE,
    # visit / admission
    "AdmissionID": REMOVE,
    "IssuerOfAdmissionID": REMOVE,
    "IssuerOfAdmissionIDSequence": REMOVE,
    "AdmittingDate": REMOVE,
    "AdmittingTime": REMOVE,
    "AdmittingDiagnosesDescription": REMOVE,
    "AdmittingDiagnosesCodeSequence": REMOVE,
    "DischargeDate": REMOVE,
    "DischargeTime": REMOVE,
    "DischargeDiagnosisDescription": REMOVE,
    "CurrentPatientLocation": REMOVE,
    "ServiceEpisodeID": REMOVE,
    "ServiceEpisodeDescription": REMOVE,
    "IssuerOfServiceEpisodeID": REMOVE,
    "VisitComments": REMOVE,
    "ReasonForVisit": REMOVE,
    "ReasonForVisitCodeSequence": REMOVE,
    # study / request
    "AccessionNumber": EMPTY,
    "StudyID": EMPTY,
    "StudyDate": EMPTY,
    "StudyTime": EMPTY,
    "StudyDescription": REMOVE,
    "StudyComments": REMOVE,
    "StudyIDIssuer": REMOVE,
    "ReasonForStudy": REMOVE,
    "ReferencedStudySequence": REMOVE,
    "RequestAttributesSequence": REMOVE,
    "RequestedProcedureDescription": REMOVE,
    "RequestedProcedureID": REMOVE,
    "RequestedProcedureComments": REMOVE,
    "RequestedProcedureLocation": REMOVE,
    "ReasonForTheRequestedProcedure": REMOVE,
    "ReasonForRequestedProcedureCodeSequence": REMOVE,
    "ImagingServiceRequestComments": REMOVE,
    "ReasonForTheImagingServiceRequest": REMOVE,
    "PlacerOrderNumberImagingServiceRequest": EMPTY,
    "FillerOrderNumberImagingServiceRequest": EMPTY,
    "OrderEnteredBy": REMOVE,
    "OrderEntererLocation": REMOVE,
    "OrderCallbackPhoneNumber": REMOVE,
    "OrderCallbackTelecomInformation": REMOVE,
    "IssueDateOfImagingServiceRequest": REMOVE,
    "IssueTimeOfImagingServiceRequest": REMOVE,
    "RequestingPhysician": REMOVE,
    "RequestingService": REMOVE,
    "NamesOfIntendedRecipientsOfResults": REMOVE,
    "IntendedRecipientsOfResultsIdentificationSequence": REMOVE,
    "PerformedProcedureStepDescription": REMOVE,
    "PerformedProcedureStepID": REMOVE,
    "PerformedProcedureStepStartDate": REMOVE,
    "PerformedProcedureStepStartTime": REMOVE,
    "PerformedProcedureStepEndDate": REMOVE,
    "PerformedProcedureStepEndTime": REMOVE,
    "CommentsOnThePerformedProcedureStep": REMOVE,
    "PerformedLocation": REMOVE,
    "PerformedStationAETitle": REMOVE,
    "PerformedStationName": REMOVE,
    "ReferencedPerformedProcedureStepSequence": REMOVE,
    "ScheduledProcedureStepDescription": REMOVE,
    "ScheduledProcedureStepID": REMOVE,
    "ScheduledPerformingPhysicianName": REMOVE,
    "ScheduledStationName": REMOVE,
    "ScheduledStationAETitle": REMOVE,
    "ScheduledStudyLocation": REMOVE,
    "PreMedication": REMOVE,
    # people
    "ReferringPhysicianName": EMPTY,
    "ReferringPhysicianAddress": REMOVE,
    "ReferringPhysicianTelephoneNumbers": REMOVE,
    "ReferringPhysicianIdentificationSequence": REMOVE,
    "ConsultingPhysicianName": EMPTY,
    "ConsultingPhysicianIdentificationSequence": REMOVE,
    "PerformingPhysicianName": REMOVE,
    "PerformingPhysicianIdentificationSequence": REMOVE,
    "NameOfPhysiciansReadingStudy": REMOVE,
    "PhysiciansReadingStudyIdentificationSequence": REMOVE,
    "PhysiciansOfRecord": REMOVE,
    "PhysiciansOfRecordIdentificationSequence": REMOVE,
    "OperatorsName": REMOVE,
    "OperatorIdentificationSequence": REMOVE,
    "PersonName": DUMMY,
    "PersonAddress": REMOVE,
    "PersonTelephoneNumbers": REMOVE,
    "PersonIdentificationCodeSequence": REMOVE,
    "ContentCreatorName": EMPTY,
    "ContentCreatorIdentificationCodeSequence": REMOVE,
    "HumanPerformerName": REMOVE,
    "HumanPerformerOrganization": REMOVE,
    "ActualHumanPerformersSequence": REMOVE,
    "ScheduledHumanPerformersSequence": REMOVE,
    "VerifyingObserverName": REMOVE,
    "VerifyingObserverSequence": REMOVE,
    "VerifyingOrganization": REMOVE,
    "AuthorObserverSequence": REMOVE,
    "ParticipantSequence": REMOVE,
    "CustodialOrganizationSequence": REMOVE,
    # institution / equipment
    "InstitutionName": REMOVE,
    "InstitutionAddress": REMOVE,
    "InstitutionCodeSequence": REMOVE,
    "InstitutionalDepartmentName": REMOVE,
    "InstitutionalDepartmentTypeCodeSequence": REMOVE,
    "StationName": REMOVE,
    "StationAETitle": REMOVE,
    "DeviceSerialNumber": REMOVE,
    "DeviceUID": REMOVE,
    "DeviceDescription": REMOVE,
    "LongDeviceDescription": REMOVE,
    "UniqueDeviceIdentifier": REMOVE,
    "UDISequence": REMOVE,
    "GantryID": REMOVE,
    "GeneratorID": REMOVE,
    "CassetteID": REMOVE,
    "PlateID": REMOVE,
    "DetectorID": REMOVE,
    "ModifyingDeviceID": REMOVE,
    "DateOfLastCalibration": REMOVE,
    "TimeOfLastCalibration": REMOVE,
    "DateOfManufacture": REMOVE,
    "DateOfInstallation": REMOVE,
    "NetworkID": REMOVE,
    "RetrieveAETitle": REMOVE,
    "CameraOwnerName": REMOVE,
    "LensSerialNumber": REMOVE,
    "MakerNote": REMOVE,
    # series / image descriptions and free text
    "SeriesDescription": REMOVE,
    "ProtocolName": REMOVE,
    "ImageComments": REMOVE,
    "FrameComments": REMOVE,
    "ImagePresentationComments": REMOVE,
    "IdentifyingComments": REMOVE,
    "DerivationDescription": REMOVE,
    "AcquisitionComments": REMOVE,
    "AcquisitionDeviceProcessingDescription": REMOVE,
    "AcquisitionProtocolDescription": REMOVE,
    "TextComments": REMOVE,
    "TextString": REMOVE,
    "ModifiedImageDescription": REMOVE,
    "ContentSequence": REMOVE,  # D in the table; images need no SR content
    "AcquisitionContextSequence": REMOVE,
    "GraphicAnnotationSequence": REMOVE,
    "IconImageSequence": REMOVE,  # a thumbnail may carry burned-in text
    "ReferencedImageSequence": REMOVE,
    "SourceImageSequence": REMOVE,
    "DigitalSignaturesSequence": REMOVE,
    "OriginalAttributesSequence": REMOVE,
    "ModifiedAttributesSequence": REMOVE,
    "EncapsulatedDocument": REMOVE,
    "DataSetTrailingPadding": REMOVE,
    # dates and times
    "ContentDate": EMPTY,
    "ContentTime": EMPTY,
    "AcquisitionDate": EMPTY,
    "AcquisitionTime": EMPTY,
    "AcquisitionDateTime": EMPTY,
    "SeriesDate": REMOVE,
    "SeriesTime": REMOVE,
    "InstanceCreationDate": REMOVE,
    "InstanceCreationTime": REMOVE,
    "OverlayDate": REMOVE,
    "OverlayTime": REMOVE,
    "CurveDate": REMOVE,
    "CurveTime": REMOVE,
    "DateOfSecondaryCapture": REMOVE,
    "TimeOfSecondaryCapture": REMOVE,
    "ModifiedImageDate": REMOVE,
    "ModifiedImageTime": REMOVE,
    "TimezoneOffsetFromUTC": REMOVE,
    "StudyArrivalDate": REMOVE,
    "StudyArrivalTime": REMOVE,
    "StudyCompletionDate": REMOVE,
    "StudyCompletionTime": REMOVE,
    "StudyVerifiedDate": REMOVE,
    "StudyVerifiedTime": REMOVE,
    "StudyReadDate": REMOVE,
    "StudyReadTime": REMOVE,
    "ScheduledStudyStartDate": REMOVE,
    "ScheduledStudyStartTime": REMOVE,
    "ScheduledProcedureStepStartDate": REMOVE,
    "ScheduledProcedureStepStartTime": REMOVE,
    "ScheduledProcedureStepEndDate": REMOVE,
    "ScheduledProcedureStepEndTime": REMOVE,
    "Date": DUMMY,
    "Time": DUMMY,
    "DateTime": DUMMY,
    "ObservationDateTime": REMOVE,
    "VerificationDateTime": REMOVE,
    "FrameAcquisitionDateTime": DUMMY,
    "FrameReferenceDateTime": DUMMY,
    "StartAcquisitionDateTime": REMOVE,
    "EndAcquisitionDateTime": REMOVE,
    # specimen / GPS
    "SpecimenAccessionNumber": REMOVE,
    "SpecimenIdentifier": DUMMY,
    "ContainerIdentifier": DUMMY,
    "GPSLatitude": REMOVE,
    "GPSLongitude": REMOVE,
    "GPSAltitude": REMOVE,
    "GPSTimeStamp": REMOVE,
    "GPSDateStamp": REMOVE,
}

# What a D action writes, by VR (anything else: emptied).
_DUMMIES: dict[str, str] = {
    "PN": "ANONYMIZED",
    "LO": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
}
_ACTION_OF_TAG: dict[int, str] = {
    tag: action
    for keyword, action in ACTIONS.items()
    if (tag := tag_for_keyword(keyword)) is not None
}
# Free text (LT/ST/UT) and values of unknown meaning (UN: a public tag pydicom does not know).
_DROPPED_VRS = frozenset({"LT", "ST", "UT", "UN"})
DEIDENTIFICATION_METHOD = "PS3.15 Basic Profile, Retain UIDs (EndoSeek)"  # LO: 64 chars max
# DICOM CID 7050: Basic Application Confidentiality Profile, Retain UIDs Option.
_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113110", "Retain UIDs Option"),
)


def deidentify(ds: Dataset) -> None:
    """De-identify `ds` in place (recursing into sequences) and mark it as de-identified.
    One walk: `_clean` drops private elements in every data set it keeps, which is every
    item left (so no separate remove_private_tags walk)."""
    _clean(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "PrivateInformation" in meta:
        del meta.PrivateInformation
        meta.pop("PrivateInformationCreatorUID", None)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    codes = []
    for value, meaning in _METHOD_CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)


def _clean(ds: Dataset) -> None:
    """Apply the actions to one data set and every item of its remaining sequences."""
    for tag in list(ds.keys()):
        group = tag >> 16
        if tag.is_private or (group & 0xFF00) in (0x5000, 0x6000) or (tag & 0xFFFF) == 0:
            del ds[tag]  # private, curves (50xx), overlays (60xx), stale group lengths
            continue
        action = _ACTION_OF_TAG.get(tag)
        if action == REMOVE:  # by tag: its value is never read
            del ds[tag]
            continue
        try:
            elem = ds[tag]
        except Exception:  # noqa: BLE001 - an unreadable value is dropped, never kept
            del ds[tag]
            continue
        if action is None and elem.VR in _DROPPED_VRS:
            del ds[tag]
            continue
        if action == EMPTY or (action is None and elem.VR == "PN"):
            elem.value = Sequence() if elem.VR == "SQ" else None
        elif action == DUMMY:
            elem.value = Sequence() if elem.VR == "SQ" else _DUMMIES.get(elem.VR)
        elif elem.VR == "SQ":
            for item in elem.value:
                _clean(item)


def to_part10(ds: Dataset) -> bytes:
    """`ds` as a Part 10 file (zero preamble, file meta, data set) in its own transfer syntax
    (implicit VR little endian when it has none). Needs SOP Class and Instance UIDs, which every
    checked Instance has.

    WHY not `ds.save_as` (the C-STORE handler runs this per instance): pydicom's writer copies
    the Pixel Data value three times (an element buffer, its copy, the output) and deep-copies
    the file meta; here the data set less Pixel Data goes through pydicom's writer and the Pixel
    Data element is appended once, its value as received (encapsulated items and all). The bytes
    are the ones `save_as` writes (test_deid.py compares them), except the preamble: always
    zeros here, never a sender's 128 arbitrary bytes. Other encodings (deflated, big endian,
    private), elements after Pixel Data, or a value pydicom holds otherwise: `save_as` itself.
    """
    meta = ds.file_meta if isinstance(getattr(ds, "file_meta", None), FileMetaDataset) else None
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    ts = UID(meta.get("TransferSyntaxUID") or ImplicitVRLittleEndian)
    meta.TransferSyntaxUID = ts
    for keyword, meta_keyword in (
        ("SOPClassUID", "MediaStorageSOPClassUID"),
        ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
    ):
        if keyword in ds:
            setattr(meta, meta_keyword, ds[keyword].value)
    if "ImplementationClassUID" not in meta:
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    implicit = ts == ImplicitVRLittleEndian
    plain = ts.is_transfer_syntax and not ts.is_private and ts.is_little_endian
    if not plain or ts.is_deflated or any(t > _PIXEL_DATA for t in ds.keys()):
        return _save_as(ds, implicit)  # rare encodings and layouts: pydicom's writer does all
    if [t for t in ds.keys() if t >> 16 in (0, 2)]:
        raise ValueError("command or file meta elements in the data set")  # as save_as
    pixel = ds[_PIXEL_DATA] if _PIXEL_DATA in ds else None
    if pixel is not None:
        pixel.is_undefined_length = ts.is_compressed  # as save_as does
        tail = _pixel_data_element(pixel, implicit)
        if tail is None:
            return _save_as(ds, implicit)
    fp = DicomBytesIO()
    fp.write(b"\x00" * 128 + b"DICM")
    file_meta = FileMetaDataset()
    for elem in meta:  # a new container: write_file_meta_info adds elements to it
        file_meta.add(elem)
    write_file_meta_info(fp, file_meta, enforce_standard=True)
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    if pixel is None:
        write_dataset(fp, ds)
        return fp.getvalue()
    ds.pop(_PIXEL_DATA)
    try:
        write_dataset(fp, ds)
    finally:
        ds[_PIXEL_DATA] = pixel
    head = fp.getvalue()
    return b"".join((head, *tail))


_PIXEL_DATA = 0x7FE00010
_ITEM_TAG = b"\xfe\xff\x00\xe0"
_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _pixel_data_element(elem: DataElement, implicit: bool) -> tuple[bytes, ...] | None:
    """The encoded Pixel Data element (little endian) as header, value[, padding][, sequence
    delimiter] - the bytes pydicom's write_data_element gives - or None for a value that is
    not plain bytes or an explicit VR that is not OB/OW (pydicom's writer then handles it)."""
    value = elem.value
    if not isinstance(value, bytes | bytearray) or not value:
        return None
    if elem.VR not in ("OB", "OW") and not (implicit and elem.VR == "OB or OW"):
        return None  # an explicit VR still to be resolved: pydicom's writer does that
    undefined = elem.is_undefined_length
    if undefined and not value.startswith(_ITEM_TAG):
        raise ValueError("encapsulated Pixel Data does not start with an item")  # as save_as
    pad = b"\x00" if len(value) % 2 else b""
    length = 0xFFFFFFFF if undefined else len(value) + len(pad)
    tag = b"\xe0\x7f\x10\x00"
    header = (
        tag + (b"" if implicit else elem.VR.encode() + b"\x00\x00") + length.to_bytes(4, "little")
    )
    return (header, bytes(value), pad, _SEQ_DELIMITER if undefined else b"")


def _save_as(ds: Dataset, implicit: bool) -> bytes:
    """pydicom's own writer (after `ds.file_meta` is completed by to_part10)."""
    if getattr(ds, "preamble", None):
        ds.preamble = None  # never a sender's preamble: 128 arbitrary bytes
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return buf.getvalue()
