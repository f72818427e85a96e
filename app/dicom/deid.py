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

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ImplicitVRLittleEndian

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
# Free text (LT/ST/UT) and values of unknown meaning (UN: a public tag pydicom does not know).
_DROPPED_VRS = frozenset({"LT", "ST", "UT", "UN"})
DEIDENTIFICATION_METHOD = "PS3.15 Basic Profile, Retain UIDs (EndoSeek)"  # LO: 64 chars max
# DICOM CID 7050: Basic Application Confidentiality Profile, Retain UIDs Option.
_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113110", "Retain UIDs Option"),
)


def deidentify(ds: Dataset) -> None:
    """De-identify `ds` in place (recursing into sequences) and mark it as de-identified."""
    ds.remove_private_tags()
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
        try:
            elem = ds[tag]
        except Exception:  # noqa: BLE001 - an unreadable value is dropped, never kept
            del ds[tag]
            continue
        action = ACTIONS.get(elem.keyword)
        if action == REMOVE or (action is None and elem.VR in _DROPPED_VRS):
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
    """`ds` as a Part 10 file (preamble, file meta, data set) in its own transfer syntax
    (implicit VR little endian when it has none). Needs SOP Class and Instance UIDs, which every
    checked Instance has."""
    meta = ds.file_meta if isinstance(getattr(ds, "file_meta", None), FileMetaDataset) else None
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    ts = meta.get("TransferSyntaxUID") or ImplicitVRLittleEndian
    meta.TransferSyntaxUID = ts
    for keyword, meta_keyword in (
        ("SOPClassUID", "MediaStorageSOPClassUID"),
        ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
    ):
        if keyword in ds:
            setattr(meta, meta_keyword, ds[keyword].value)
    if "ImplementationClassUID" not in meta:
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    buf = BytesIO()
    ds.save_as(
        buf,
        enforce_file_format=True,
        implicit_vr=ts == ImplicitVRLittleEndian,
        little_endian=True,
    )
    return buf.getvalue()
