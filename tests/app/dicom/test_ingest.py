"""DicomIngest: an instance becomes photos of its study's procedure, once, without patient data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from app.dicom.errors import DicomRejected
from app.dicom.header import read_instance
from app.dicom.ingest import DicomIngest
from app.settings import Settings
from tests.app.dicom import factory


def _ingest(client: TestClient) -> DicomIngest:
    return DicomIngest(client.app.state.runtime)


def _procedure(client: TestClient, headers: dict, source: str, study: str) -> dict:
    r = client.get(
        "/v1/procedures", params={"source": source, "external_id": study}, headers=headers["search"]
    )
    assert r.status_code == 200, r.text
    (proc,) = r.json()["items"]
    return proc


def _images(client: TestClient, headers: dict, proc_id: str) -> list[dict]:
    r = client.get(f"/v1/procedures/{proc_id}/images", headers=headers["search"])
    assert r.status_code == 200, r.text
    return r.json()["items"]


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", JPEGBaseline8Bit])
def test_instance_becomes_a_photo_of_its_study(
    client: TestClient, headers: dict, settings: Settings, syntax: str
) -> None:
    ds = factory.vl_endoscopic(factory.synthetic_photo(1), transfer_syntax=syntax)
    stored = _ingest(client).store(read_instance(factory.to_bytes(ds), settings), "SCOPE1")
    assert not stored.duplicate and len(stored.image_uids) == 1
    proc = _procedure(client, headers, "SCOPE1", ds.StudyInstanceUID)
    assert proc["kind"] == "upper_gi"  # "Gastroscopy" through the default kind rules
    (img,) = _images(client, headers, proc["id"])
    assert img["dicom"] == {
        "study_uid": ds.StudyInstanceUID,
        "series_uid": ds.SeriesInstanceUID,
        "sop_instance_uid": ds.SOPInstanceUID,
        "sop_class_uid": ds.SOPClassUID,
        "frame": 1,
    }
    assert img["captured_at"].startswith("2026-11-30T09:22:33")  # 10:22:33 at +01:00
    assert (img["width"], img["height"]) == (ds.Columns, ds.Rows)
    one = client.get(f"/v1/images/{img['id']}", headers=headers["search"]).json()
    assert one["dicom"]["sop_instance_uid"] == ds.SOPInstanceUID


def test_same_instance_again_stores_nothing_new(
    client: TestClient, headers: dict, settings: Settings
) -> None:
    ds = factory.vl_endoscopic(factory.synthetic_photo(2), transfer_syntax=JPEGBaseline8Bit)
    data = factory.to_bytes(ds)
    first = _ingest(client).store(read_instance(data, settings), "SCOPE1")
    again = _ingest(client).store(read_instance(data, settings), "SCOPE1")
    assert again.duplicate and again.image_uids == first.image_uids
    proc = _procedure(client, headers, "SCOPE1", ds.StudyInstanceUID)
    assert len(_images(client, headers, proc["id"])) == 1


def test_multiframe_keeps_frame_numbers(
    client: TestClient, headers: dict, settings: Settings
) -> None:
    frames = [factory.synthetic_photo(10 + i) for i in range(3)]
    ds = factory.multiframe(frames, description="Colonoscopy")
    stored = _ingest(client).store(read_instance(factory.to_bytes(ds), settings), "SCOPE2")
    assert len(stored.image_uids) == 3
    proc = _procedure(client, headers, "SCOPE2", ds.StudyInstanceUID)
    assert proc["kind"] == "colonoscopy"
    got = sorted(i["dicom"]["frame"] for i in _images(client, headers, proc["id"]))
    assert got == [1, 2, 3]


def test_pixels_that_do_not_decode_are_rejected_and_nothing_is_stored(
    client: TestClient, headers: dict, settings: Settings
) -> None:
    ds = factory.vl_endoscopic(factory.synthetic_photo(3), transfer_syntax=JPEGBaseline8Bit)
    jpeg = factory.jpeg_frames(ds)[0]
    ds.PixelData = encapsulate([jpeg[: len(jpeg) // 2]])  # a truncated JPEG stream
    with pytest.raises(DicomRejected) as err:
        _ingest(client).store(read_instance(factory.to_bytes(ds), settings), "SCOPE3")
    assert err.value.status == 0xC000
    r = client.get("/v1/procedures", params={"source": "SCOPE3"}, headers=headers["search"])
    for proc in r.json()["items"]:
        assert _images(client, headers, proc["id"]) == []


def test_no_patient_attribute_reaches_the_database_or_files(
    tmp_path: Path, client: TestClient, settings: Settings
) -> None:
    ds = factory.vl_endoscopic(factory.synthetic_photo(4), transfer_syntax=JPEGBaseline8Bit)
    rt = client.app.state.runtime
    rt.settings = settings.model_copy(update={"dicom_keep_originals": True})
    try:
        _ingest(client).store(read_instance(factory.to_bytes(ds), rt.settings), "SCOPE1")
    finally:
        rt.settings = settings
    db = settings.database_url.removeprefix("sqlite:///")
    dump = "\n".join(sqlite3.connect(db).iterdump()).encode()
    blobs = [dump] + [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    originals = list((settings.storage_dir / "dicom").rglob("*.dcm"))
    assert len(originals) == 1, "a de-identified copy is kept when asked"
    for value in factory.PHI.values():
        for blob in blobs:
            assert value.encode() not in blob, value
    assert ds.SOPInstanceUID.encode() in originals[0].read_bytes()  # UIDs are kept


def test_same_pixels_under_a_new_uid_link_to_the_stored_photo(
    client: TestClient, headers: dict, settings: Settings
) -> None:
    photo = factory.synthetic_photo(5)
    first = factory.vl_endoscopic(photo, transfer_syntax=JPEGBaseline8Bit)
    again = factory.vl_endoscopic(photo, transfer_syntax=JPEGBaseline8Bit, quality=92)
    again.StudyInstanceUID = first.StudyInstanceUID  # same study, new SOP Instance UID
    a = _ingest(client).store(read_instance(factory.to_bytes(first), settings), "SCOPE4")
    b = _ingest(client).store(read_instance(factory.to_bytes(again), settings), "SCOPE4")
    assert not b.duplicate and b.image_uids == a.image_uids  # same bytes: the same photo
    rt = client.app.state.runtime
    assert [uid for uid, _ in DicomIngest(rt).known(again.SOPInstanceUID)] == a.image_uids


def test_store_many_stores_each_study_together_and_rejects_only_the_bad_one(
    client: TestClient, headers: dict, settings: Settings
) -> None:
    def made(seed: int, study: str | None = None) -> tuple:
        ds = factory.vl_endoscopic(factory.synthetic_photo(seed), transfer_syntax=JPEGBaseline8Bit)
        if study is not None:
            ds.StudyInstanceUID = study
        return ds

    known = made(20)
    a1, a2 = made(21, known.StudyInstanceUID), made(22, known.StudyInstanceUID)
    bad = made(23, known.StudyInstanceUID)
    jpeg = factory.jpeg_frames(bad)[0]
    bad.PixelData = encapsulate([jpeg[: len(jpeg) // 2]])  # a truncated JPEG stream
    b1 = made(24)
    b2 = made(25, b1.StudyInstanceUID)
    b2.ContentTime = "111213"  # its own capture time, not b1's
    ingest = _ingest(client)
    first = ingest.store(read_instance(factory.to_bytes(known), settings), "SCOPE5")
    batch = [known, a1, b1, bad, a2, b2, a1]  # a1 twice: the second is a duplicate
    got = ingest.store_many([read_instance(factory.to_bytes(d), settings) for d in batch], "SCOPE5")
    assert [type(r).__name__ for r in got] == [
        "StoredInstance",
        "StoredInstance",
        "StoredInstance",
        "DicomRejected",
        "StoredInstance",
        "StoredInstance",
        "StoredInstance",
    ]
    assert got[0].duplicate and got[0].image_uids == first.image_uids
    assert got[3].status == 0xC000
    assert [r.duplicate for r in got if not isinstance(r, DicomRejected)] == [
        True, False, False, False, False, True
    ]  # fmt: skip
    assert got[6].image_uids == got[1].image_uids
    for ds, proc_id in ((known, got[1].procedure_id), (b1, got[2].procedure_id)):
        assert _procedure(client, headers, "SCOPE5", ds.StudyInstanceUID)["id"] == str(proc_id)
    assert got[4].procedure_id == got[1].procedure_id != got[2].procedure_id
    rows = {
        img["dicom"]["sop_instance_uid"]: img
        for proc_id in (got[1].procedure_id, got[2].procedure_id)
        for img in _images(client, headers, str(proc_id))
    }
    stored = [known, a1, a2, b1, b2]
    assert set(rows) == {d.SOPInstanceUID for d in stored}  # the bad one left nothing
    for r, ds in zip([got[i] for i in (1, 4, 2, 5)], [a1, a2, b1, b2], strict=True):
        assert rows[ds.SOPInstanceUID]["id"] == str(r.image_uids[0])
        assert rows[ds.SOPInstanceUID]["dicom"]["frame"] == 1
    assert rows[b1.SOPInstanceUID]["captured_at"] != rows[b2.SOPInstanceUID]["captured_at"]
    assert rows[b2.SOPInstanceUID]["captured_at"].startswith("2026-11-30T10:12:13")  # +01:00
