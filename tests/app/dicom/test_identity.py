"""Identity: UIDs, kind from the configured rules, capture time with its offset."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from app.dicom.errors import DATASET_MISMATCH, DicomRejected
from app.dicom.identity import Identity, captured_at, identity_of, kind_of, parse_datetime
from app.settings import Settings
from tests.app.dicom import factory

RULES = Settings().dicom_kind_rules


def _photo(**kw: object) -> Dataset:
    return factory.vl_endoscopic(factory.synthetic_photo(0, size=(16, 16)), **kw)


def test_identity_of_factory_instance() -> None:
    ds = _photo(study_uid="1.2.3.4", series_uid="1.2.3.5")
    ident = identity_of(ds, Settings())
    assert ident.study_uid == "1.2.3.4" and ident.series_uid == "1.2.3.5"
    assert ident.sop_instance_uid == ds.SOPInstanceUID
    assert ident.sop_class_uid == ds.SOPClassUID
    assert (ident.modality, ident.kind, ident.frames) == ("ES", "upper_gi", 1)
    assert ident.captured_at == factory.content_time(ds)
    assert ident.captured_at.tzinfo is not None


def test_json_round_trip() -> None:
    ident = identity_of(_photo(), Settings())
    data = ident.to_json()
    assert data["captured_at"].endswith("+00:00")
    assert Identity.from_json(data) == ident
    none = Identity("1.2", "1.3", "1.4", "1.5", "ES", "other", None, 2)
    assert Identity.from_json(none.to_json()) == none


def test_missing_uid_is_rejected() -> None:
    ds = _photo()
    del ds.StudyInstanceUID
    with pytest.raises(DicomRejected) as info:
        identity_of(ds, Settings())
    assert (info.value.code, info.value.status) == ("missing_attribute", DATASET_MISMATCH)


@pytest.mark.parametrize(
    ("description", "kind"),
    [
        ("Gastroscopy", "upper_gi"),
        ("OGD with biopsy", "upper_gi"),
        ("COLONOSCOPY", "colonoscopy"),
        ("Ileocolonoscopy", "colonoscopy"),
        ("Flexible sigmoidoscopy", "colonoscopy"),
        ("Bronchoscopy", "other"),
        ("", "other"),
    ],
)
def test_kind_from_study_description(description: str, kind: str) -> None:
    assert kind_of(_photo(description=description), RULES) == kind


def test_kind_from_other_attributes() -> None:
    ds = _photo(description="Endoscopy")
    assert kind_of(ds, RULES) == "other"
    ds.RequestedProcedureDescription = "Upper GI endoscopy"
    assert kind_of(ds, RULES) == "upper_gi"
    ds = _photo(description="Endoscopy")
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "X1", "99L", "Colonoscopy"
    ds.ProcedureCodeSequence = Sequence([code])
    assert kind_of(ds, RULES) == "colonoscopy"
    ds = _photo(description="Endoscopy")
    ds.BodyPartExamined = "STOMACH"
    assert kind_of(ds, RULES) == "upper_gi"


def test_first_rule_wins_and_bad_rules_are_skipped() -> None:
    ds = _photo(description="gastro and colon")
    assert kind_of(ds, ["colon=colonoscopy", "gastro=upper_gi"]) == "colonoscopy"
    assert kind_of(ds, ["gastro=upper_gi", "colon=colonoscopy"]) == "upper_gi"
    assert kind_of(ds, ["([=broken", "no-equals-sign", "=x", "GASTRO=upper_gi"]) == "upper_gi"
    assert kind_of(ds, []) == "other"


def test_settings_rules_are_used() -> None:
    settings = Settings(dicom_kind_rules=["bronch=bronchoscopy"])
    assert identity_of(_photo(description="Bronchoscopy"), settings).kind == "bronchoscopy"


def _timed(**values: str) -> Dataset:
    ds = Dataset()
    with warnings.catch_warnings():  # pydicom warns about the invalid values we set on purpose
        warnings.simplefilter("ignore")
        for keyword, value in values.items():
            setattr(ds, keyword, value)
    return ds


def test_captured_at_precedence_and_offsets() -> None:
    plus1 = timezone(timedelta(hours=1))
    ds = _timed(ContentDate="20260101", ContentTime="120000", TimezoneOffsetFromUTC="+0100")
    assert captured_at(ds) == datetime(2026, 1, 1, 12, tzinfo=plus1)
    ds.AcquisitionDate, ds.AcquisitionTime = "20260101", "110000"
    assert captured_at(ds) == datetime(2026, 1, 1, 11, tzinfo=plus1)
    ds.AcquisitionDateTime = "20260101103000.5-0500"  # its own offset wins
    assert captured_at(ds) == datetime(2026, 1, 1, 15, 30, 0, 500000, tzinfo=UTC)
    ds.AcquisitionDateTime = "20260101100000"  # no own offset: the data set's
    assert captured_at(ds) == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert captured_at(ds).tzinfo == UTC


def test_captured_at_without_offset_is_utc() -> None:
    ds = _timed(ContentDate="20261130", ContentTime="102233.25")
    assert captured_at(ds) == datetime(2026, 11, 30, 10, 22, 33, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"ContentDate": "20261340", "ContentTime": "120000"},
        {"ContentDate": "2026-11-30x", "ContentTime": "120000"},
        {"ContentDate": "20261130", "ContentTime": "256100"},
        {"ContentDate": "20261130"},
        {"AcquisitionDateTime": "not a time"},
        {"AcquisitionDateTime": "99999999999999"},
    ],
)
def test_invalid_times_give_none(values: dict[str, str]) -> None:
    assert captured_at(_timed(**values)) is None


def test_invalid_first_candidate_falls_through() -> None:
    ds = _timed(AcquisitionDateTime="garbage", ContentDate="20260102", ContentTime="0930")
    assert captured_at(ds) == datetime(2026, 1, 2, 9, 30, tzinfo=UTC)


def test_invalid_offset_is_treated_as_absent() -> None:
    ds = _timed(ContentDate="20260101", ContentTime="120000", TimezoneOffsetFromUTC="+9900")
    assert captured_at(ds) == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_parse_datetime_edge_cases() -> None:
    assert parse_datetime("20260101235960") == datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC)
    assert parse_datetime("20260101") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_datetime("2026010112") == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert parse_datetime("20260101120000+1500") is None  # beyond +14:00
    assert parse_datetime("") is None
