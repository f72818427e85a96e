"""STOW-RS in process: the multipart reader, the PS3.18 response, statuses, limits, faults,
and that no patient attribute of the stored instances reaches the database, files or logs."""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydicom import Dataset
from pydicom.uid import CTImageStorage, generate_uid

from app.db import migrate
from app.db.models import DicomFrame, Procedure
from app.dicom import stow
from app.dicom.errors import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    SOP_CLASS_NOT_SUPPORTED,
)
from app.dicom.ingest import DicomIngest
from app.main import create_app
from app.services.errors import ProblemError
from app.settings import Settings
from tests.app.conftest import create_keys, make_settings
from tests.app.dicom.factory import synthetic_photo, to_bytes, vl_endoscopic
from tests.app.dicom.stow_client import BOUNDARY, content_type, instance, multipart, phi_hits

DICOM = "application/dicom"
JSON = "application/dicom+json"


# ---- the request's Content-Type ------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"',
        f"multipart/related; type=application/dicom; boundary={BOUNDARY}",
        f'Multipart/Related; boundary="{BOUNDARY}"; type="Application/DICOM"',
        f"multipart/related; boundary={BOUNDARY}",  # no type: each part's own type decides
    ],
)
def test_boundary_quoted_or_plain(header: str) -> None:
    assert stow.boundary_of(header) == BOUNDARY.encode()


@pytest.mark.parametrize(
    "header",
    [
        None,
        "application/dicom",
        f"multipart/form-data; boundary={BOUNDARY}",
        f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}',
        f'multipart/related; type="application/dicom+xml"; boundary={BOUNDARY}',
        f'multipart/related; type="image/jpeg"; boundary={BOUNDARY}',
    ],
)
def test_other_media_types_are_415(header: str | None) -> None:
    with pytest.raises(ProblemError) as err:
        stow.boundary_of(header)
    assert err.value.status == 415


@pytest.mark.parametrize("header", ["multipart/related", 'multipart/related; boundary=""'])
def test_no_boundary_is_400(header: str) -> None:
    with pytest.raises(ProblemError) as err:
        stow.boundary_of(header)
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        (None, True),
        ("*/*", True),
        ("application/dicom+json", True),
        ("application/dicom+xml, application/dicom+json;q=0.5", True),
        ("application/dicom+xml", False),
    ],
)
def test_accept(accept: str | None, ok: bool) -> None:
    assert stow.accepts_dicom_json(accept) is ok


# ---- the streaming reader ------------------------------------------------------------------------


def _reader(max_part: int = 10**6, max_total: int = 10**7) -> stow.MultipartReader:
    return stow.MultipartReader(BOUNDARY.encode(), max_part, max_total)


def _feed_all(reader: stow.MultipartReader, chunks: list[bytes]) -> list[stow.Part]:
    return [part for chunk in chunks for part in reader.feed(chunk)]


PARTS = [(DICOM, b"first\r\n--not-the-boundary\r\n" * 3), (None, b""), ("Image/JPEG; q=1", b"x")]


@pytest.mark.parametrize("leading_crlf", [False, True])
def test_reader_splits_anywhere(leading_crlf: bool) -> None:
    """Chunk borders inside boundaries, headers and data change nothing (chunked transfer)."""
    body = multipart(PARTS, leading_crlf=leading_crlf)
    want = [(i, (t or "").split(";")[0].lower(), d) for i, (t, d) in enumerate(PARTS)]
    for cut in range(len(body) + 1):
        reader = _reader()
        got = _feed_all(reader, [body[:cut], body[cut:]])
        assert [(p.index, p.media_type, p.data) for p in got] == want, cut
        assert reader.complete
    reader = _reader()
    got = _feed_all(reader, [body[i : i + 1] for i in range(len(body))])
    assert [p.data for p in got] == [d for _, d in PARTS] and reader.complete


def test_reader_epilogue_and_no_final_crlf() -> None:
    body = multipart(PARTS)
    for tail in (body[:-2], body + b"epilogue\r\n--" + BOUNDARY.encode() + b"\r\nmore"):
        reader = _reader()
        assert len(_feed_all(reader, [tail])) == 3 and reader.complete


