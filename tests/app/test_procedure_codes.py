"""Pseudonymous room and operator codes on procedures: API, idempotent create, list filters,
DICOM mapping (station name / calling AE -> room; operator name -> keyed pseudonym only)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.db import migrate
from app.dicom.identity import (
    Identity,
    identity_of,
    operator_pseudonym,
    room_code,
    with_calling_aet,
)
from app.main import create_app
from app.settings import Settings
from tests.app.conftest import create_keys, make_settings
from tests.app.dicom import factory


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_client(request, tmp_path: Path, sqlite_url: str) -> Iterator[tuple[TestClient, dict]]:
    """The app on SQLite and on PostgreSQL."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("fresh_pg_url")
    migrate.upgrade(url)
    app = create_app(make_settings(tmp_path, url), with_ui=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, create_keys(url)


def _create(client: TestClient, headers: dict, external_id: str, **codes: str):
    body = {"source": "endo", "external_id": external_id, "kind": "colonoscopy", **codes}
    return client.post("/v1/procedures", json=body, headers=headers["ingest"])


def test_codes_create_get_list_filter(db_client: tuple[TestClient, dict]) -> None:
    client, headers = db_client
    r = _create(client, headers, "p1", room="room-3", operator="op-17")
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["room"], made["operator"]) == ("room-3", "op-17")
    assert _create(client, headers, "p2", room="room-4").status_code == 201
    plain = _create(client, headers, "p3").json()
    assert (plain["room"], plain["operator"]) == (None, None)

    got = client.get(f"/v1/procedures/{made['id']}", headers=headers["search"]).json()
    assert (got["room"], got["operator"]) == ("room-3", "op-17")

    def ids(**params: str) -> list[str]:
        r = client.get("/v1/procedures", params=params, headers=headers["search"])
        assert r.status_code == 200, r.text
        return [p["external_id"] for p in r.json()["items"]]

    assert ids() == ["p1", "p2", "p3"]
    assert ids(room="room-3") == ["p1"]
    assert ids(room="room-4") == ["p2"]
    assert ids(operator="op-17") == ["p1"]
    assert ids(room="room-4", operator="op-17") == []
    bad = client.get("/v1/procedures", params={"room": "a b"}, headers=headers["search"])
    assert bad.status_code == 422


@pytest.mark.parametrize(
    "field,value",
    [
        ("operator", "John Smith"),
        ("room", "Dr. Who"),
        ("operator", "Smith^John"),
        ("room", "-x"),
        ("operator", "x" * 33),
        ("room", ""),
    ],
)
def test_name_like_code_is_refused(client: TestClient, headers: dict, field, value) -> None:
    r = _create(client, headers, "p1", **{field: value})
    assert r.status_code == 422, r.text
    if value.strip() and len(value) <= 32:
        assert "pseudonymous" in r.text
    assert value not in r.text or value in ("", "-x")  # the refused value is not echoed


def test_repeated_create_fills_never_overwrites(db_client: tuple[TestClient, dict]) -> None:
    client, headers = db_client
    first = _create(client, headers, "p1", room="room-3")
    assert first.status_code == 201
    # a repeat without codes: unchanged
    again = _create(client, headers, "p1")
    assert again.status_code == 200 and again.json()["room"] == "room-3"
    # a repeat may fill the empty operator code
    filled = _create(client, headers, "p1", room="room-3", operator="op-9")
    assert filled.status_code == 200
    assert (filled.json()["room"], filled.json()["operator"]) == ("room-3", "op-9")
    # a different code is a conflict, and nothing changes
    clash = _create(client, headers, "p1", room="room-5")
    assert clash.status_code == 409, clash.text
    assert clash.json()["code"] == "procedure_code_conflict"
    got = client.get(f"/v1/procedures/{first.json()['id']}", headers=headers["search"]).json()
    assert (got["room"], got["operator"]) == ("room-3", "op-9")


def test_service_keep_mode_keeps_first_code(settings: Settings) -> None:
    from app.db.session import create_db_engine, create_session_factory
    from app.services import procedures

    factory_ = create_session_factory(create_db_engine(settings.database_url))
    with factory_() as s:
        row, created = procedures.create(s, "dicom", "1.2.3", "other", None, room="A", codes="keep")
        assert created
        row, created = procedures.create(
            s, "dicom", "1.2.3", "other", None, room="B", operator="op-x", codes="keep"
        )
        assert not created and (row.room, row.operator) == ("A", "op-x")


# ---- DICOM mapping (pure) -------------------------------------------------------------------

KEY = "not-a-real-secret"


def _ds(**attrs: str):
    ds = factory.vl_endoscopic(factory.synthetic_photo(0, size=(16, 16)))
    for name in ("StationName", "PerformingPhysicianName", "OperatorsName"):
        if name in ds:
            del ds[name]
    for name, value in attrs.items():
        setattr(ds, name, value)
    return ds


def _hmac(name: str) -> str:
    return "op-" + hmac.new(KEY.encode(), name.encode(), hashlib.sha256).hexdigest()[:10]


def test_station_name_becomes_room() -> None:
    ident = identity_of(_ds(StationName="ENDO ROOM 3"), Settings(_env_file=None))
    assert ident.room == "ENDO-ROOM-3"
    none = identity_of(_ds(StationName="ENDO3"), Settings(_env_file=None, dicom_room_from="none"))
    assert none.room is None
    assert identity_of(_ds(), Settings(_env_file=None)).room is None


def test_room_from_calling_aet() -> None:
    settings = Settings(_env_file=None, dicom_room_from="calling_aet")
    ident = identity_of(_ds(StationName="ENDO3"), settings)
    assert ident.room is None  # station name not used in this mode
    assert with_calling_aet(ident, "SCOPE_7", settings).room == "SCOPE_7"
    default = Settings(_env_file=None)
    base = identity_of(_ds(StationName="ENDO3"), default)
    assert with_calling_aet(base, "SCOPE_7", default).room == "ENDO3"


def test_room_code_sanitising() -> None:
    assert room_code("  Endo  Raum 2 ") == "Endo-Raum-2"
    assert room_code("Ü") is None
    assert room_code("") is None
    assert room_code("__x__") == "x"
    assert room_code("a" * 40) == "a" * 32


def test_operator_only_as_keyed_pseudonym() -> None:
    ds = _ds(PerformingPhysicianName="Scope^Ann", OperatorsName="Nurse^Bob")
    assert identity_of(ds, Settings(_env_file=None)).operator is None  # no key: no operator
    keyed = Settings(_env_file=None, pseudonym_key=SecretStr(KEY))
    ident = identity_of(ds, keyed)
    assert ident.operator == _hmac("scope ann")  # the performing physician first
    assert "Scope" not in str(ident.to_json()) and "Ann" not in str(ident.to_json())
    assert operator_pseudonym("SCOPE^ANN", KEY) == operator_pseudonym(" scope  ann ", KEY)
    assert operator_pseudonym("Scope^Ann", "other-key") != ident.operator
    only_op = identity_of(_ds(OperatorsName="Nurse^Bob"), keyed)
    assert only_op.operator == _hmac("nurse bob")
    assert identity_of(_ds(), keyed).operator is None
    # the spool sidecar carries the codes; anything but a pseudonym is dropped on the way back
    back = Identity.from_json(ident.to_json())
    assert back == ident
    assert Identity.from_json({**ident.to_json(), "operator": "Scope^Ann"}).operator is None
