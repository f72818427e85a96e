"""Documentation through the service: ingest hook, labels, reports, listing, model change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.db import migrate
from app.db.models import AuditEvent, Image, Label
from app.db.session import create_db_engine
from app.documentation.service import documentation_of
from embedder import Embedder
from tests.app.documentation.service_support import (
    OUTSIDE,
    Photos,
    Service,
    add_gallery,
    calibrate,
    jpeg,
    running_service,
    statuses,
)


def test_two_of_three_landmarks_are_documented_and_one_is_missing(
    svc: Service, photos: Photos
) -> None:
    proc = svc.procedure("two-of-three")
    items = svc.upload(
        proc, [photos.procedure_photo("ileum"), photos.procedure_photo("retroflex-rectum")]
    )
    # the ingest answer names the landmark and the requirement each photo now fulfils
    assert [i["landmark"]["label"] for i in items] == ["ileum", "retroflex-rectum"]
    assert [i["fulfils"] for i in items] == [["ileum"], ["retroflex-rectum"]]
    doc = svc.documentation(proc)
    assert doc["standard"]["id"] == "landmarks-colonoscopy" and doc["standard"]["verified"]
    assert doc["calibrated"] and doc["model_id"] == svc.rt.index.model_id
    assert statuses(doc) == {
        "cecum": "missing",
        "ileum": "documented",
        "retroflex-rectum": "documented",
    }
    assert doc["completeness"] == pytest.approx(2 / 3) and doc["complete"] is False
    best = {r["id"]: r["best"] for r in doc["requirements"]}
    assert best["cecum"] is None
    assert best["ileum"]["image_id"] == items[0]["id"]
    assert best["ileum"]["thumbnail_url"] == f"/v1/images/{items[0]['id']}/thumbnail"
    assert best["ileum"]["source"] == "predicted" and best["ileum"]["score"] > 0.9
    # the prediction is stored with its score and model
    with svc.rt.sessions() as s:
        ids = [uuid.UUID(i["id"]) for i in items]
        q = sa.select(Label).join(Image).where(Label.source == "predicted", Image.uid.in_(ids))
        rows = s.scalars(q).all()
    assert sorted(r.label for r in rows) == ["ileum", "retroflex-rectum"]
    assert {r.model_id for r in rows} == {svc.rt.index.model_id}


def test_a_photo_outside_the_gallery_is_unrecognised(svc: Service, photos: Photos) -> None:
    proc = svc.procedure("outside")
    (item,) = svc.upload(proc, [jpeg(photos.heldout[OUTSIDE][0])])
    assert item["landmark"]["label"] == "unrecognised" and item["fulfils"] == []
    doc = svc.documentation(proc)
    assert "documented" not in statuses(doc).values()


def test_a_manual_label_documents_and_clearing_it_undoes(svc: Service, photos: Photos) -> None:
    proc = svc.procedure("manual")
    (item,) = svc.upload(proc, [jpeg(photos.heldout["cecum"][0])])
    r = svc.label(item["id"], "cecum", reference=False)
    assert r.status_code == 200 and [(x["label"], x["source"]) for x in r.json()["labels"]][-1] == (
        "cecum",
        "manual",
    )
    doc = svc.documentation(proc)
    assert statuses(doc)["cecum"] == "documented"
    assert next(x for x in doc["requirements"] if x["id"] == "cecum")["best"]["source"] == "manual"
    cleared = svc.client.delete(f"/v1/images/{item['id']}/label", headers=svc.headers["label"])
    assert cleared.status_code == 200
    assert all(x["source"] == "predicted" for x in cleared.json()["labels"])
    with svc.rt.sessions() as s:
        actions = s.scalars(sa.select(AuditEvent.action).where(AuditEvent.target == item["id"]))
        assert {"image.label.set", "image.label.clear"} <= set(actions)


def test_a_new_reference_photo_joins_the_gallery_at_once(svc: Service, photos: Photos) -> None:
    docs = documentation_of(svc.rt)
    model_id, dim = docs.model
    with svc.rt.sessions() as s:
        before = len(docs.gallery.get(s, model_id, dim).labels)
    proc = svc.procedure("more-references", kind="other")
    (item,) = svc.upload(proc, [jpeg(photos.heldout["ileum"][1])])
    assert svc.label(item["id"], "ileum").status_code == 200
    with svc.rt.sessions() as s:
        assert len(docs.gallery.get(s, model_id, dim).labels) == before + 1
    assert (
        svc.client.delete(
            f"/v1/images/{item['id']}/label", headers=svc.headers["label"]
        ).status_code
        == 200
    )
    with svc.rt.sessions() as s:
        assert len(docs.gallery.get(s, model_id, dim).labels) == before


def test_labels_need_the_label_scope_and_a_valid_name(svc: Service, photos: Photos) -> None:
    proc = svc.procedure("scopes")
    (item,) = svc.upload(proc, [jpeg(photos.heldout["ileum"][2])])
    url = f"/v1/images/{item['id']}/label"
    body = {"label": "ileum", "reference": True}
    assert svc.client.put(url, json=body, headers=svc.headers["search"]).status_code == 403
    for bad in ("Ileum", "unrecognised", "a b"):
        r = svc.client.put(url, json={"label": bad}, headers=svc.headers["label"])
        assert r.status_code == 422, bad
        assert r.headers["content-type"].startswith("application/problem+json")
    # the older POST route shares the implementation (one human label per photo)
    post = f"/v1/images/{item['id']}/labels"
    for label in ("ileum", "cecum"):
        assert (
            svc.client.post(post, json={"label": label}, headers=svc.headers["label"]).status_code
            == 201
        )
    labels = svc.client.get(f"/v1/images/{item['id']}", headers=svc.headers["search"]).json()
    assert [x["label"] for x in labels["labels"] if x["source"] == "manual"] == ["cecum"]


def test_unknown_standard_is_a_404_problem(svc: Service) -> None:
    proc = svc.procedure("unknown-standard")
    url = f"/v1/procedures/{proc}/documentation"
    r = svc.client.get(url, params={"standard": "no-such"}, headers=svc.headers["search"])
    assert r.status_code == 404 and r.json()["code"] == "standard_not_found"
    assert r.headers["content-type"].startswith("application/problem+json")
    r = svc.client.get(
        url, params={"standard": "landmarks-upper-gi"}, headers=svc.headers["search"]
    )
    assert r.status_code == 422 and r.json()["code"] == "standard_kind_mismatch"
    assert svc.client.get(url, headers=svc.headers["ingest"]).status_code == 403
    esge = svc.documentation(proc, standard="esge-colonoscopy-9")
    assert esge["standard"]["id"] == "esge-colonoscopy-9"


def test_listing_of_incomplete_colonoscopies_of_the_last_week(svc: Service, photos: Photos) -> None:
    now = datetime.now(UTC)
    recent = (now - timedelta(days=2)).isoformat()
    old = svc.procedure("old", performed_at=(now - timedelta(days=30)).isoformat())
    partial = [svc.procedure(f"partial-{i}", performed_at=recent) for i in range(3)]
    complete = svc.procedure("complete", performed_at=recent)
    svc.procedure("upper", kind="upper_gi", performed_at=recent)
    svc.upload(complete, [photos.procedure_photo(lab) for lab in ("ileum", "retroflex-rectum")])
    assert (
        svc.label(
            svc.upload(complete, [jpeg(photos.heldout["cecum"][3])])[0]["id"],
            "cecum",
            reference=False,
        ).status_code
        == 200
    )
    svc.upload(old, [photos.procedure_photo("ileum", 1)])
    params = {
        "kind": "colonoscopy",
        "since": (now - timedelta(days=7)).isoformat(),
        "complete": "false",
        "limit": "2",
    }
    seen, cursor = [], None
    for _ in range(5):
        page = svc.client.get(
            "/v1/documentation",
            params={**params, **({"cursor": cursor} if cursor else {})},
            headers=svc.headers["search"],
        )
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 2
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(i["procedure"]["id"] for i in seen) == sorted(partial)
    assert all(i["missing"] == ["cecum", "ileum", "retroflex-rectum"] for i in seen)
    done = svc.client.get(
        "/v1/documentation",
        params={"kind": "colonoscopy", "complete": "true"},
        headers=svc.headers["search"],
    ).json()
    assert [i["procedure"]["id"] for i in done["items"]] == [complete]
    assert done["items"][0]["completeness"] == 1.0 and done["next_cursor"] is None


def test_activating_another_model_reembeds_the_gallery_and_reports_follow(
    svc: Service, photos: Photos, bundle_b: Path
) -> None:
    from app.services import reindex
    from app.services.job_exec import JobContext

    proc = svc.procedure("switch")
    svc.upload(proc, [photos.procedure_photo(lab) for lab in ("ileum", "retroflex-rectum")])
    old_model = svc.rt.index.model_id
    assert statuses(svc.documentation(proc))["ileum"] == "documented"

    ctx = JobContext.from_runtime(svc.rt)  # the server runs the job: it swaps its runtime
    job = reindex.start_reindex(ctx, bundle_b)
    assert reindex.run_reindex(ctx, job.id) == "completed"
    new_model = svc.rt.index.model_id
    assert new_model != old_model and svc.rt.embedder.bundle_id == new_model

    docs = documentation_of(svc.rt)
    with svc.rt.sessions() as s:
        gallery = docs.gallery.get(s, new_model, svc.rt.index.dim)
    assert len(gallery.labels) == sum(len(v) for v in photos.gallery.values())
    doc = svc.documentation(proc)  # no thresholds for the new model yet: at best uncertain
    assert doc["model_id"] == new_model and not doc["calibrated"]
    assert statuses(doc) == {
        "cecum": "missing",
        "ileum": "uncertain",
        "retroflex-rectum": "uncertain",
    }
    calibrate(svc, photos, Embedder.from_bundle(bundle_b, device="cpu"))
    doc = svc.documentation(proc)
    assert doc["calibrated"]
    assert statuses(doc) == {
        "cecum": "missing",
        "ileum": "documented",
        "retroflex-rectum": "documented",
    }
    with svc.rt.sessions() as s:
        models = s.scalars(sa.select(Label.model_id).where(Label.source == "predicted")).all()
    # the two procedure photos, not the reference photos (human labels need no prediction)
    assert models.count(new_model) == 2 and old_model in models
    # a photo ingested now is predicted by the new model's gallery
    (item,) = svc.upload(svc.procedure("after-switch"), [photos.procedure_photo("ileum", 2)])
    assert item["landmark"]["label"] == "ileum" and item["fulfils"] == ["ileum"]


@pytest.mark.postgres
def test_documentation_on_postgresql(tmp_path: Path, pg_url: str, photos: Photos) -> None:
    migrate.upgrade(pg_url)
    engine = create_db_engine(pg_url)
    with engine.begin() as conn:  # the database is shared by this test session
        for table in ("labels", "embeddings", "images", "procedures", "jobs", "models"):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    engine.dispose()
    with running_service(tmp_path, pg_url) as service:
        add_gallery(service, photos)
        calibrate(service, photos, service.rt.embedder)
        proc = service.procedure("pg")
        labels = ("ileum", "retroflex-rectum")
        service.upload(proc, [photos.procedure_photo(lab) for lab in labels])
        doc = service.documentation(proc)
        assert statuses(doc) == {
            "cecum": "missing",
            "ileum": "documented",
            "retroflex-rectum": "documented",
        }