def test_reader_part_limit_is_413() -> None:
    reader = _reader(max_part=100)
    with pytest.raises(ProblemError) as err:
        _feed_all(reader, [multipart([(DICOM, b"a" * 100), (DICOM, b"b" * 101)])])
    assert (err.value.status, err.value.code) == (413, "part_too_large")
    assert err.value.extra["part_index"] == 1


def test_reader_total_limit_is_413() -> None:
    body = multipart([(DICOM, b"a" * 500)] * 3)
    reader = _reader(max_total=len(body) - 1)
    with pytest.raises(ProblemError) as err:
        _feed_all(reader, [body[:1000], body[1000:]])
    assert (err.value.status, err.value.code) == (413, "payload_too_large")


def test_reader_truncated_body() -> None:
    body = multipart([(DICOM, b"a" * 50), (DICOM, b"b" * 50)], close=False)
    reader = _reader()
    parts = _feed_all(reader, [body[:-20]])
    assert [p.index for p in parts] == [0] and not reader.complete and reader.open_part == 1


def test_parts_in_flight_are_bounded_by_count_and_bytes() -> None:
    """Stored in parallel, but never more than `parts` at once nor over `budget` bytes (a part
    over the budget alone); outcomes in part order."""
    lock = threading.Lock()
    now = {"n": 0, "bytes": 0}
    peak = {"n": 0, "bytes": 0, "shared": 0}  # shared: bytes while more than one part runs
    release = threading.Event()

    batches: list[list[int]] = []

    def store(parts: list[stow.Part]) -> list[stow.Outcome]:
        size = sum(len(p.data) for p in parts)
        with lock:
            batches.append([p.index for p in parts])
            now["n"] += len(parts)
            now["bytes"] += size
            peak["n"] = max(peak["n"], now["n"])
            peak["bytes"] = max(peak["bytes"], now["bytes"])
            if now["n"] > 1:
                peak["shared"] = max(peak["shared"], now["bytes"])
        release.wait(0.02)  # hold the slot a moment so that others pile up
        with lock:
            now["n"] -= len(parts)
            now["bytes"] -= size
        return [stow.Outcome(p.index, None, str(p.index)) for p in parts]

    sizes = [10, 10, 10, 10, 10, 10, 95, 10, 10, 200, 10]

    async def run() -> list[stow.Outcome]:
        flight = stow._InFlight(store, parts=3, budget=100, batches=2)
        for i, n in enumerate(sizes):
            await flight.submit(stow.Part(i, DICOM, b"x" * n))
        return await flight.outcomes()

    got = asyncio.run(run())
    assert [o.sop_instance_uid for o in got] == [str(i) for i in range(len(sizes))]
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))  # each part once
    assert peak["n"] <= 3
    assert peak["bytes"] == 200 and peak["shared"] <= 100  # the big part went alone


def test_parts_arriving_while_a_batch_is_stored_go_together() -> None:
    """Greedy batching: the first part is stored at once, the ones queued meanwhile in one
    call; a call that raises fails exactly its own parts."""
    started, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def store(parts: list[stow.Part]) -> list[stow.Outcome]:
        batches.append([p.index for p in parts])
        if len(batches) == 1:
            started.set()
            release.wait(5)
        return [stow.Outcome(p.index, None, str(p.index)) for p in parts]

    async def run() -> list[stow.Outcome]:
        flight = stow._InFlight(store, parts=8, budget=1000, batches=1)
        await flight.submit(stow.Part(0, DICOM, b"x"))
        await asyncio.to_thread(started.wait, 5)
        for i in range(1, 6):
            await flight.submit(stow.Part(i, DICOM, b"x"))
        release.set()
        return await flight.outcomes()

    got = asyncio.run(run())
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert [o.sop_instance_uid for o in got] == [str(i) for i in range(6)]


# ---- the response --------------------------------------------------------------------------------


