"""GET /v1/procedures/{id}/images (pages of photos with labels, landmark and links) and
finding a procedure by the device's own ids (GET /v1/procedures?source=&external_id=)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.db import migrate
from app.main import create_app
from tests.app.conftest import create_keys, jpeg_bytes, make_settings
from tests.app.documentation.service_support import (
    OUTSIDE,
    Photos,
    add_gallery,
    calibrate,
    jpeg,
    make_photos,
    running_service,
)

NIL = "00000000-0000-4000-8000-000000000000"


def _photo(i: int) -> bytes:
    return jpeg_bytes(Image.new("RGB", (48, 48), (20 + 9 * i, 200 - 7 * i, 90)))


def _pages(client: TestClient, pid: str, headers: dict, limit: int) -> list[dict]:
    """Every page of the listing, following next_cursor to the end."""
    pages, cursor = [], None
    while True:
        params: dict[str, str | int] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        r = client.get(f"/v1/procedures/{pid}/images", params=params, headers=headers)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'p.db'}"
    return request.getfixturevalue("fresh_pg_url")


def test_pages_hold_every_live_photo_once_oldest_first(tmp_path: Path, db_url: str) -> None:
    migrate.upgrade(db_url)
    keys = create_keys(db_url)
    with TestClient(create_app(make_settings(tmp_path, db_url), with_ui=False)) as c:
        pid = c.post(
            "/v1/procedures", json={"source": "s", "external_id": "pages"}, headers=keys["ingest"]
        ).json()["id"]
        other = c.post(
            "/v1/procedures", json={"source": "s", "external_id": "other"}, headers=keys["ingest"]
        ).json()["id"]
        uploaded = []
        for i in range(5):  # one request each: distinct created_at, so the order is known
            r = c.post(
                f"/v1/procedures/{pid}/images",
                files={"files": (f"{i}.jpg", _photo(i), "image/jpeg")},
                headers=keys["ingest"],
            )
            assert r.status_code == 201, r.text
            uploaded.append(r.json()["items"][0]["id"])
        c.post(
            f"/v1/procedures/{other}/images",
            files={"files": ("x.jpg", _photo(9), "image/jpeg")},
            headers=keys["ingest"],
        )
        assert c.delete(f"/v1/images/{uploaded[2]}", headers=keys["admin"]).status_code == 204

        pages = _pages(c, pid, keys["search"], limit=2)
        assert [len(p["items"]) for p in pages] == [2, 2]
        items = [item for p in pages for item in p["items"]]
        live = uploaded[:2] + uploaded[3:]
        assert [i["id"] for i in items] == live  # no deleted photo, no other procedure's
        created = [datetime.fromisoformat(i["created_at"]) for i in items]
        assert created == sorted(created)
        assert all(i["procedure_id"] == pid for i in items)
        # one page of everything: no cursor to follow
        whole = _pages(c, pid, keys["search"], limit=200)
        assert len(whole) == 1 and [i["id"] for i in whole[0]["items"]] == live
        # no reference gallery yet: no prediction, so no landmark
        assert all(i["landmark"] is None and i["labels"] == [] for i in items)


def test_links_lead_to_the_photo(client: TestClient, headers: dict, procedure: str) -> None:
    data = _photo(1)
    r = client.post(
        f"/v1/procedures/{procedure}/images",
        files={"files": ("a.jpg", data, "image/jpeg")},
        headers=headers["ingest"],
    )
    uid = r.json()["items"][0]["id"]
    (item,) = _pages(client, procedure, headers["search"], limit=10)[0]["items"]
    assert item["url"] == f"/v1/images/{uid}"
    assert item["file_url"] == f"/v1/images/{uid}/file"
    assert item["thumbnail_url"] == f"/v1/images/{uid}/thumbnail"
    assert client.get(item["url"], headers=headers["search"]).json()["id"] == uid
    assert client.get(item["file_url"], headers=headers["search"]).content == data
    thumb = client.get(item["thumbnail_url"], headers=headers["search"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_unknown_procedure_scope_and_bad_cursor(
    client: TestClient, headers: dict, procedure: str
) -> None:
    r = client.get(f"/v1/procedures/{NIL}/images", headers=headers["search"])
    assert r.status_code == 404 and r.json()["code"] == "procedure_not_found"
    assert r.headers["content-type"].startswith("application/problem+json")
    for scope in ("ingest", "label"):
        r = client.get(f"/v1/procedures/{procedure}/images", headers=headers[scope])
        assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    assert client.get(f"/v1/procedures/{procedure}/images").status_code == 401
    assert client.get(f"/v1/procedures/{procedure}/images", headers=headers["admin"]).is_success
    r = client.get(
        f"/v1/procedures/{procedure}/images", params={"cursor": "nope"}, headers=headers["search"]
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_cursor"
    for limit in (0, 201):
        r = client.get(
            f"/v1/procedures/{procedure}/images", params={"limit": limit}, headers=headers["search"]
        )
        assert r.status_code == 422


def test_operation_is_in_the_openapi_document(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/procedures/{procedure_id}/images"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"procedure_id", "limit", "cursor"}
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ProcedureImagePage")
    assert "post" in spec["paths"]["/v1/procedures/{procedure_id}/images"]  # upload kept


@pytest.fixture(scope="module")
def photos() -> Photos:
    return make_photos()


def test_labels_and_predicted_landmark(tmp_path: Path, sqlite_url: str, photos: Photos) -> None:
    with running_service(tmp_path, sqlite_url) as svc:
        add_gallery(svc, photos)
        calibrate(svc, photos, svc.rt.embedder)
        pid = svc.procedure("landmarks")
        ileum, outside, rectum = (
            svc.upload(pid, [p])[0]
            for p in (
                photos.procedure_photo("ileum"),
                jpeg(photos.heldout[OUTSIDE][0]),
                photos.procedure_photo("retroflex-rectum"),
            )
        )
        assert svc.label(rectum["id"], "cecum", reference=False).status_code == 200
        pages = _pages(svc.client, pid, svc.headers["search"], limit=2)
        items = {i["id"]: i for p in pages for i in p["items"]}
        assert list(items) == [ileum["id"], outside["id"], rectum["id"]]
        # the landmark is the ingest answer's: same label and score
        for uploaded in (ileum, outside, rectum):
            assert items[uploaded["id"]]["landmark"] == uploaded["landmark"]
        assert items[ileum["id"]]["landmark"]["label"] == "ileum"
        assert items[ileum["id"]]["landmark"]["score"] > 0.9
        assert items[outside["id"]]["landmark"]["label"] == "unrecognised"
        assert items[ileum["id"]]["labels"] == [
            {"label": "ileum", "source": "predicted", "score": ileum["landmark"]["score"]}
        ]
        # a staff label is listed with the prediction, which stays the landmark
        labels = {(lab["label"], lab["source"]) for lab in items[rectum["id"]]["labels"]}
        assert labels == {("retroflex-rectum", "predicted"), ("cecum", "manual")}
        assert items[rectum["id"]]["landmark"]["label"] == "retroflex-rectum"


def test_find_a_procedure_by_source_external_id_or_both(client: TestClient, headers: dict) -> None:
    made = {}
    for source, external in (("room-1", "A"), ("room-1", "B"), ("room-2", "A")):
        r = client.post(
            "/v1/procedures",
            json={"source": source, "external_id": external},
            headers=headers["ingest"],
        )
        made[source, external] = r.json()["id"]

    def find(**params: str) -> set[str]:
        r = client.get("/v1/procedures", params=params, headers=headers["search"])
        assert r.status_code == 200, r.text
        return {p["id"] for p in r.json()["items"]}

    assert find(source="room-1") == {made["room-1", "A"], made["room-1", "B"]}
    assert find(external_id="A") == {made["room-1", "A"], made["room-2", "A"]}
    assert find(source="room-2", external_id="A") == {made["room-2", "A"]}
    assert find(source="room-2", external_id="B") == set()
    assert find() == set(made.values())
