"""Procedures, upload, image views, search, delete through the real app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.db import migrate
from app.db.models import AuditEvent, Embedding, Image
from app.main import create_app
from tests.app.conftest import create_keys, jpeg_bytes, make_settings


def _upload(client: TestClient, headers: dict, pid: str, blobs: list[bytes]):
    files = [("files", (f"f{i}.jpg", b, "image/jpeg")) for i, b in enumerate(blobs)]
    return client.post(f"/v1/procedures/{pid}/images", files=files, headers=headers["ingest"])


def test_health_ready_without_and_with_key(client: TestClient, headers: dict) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200 and r.json()["checks"] == {
        "database": True,
        "model": True,
        "index": True,
        "storage": True,
    }


def test_procedure_create_is_idempotent_and_lists(client: TestClient, headers: dict) -> None:
    body = {"source": "room-1", "external_id": "x-1", "kind": "upper_gi"}
    first = client.post("/v1/procedures", json=body, headers=headers["ingest"])
    again = client.post("/v1/procedures", json=body, headers=headers["ingest"])
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    for i in range(4):
        body = {"source": "room-2", "external_id": f"y-{i}", "kind": "colonoscopy"}
        client.post("/v1/procedures", json=body, headers=headers["ingest"])
    seen, cursor = [], None
    while True:
        params = {"limit": 3, "kind": "colonoscopy"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/procedures", params=params, headers=headers["search"]).json()
        seen += [p["external_id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"y-{i}" for i in range(4)]
    got = client.get(f"/v1/procedures/{first.json()['id']}", headers=headers["search"])
    assert got.json()["external_id"] == "x-1"


def test_upload_duplicate_view_search_delete(
    client: TestClient, headers: dict, procedure: str, synthetic_images, settings
) -> None:
    blobs = [jpeg_bytes(im) for im in synthetic_images]
    r = _upload(client, headers, procedure, blobs)
    assert r.status_code == 201, r.text
    items = r.json()["items"]
    assert [it["duplicate"] for it in items] == [False] * len(blobs)
    again = _upload(client, headers, procedure, blobs[:1]).json()["items"][0]
    assert again["duplicate"] and again["id"] == items[0]["id"]

    uid = items[0]["id"]
    meta = client.get(f"/v1/images/{uid}", headers=headers["search"]).json()
    assert meta["sha256"] == items[0]["sha256"] and meta["width"] == 160
    assert client.get(meta["file_url"], headers=headers["search"]).content == blobs[0]
    thumb = client.get(meta["thumbnail_url"], headers=headers["search"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"

    hits = client.post("/v1/search", json={"image_id": uid, "k": 3}, headers=headers["search"])
    assert hits.status_code == 200, hits.text
    results = hits.json()["results"]
    assert len(results) == 3 and all(h["image"]["id"] != uid for h in results)
    by_upload = client.post(
        "/v1/search",
        files={"file": ("q.jpg", blobs[2], "image/jpeg")},
        data={"k": "1"},
        headers=headers["search"],
    ).json()["results"]
    assert by_upload[0]["image"]["id"] == items[2]["id"] and by_upload[0]["score"] > 0.99

    assert client.delete(f"/v1/images/{uid}", headers=headers["search"]).status_code == 403
    assert client.delete(f"/v1/images/{uid}", headers=headers["admin"]).status_code == 204
    assert client.get(f"/v1/images/{uid}", headers=headers["search"]).status_code == 404
    rt = client.app.state.runtime
    with rt.sessions() as s:
        live = s.scalars(sa.select(Image.id).where(Image.deleted_at.is_(None))).all()
        assert sorted(live) == rt.index.index.ids().tolist()
        assert s.scalar(sa.select(sa.func.count()).select_from(Embedding)) == len(live)
        actions = set(s.scalars(sa.select(AuditEvent.action)))
    assert {"search", "image.view", "image.delete"} <= actions
    files = list(settings.storage_dir.glob("??/??/*"))
    assert len(files) == len(blobs) - 1


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_client(request, tmp_path: Path, sqlite_url: str) -> Iterator[tuple[TestClient, dict]]:
    """The app on SQLite and on PostgreSQL (search filters are bound SQL on both)."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("fresh_pg_url")
    migrate.upgrade(url)
    app = create_app(make_settings(tmp_path, url), with_ui=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, create_keys(url)


def test_search_filters(any_db_client: tuple[TestClient, dict], synthetic_images) -> None:
    client, headers = any_db_client
    pids = []
    for i, kind in enumerate(("colonoscopy", "upper_gi")):
        body = {"source": "f", "external_id": str(i), "kind": kind}
        pids.append(
            client.post("/v1/procedures", json=body, headers=headers["ingest"]).json()["id"]
        )
    a = _upload(client, headers, pids[0], [jpeg_bytes(im) for im in synthetic_images[:3]])
    b = _upload(client, headers, pids[1], [jpeg_bytes(im) for im in synthetic_images[3:]])
    a_ids = [it["id"] for it in a.json()["items"]]
    b_ids = [it["id"] for it in b.json()["items"]]
    client.post(f"/v1/images/{b_ids[0]}/labels", json={"label": "cecum"}, headers=headers["label"])

    def ids(**kw) -> list[str]:
        body = {"image_id": a_ids[0], "k": 10} | kw
        r = client.post("/v1/search", json=body, headers=headers["search"])
        assert r.status_code == 200, r.text
        return [h["image"]["id"] for h in r.json()["results"]]

    assert set(ids()) == set(a_ids[1:] + b_ids)
    assert set(ids(exclude_own_procedure=True)) == set(b_ids)
    assert set(ids(procedure_kind="upper_gi")) == set(b_ids)
    assert set(ids(procedure_id=pids[0])) == set(a_ids[1:])
    assert ids(label="cecum") == [b_ids[0]]
    # every hit lists all of its labels, the same as the image view (labels come by join)
    body = {"image_id": a_ids[0], "k": 10}
    for hit in client.post("/v1/search", json=body, headers=headers["search"]).json()["results"]:
        shown = client.get(f"/v1/images/{hit['image']['id']}", headers=headers["search"]).json()

        def key(lab: dict) -> tuple:
            return lab["label"], lab["source"]

        assert sorted(hit["image"]["labels"], key=key) == sorted(shown["labels"], key=key)
        if hit["image"]["id"] == b_ids[0]:
            assert "cecum" in [lab["label"] for lab in hit["image"]["labels"]]
    assert ids(date_from="2000-01-01T00:00:00Z", date_to="2001-01-01T00:00:00Z") == []
    assert set(ids(date_from="2000-01-01T00:00:00Z", date_to="2100-01-01T00:00:00+02:00")) == set(
        a_ids[1:] + b_ids
    )
    assert ids(procedure_kind="upper_gi", label="cecum", exclude_own_procedure=True) == [b_ids[0]]
    assert ids(procedure_kind="colonoscopy", label="cecum") == []
    assert set(ids(procedure_id=pids[1], date_to="2100-01-01T00:00:00Z")) == set(b_ids)
    scores = [
        h["score"]
        for h in client.post(
            "/v1/search", json={"image_id": a_ids[0], "k": 5}, headers=headers["search"]
        ).json()["results"]
    ]
    assert scores == sorted(scores, reverse=True)
    assert np.all(np.array(scores) <= 1.0001)


def test_models_and_metrics(client: TestClient, headers: dict, procedure, synthetic_images):
    _upload(client, headers, procedure, [jpeg_bytes(synthetic_images[0])])
    models = client.get("/v1/models", headers=headers["search"]).json()
    assert len(models) == 1 and models[0]["active"]
    assert client.get("/metrics", headers=headers["search"]).status_code == 403
    text = client.get("/metrics", headers=headers["admin"]).text
    for step in ("decode", "embed", "database", "index"):
        assert f'endoseek_step_seconds_count{{op="ingest",step="{step}"}} 1.0' in text


def test_index_search_threads_come_from_settings(client: TestClient, tmp_path: Path) -> None:
    from app.services.index_service import IndexService

    rt = client.app.state.runtime
    assert rt.settings.index_search_threads == 1 and rt.index.index.search_threads == 1
    every_core = make_settings(tmp_path, rt.settings.database_url, index_search_threads=0)
    index = IndexService.for_model(rt.sessions, every_core, rt.index.model_id, rt.index.dim)
    assert index.build(rt.index.model_id, rt.index.dim).search_threads is None