def test_response_reads_back_with_pydicom() -> None:
    outcomes = [
        stow.Outcome(0, "1.2.3", "1.2.3.4"),
        stow.Outcome(1, "1.2.3", "1.2.3.5", DATASET_MISMATCH, "study_mismatch"),
        stow.Outcome(2, None, None, CANNOT_UNDERSTAND, "not_dicom"),
    ]
    ds = Dataset.from_json(stow.response_body(outcomes))
    assert [i.ReferencedSOPInstanceUID for i in ds.ReferencedSOPSequence] == ["1.2.3.4"]
    failed = ds.FailedSOPSequence
    assert [i.FailureReason for i in failed] == [0xA900, 0xC000]
    assert (
        failed[0].ReferencedSOPClassUID == "1.2.3" and "ReferencedSOPInstanceUID" not in failed[1]
    )
    assert ds.RetrieveURL in (None, "")  # type 2: present, empty (no WADO-RS here)
    assert stow.status_of(outcomes) == 202
    assert stow.status_of(outcomes[:1]) == 200
    assert stow.status_of(outcomes[1:]) == 409


# ---- through the app -----------------------------------------------------------------------------


@dataclass
class Stow:
    client: TestClient
    settings: Settings
    keys: dict[str, dict[str, str]]
    root: Path

    def post(self, body: bytes, path: str = "/dicomweb/studies", **headers: str):  # noqa: ANN201
        hdrs = {**self.keys["ingest"], "Content-Type": content_type(), **headers}
        return self.client.post(path, content=body, headers=hdrs)

    def frames(self, sop_uid: str) -> list[DicomFrame]:
        with self.client.app.state.runtime.sessions() as s:
            q = sa.select(DicomFrame).where(DicomFrame.sop_instance_uid == sop_uid)
            return list(s.scalars(q))

    def procedure(self, study_uid: str) -> Procedure | None:
        with self.client.app.state.runtime.sessions() as s:
            return s.scalar(sa.select(Procedure).where(Procedure.external_id == study_uid))


def _app(root: Path, **kw: object) -> Iterator[Stow]:
    url = f"sqlite:///{root / 'endoseek.db'}"
    migrate.upgrade(url)
    settings = make_settings(root, url, dicom_spool_dir=root / "spool", **kw)
    keys = create_keys(url)
    with TestClient(create_app(settings, with_ui=False), raise_server_exceptions=False) as c:
        yield Stow(c, settings, keys, root)


@pytest.fixture(scope="module")
def app_(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stow]:
    """One app for the module (start-up once); originals kept, so the PHI sweep covers them."""
    yield from _app(tmp_path_factory.mktemp("stow"), dicom_keep_originals=True)


def _body(response: object) -> Dataset:
    assert response.headers["content-type"] == JSON, response.text
    return Dataset.from_json(response.json())


def _referenced(ds: Dataset) -> list[str]:
    return [i.ReferencedSOPInstanceUID for i in ds.get("ReferencedSOPSequence", [])]


def _failed(ds: Dataset) -> list[tuple[str | None, int]]:
    return [
        (i.get("ReferencedSOPInstanceUID"), i.FailureReason)
        for i in ds.get("FailedSOPSequence", [])
    ]


def test_all_stored_is_200_and_joined_to_the_study(app_: Stow) -> None:
    study = generate_uid()
    jpeg, native = instance(1, study_uid=study), instance(2, study_uid=study, jpeg=False)
    r = app_.post(multipart([(DICOM, jpeg[0]), (DICOM, native[0])]))
    assert r.status_code == 200
    ds = _body(r)
    assert _referenced(ds) == [jpeg[2], native[2]]
    assert "FailedSOPSequence" not in ds
    proc = app_.procedure(study)
    assert proc is not None and proc.source == "dicomweb"
    for _, sop_class, sop_uid in (jpeg, native):
        rows = app_.frames(sop_uid)
        assert len(rows) == 1 and rows[0].study_uid == study and rows[0].sop_class_uid == sop_class


def test_plain_boundary_no_part_type_and_site_name(tmp_path: Path) -> None:
    for a in _app(tmp_path, dicom_source="endo-site-1"):
        data, _, uid = instance(3)
        body = multipart([(None, data)], boundary="plain123")
        r = a.post(body, **{"Content-Type": content_type("plain123", quoted=False)})
        assert r.status_code == 200 and _referenced(_body(r)) == [uid]
        study = a.frames(uid)[0].study_uid
        assert a.procedure(study).source == "endo-site-1"


def test_same_instance_again_stores_nothing_new(app_: Stow) -> None:
    data, _, uid = instance(4)
    first = app_.post(multipart([(DICOM, data)]))
    again = app_.post(multipart([(DICOM, data), (DICOM, data)]))
    assert first.status_code == again.status_code == 200
    assert _referenced(_body(again)) == [uid, uid]
    assert len(app_.frames(uid)) == 1


def test_mixed_parts_are_202_with_both_sequences(app_: Stow) -> None:
    good = instance(5)
    r = app_.post(multipart([("image/jpeg", b"\xff\xd8\xff\xe0 not dicom"), (DICOM, good[0])]))
    assert r.status_code == 202
    ds = _body(r)
    assert _referenced(ds) == [good[2]]
    assert _failed(ds) == [(None, CANNOT_UNDERSTAND)]
    assert len(app_.frames(good[2])) == 1


def test_nothing_stored_is_409(app_: Stow) -> None:
    ct = vl_endoscopic(synthetic_photo(6), sop_class=CTImageStorage)
    r = app_.post(
        multipart(
            [
                ("text/plain", b"hello"),
                (DICOM, b"\x00" * 200),  # claims DICOM, is not
                (DICOM, to_bytes(ct)),  # DICOM, a SOP class EndoSeek does not take
            ]
        )
    )
    assert r.status_code == 409
    ds = _body(r)
    assert "ReferencedSOPSequence" not in ds
    got = _failed(ds)
    assert got[0] == (None, CANNOT_UNDERSTAND)
    assert got[1][0] is None  # the header check's own code; no UID to name
    assert got[2] == (str(ct.SOPInstanceUID), SOP_CLASS_NOT_SUPPORTED)
    assert app_.frames(str(ct.SOPInstanceUID)) == []


def test_study_route_fails_other_studies_with_a900(app_: Stow) -> None:
    study = generate_uid()
    mine, other = instance(7, study_uid=study), instance(8)
    r = app_.post(multipart([(DICOM, other[0])]), path=f"/dicomweb/studies/{study}")
    assert r.status_code == 409 and _failed(_body(r)) == [(other[2], DATASET_MISMATCH)]
    r = app_.post(multipart([(DICOM, mine[0]), (DICOM, other[0])]), f"/dicomweb/studies/{study}")
    assert r.status_code == 202
    assert _referenced(_body(r)) == [mine[2]]
    assert app_.frames(other[2]) == []
    assert app_.post(multipart([]), "/dicomweb/studies/not-a-uid").status_code == 422


@pytest.mark.parametrize(
    "ctype",
    [
        DICOM,
        f"multipart/form-data; boundary={BOUNDARY}",
        f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}',
    ],
)
def test_wrong_content_type_is_415(app_: Stow, ctype: str) -> None:
    r = app_.post(multipart([(DICOM, instance(9)[0])]), **{"Content-Type": ctype})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"


def test_key_and_scope(app_: Stow) -> None:
    body = multipart([(DICOM, instance(10)[0])])
    r = app_.client.post("/dicomweb/studies", content=body, headers={"Content-Type": DICOM})
    assert r.status_code == 401
    r = app_.post(body, Authorization=app_.keys["search"]["Authorization"])
    assert r.status_code == 403


def test_xml_only_accept_is_406(app_: Stow) -> None:
    r = app_.post(multipart([(DICOM, instance(11)[0])]), Accept="application/dicom+xml")
    assert r.status_code == 406


def test_body_cut_inside_a_part(app_: Stow) -> None:
    """No closing boundary: the whole parts are stored, the cut one is a failed item."""
    good, cut = instance(12), instance(13)
    body = multipart([(DICOM, good[0]), (DICOM, cut[0])], close=False)
    r = app_.post(body[: len(body) - len(cut[0]) // 2])
    assert r.status_code == 202
    ds = _body(r)
    assert _referenced(ds) == [good[2]] and _failed(ds) == [(None, CANNOT_UNDERSTAND)]
    assert app_.frames(cut[2]) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "no_instances"),
        (f"--{BOUNDARY}--\r\n".encode(), "no_instances"),
        (b"garbage that is not multipart at all", "invalid_multipart"),
    ],
)
def test_no_parts_is_400(app_: Stow, body: bytes, code: str) -> None:
    r = app_.post(body)
    assert r.status_code == 400 and r.json()["code"] == code


# ---- faults while storing ------------------------------------------------------------------------


def _raising(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    def store(self: DicomIngest, *_: object) -> None:
        raise exc

    def store_many(self: DicomIngest, *_: object) -> None:
        raise exc

    monkeypatch.setattr(DicomIngest, "store", store)
    monkeypatch.setattr(DicomIngest, "store_many", store_many)


def test_database_down_is_503_for_the_request(app_: Stow, monkeypatch: pytest.MonkeyPatch) -> None:
    _raising(monkeypatch, sa.exc.OperationalError("SELECT", {}, Exception("connection refused")))
    r = app_.post(multipart([(DICOM, instance(14)[0]), (DICOM, instance(15)[0])]))
    assert r.status_code == 503 and r.json()["code"] == "database_unavailable"
    assert int(r.headers["Retry-After"]) >= 1


def test_full_volume_is_out_of_resources(app_: Stow, monkeypatch: pytest.MonkeyPatch) -> None:
    _raising(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    data, _, uid = instance(16)
    r = app_.post(multipart([(DICOM, data)]))
    assert r.status_code == 409 and _failed(_body(r)) == [(uid, OUT_OF_RESOURCES)]


def test_unexpected_error_is_a_failed_item_not_500(
    app_: Stow, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _raising(monkeypatch, RuntimeError("boom Doe^Jane^Q"))
    caplog.set_level(logging.INFO)
    data, _, uid = instance(17)
    r = app_.post(multipart([(DICOM, data)]))
    assert r.status_code == 409 and _failed(_body(r)) == [(uid, PROCESSING_FAILURE)]
    assert "RuntimeError" in caplog.text and "Doe^Jane" not in caplog.text


# ---- limits --------------------------------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Stow]:
    """Tiny limits: REST bodies 1000 bytes, STOW parts 200 kB, STOW bodies 400 kB."""
    yield from _app(
        tmp_path,
        max_request_bytes=1000,
        stow_max_part_bytes=200_000,
        stow_max_request_bytes=400_000,
    )


def test_stow_has_its_own_body_limit(small: Stow) -> None:
    data, _, uid = instance(18)
    assert 1000 < len(data) < 200_000
    r = small.post(multipart([(DICOM, data)]))
    assert r.status_code == 200 and _referenced(_body(r)) == [uid]


def test_part_over_the_limit_is_413(small: Stow) -> None:
    big = instance(19, jpeg=False)  # 320 x 256 x 3 native: 245 kB
    r = small.post(multipart([(DICOM, big[0])]))
    assert r.status_code == 413 and r.json()["code"] == "part_too_large"
    assert small.frames(big[2]) == []


@pytest.mark.parametrize("chunked", [False, True])
def test_body_over_the_limit_is_413(small: Stow, chunked: bool) -> None:
    parts = [instance(20 + i) for i in range(30)]
    body = multipart([(DICOM, p[0]) for p in parts])
    assert len(body) > 400_000
    hdrs = {**small.keys["ingest"], "Content-Type": content_type()}
    content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    r = small.client.post("/dicomweb/studies", content=content, headers=hdrs)
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


# ---- privacy -------------------------------------------------------------------------------------


def test_no_patient_attribute_in_database_files_or_logs(
    app_: Stow, caplog: pytest.LogCaptureFixture
) -> None:
    """Runs after the others in this module: every instance they sent carried the PHI."""
    caplog.set_level(logging.DEBUG)
    study = generate_uid()
    parts = [instance(40 + i, study_uid=study, jpeg=i % 2 == 0) for i in range(3)]
    r = app_.post(multipart([(DICOM, p[0]) for p in parts] + [(DICOM, b"\x00" * 300)]))
    assert r.status_code == 202
    kept = list((app_.settings.storage_dir / "dicom").rglob("*.dcm"))
    assert kept, "originals are kept in this module: the sweep must cover them"
    assert phi_hits([app_.root], [caplog.text, r.text]) == []
