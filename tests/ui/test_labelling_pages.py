"""Guided labelling pages on the real app (TestClient) over the `endoseek demo` archive
(SYNTHETIC): the reference gallery, a landmark's page, suggestions, labels from the
vocabulary only, keyboard shortcuts and re-calibration from the UI."""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.db.models import AuditEvent, Image, Label
from app.db.session import create_db_engine, create_session_factory
from app.services import keys
from tests.ui.conftest import Archive

sys.path.insert(0, str(Path(__file__).parent))
from serve import build  # noqa: E402


@dataclass
class Env:
    archive: Archive
    client: TestClient
    factory: object

    def sign_in(self, scopes: list[str]) -> str:
        """Sign the client in with a new key of `scopes`; returns the page's CSRF token."""
        with self.factory() as db:  # type: ignore[operator]
            _, key = keys.create_key(db, "ui-labelling-test", scopes)
            db.commit()
        self.client.cookies.clear()
        page = self.client.get("/ui/sign-in").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        r = self.client.post("/ui/sign-in", data={"api_key": key, "csrf_token": token})
        assert r.status_code == 200, r.text[:300]
        return re.search(r'name="csrf-token" content="([^"]+)"', r.text).group(1)


@pytest.fixture(scope="module")
def env(module_archive: Archive) -> Iterator[Env]:
    factory = create_session_factory(create_db_engine(module_archive.database_url))
    with TestClient(build()) as client:
        yield Env(module_archive, client, factory)


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _rows(html: str) -> dict[str, tuple[str, str]]:
    """label -> (status, row text) of the gallery's landmark table."""
    rows = re.findall(r'<tr data-label="([^"]+)" data-status="([^"]+)">(.*?)</tr>', html, re.S)
    return {label: (status, _text(body)) for label, status, body in rows}


def _suggested(html: str) -> list[str]:
    section = html.split('id="suggestions-section"', 1)[1]
    return re.findall(r'<li class="card" id="img-([0-9a-f-]{36})"', section)


def test_gallery_page_shows_references_thresholds_and_what_is_missing(env: Env) -> None:
    env.sign_in(["search"])
    r = env.client.get("/ui/gallery")
    assert r.status_code == 200
    assert 'href="/ui/gallery" aria-current="page"' in r.text  # in the main navigation
    rows = _rows(r.text)
    for label in ("z-line", "pylorus", "cecum", "ileum"):  # the demo's recognised landmarks
        status, text = rows[label]
        assert status == "ok", (label, text)
        assert " 40 " in text and "precision" in text  # references, and held-out numbers
    for label in ("retroflex-stomach", "retroflex-rectum"):  # no references in the demo
        assert rows[label][0] == "no_references"
        assert "No reference photos" in rows[label][1]
    assert rows["appendiceal-orifice"][0] == "alternative"  # cecum documents its requirement
    assert rows["polyp"][0] == "unreachable" and "general label" in rows["polyp"][1]
    assert 'id="calibrate"' not in r.text  # a viewer cannot re-calibrate
    suggested = _suggested(r.text)
    assert 1 <= len(suggested) <= 10
    assert "data-label-form" not in r.text  # ... nor label
    # retroflexed views have no references: photos unlike every reference are suggested
    assert 'data-why="novel"' in r.text and "it may show retroflex" in r.text
    assert 'class="why"' in r.text


def test_a_landmark_page_and_labels_outside_the_vocabulary(env: Env) -> None:
    env.sign_in(["search"])
    r = env.client.get("/ui/gallery/pylorus")
    assert r.status_code == 200
    facts = _text(re.search(r'<dl class="facts" id="landmark-facts">.*?</dl>', r.text, re.S)[0])
    assert "Reference photos 40" in facts and "Held-out precision 0." in facts
    assert "target 0.80" in facts  # the demo's target precision
    assert len(re.findall(r'alt="Reference photo \d+ of pylorus"', r.text)) == 40
    assert 'id="uncertain"' in r.text
    empty = env.client.get("/ui/gallery/retroflex-stomach")
    assert empty.status_code == 200 and "No reference photos of retroflex-stomach" in empty.text
    assert 'data-why="novel"' in empty.text  # where to start labelling it
    assert env.client.get("/ui/gallery/not-a-landmark").status_code == 404
    assert env.client.get("/ui/gallery/Z%20line").status_code == 404


def test_label_forms_offer_the_vocabulary_with_shortcut_keys(env: Env) -> None:
    env.sign_in(["search", "label"])
    listing = env.client.get("/ui/procedures?kind=upper_gi").text
    pid = re.findall(r'href="/ui/procedures/([0-9a-f-]{36})"', listing)[0]
    page = env.client.get(f"/ui/procedures/{pid}").text
    forms = re.findall(r"<form[^>]*data-label-form.*?</form>", page, re.S)
    assert forms and all('<select id="lab-' in f and 'type="text"' not in f for f in forms)
    keyed = re.findall(r'<option value="([^"]+)" data-key="([^"]+)"', forms[0])
    assert keyed[:3] == [("z-line", "1"), ("pylorus", "2"), ("retroflex-stomach", "3")]
    assert ("polyp", "4") in keyed
    options = re.findall(r'<option value="([a-z0-9-]+)"', forms[0])
    assert "cecum" in options and len(options) == len(set(options))  # all, once each
    legend = re.search(r'<details class="shortcuts".*?</details>', page, re.S)[0]
    assert "<kbd>1</kbd></dt><dd>z-line" in legend and "<kbd>J</kbd>" in legend
    assert "data-labelling" in page


def test_labelling_a_suggestion_from_the_vocabulary(env: Env) -> None:
    token = env.sign_in(["search", "label"])
    before = _suggested(env.client.get("/ui/gallery").text)
    uid = before[0]
    url = f"/ui/images/{uid}/label"
    bad = env.client.post(url, data={"csrf_token": token, "label": "zline"})
    assert bad.status_code == 422 and "z-line" in bad.text and "vocabulary" in bad.text
    r = env.client.post(
        url,
        data={"csrf_token": token, "label": "pylorus", "next": "/ui/gallery#suggestions-section"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/gallery#suggestions-section"
    with env.factory() as db:  # type: ignore[operator]
        image = db.scalar(sa.select(Image).where(Image.uid == uuid.UUID(uid)))
        human = db.scalars(
            sa.select(Label).where(Label.image_id == image.id, Label.source == "reference")
        ).all()
        assert [lab.label for lab in human] == ["pylorus"]
    after = _suggested(env.client.get("/ui/gallery").text)
    assert uid not in after  # labelled photos are no longer suggested
    evil = env.client.post(
        url, data={"csrf_token": token, "label": "pylorus", "next": "https://evil.example/"},
        follow_redirects=False,
    )  # fmt: skip
    assert evil.headers["location"].startswith("/ui/")


def test_recalibration_from_the_ui(env: Env) -> None:
    path = Path(env.archive.env["ENDOSEEK_CALIBRATION_PATH"])
    token = env.sign_in(["search"])
    assert env.client.post("/ui/gallery/calibrate", data={"csrf_token": token}).status_code == 403
    token = env.sign_in(["search", "label"])
    before = json.loads(path.read_text())
    assert env.client.post("/ui/gallery/calibrate", data={}).status_code == 403  # no CSRF
    r = env.client.post("/ui/gallery/calibrate", data={"csrf_token": token})
    assert r.status_code == 200 and 'id="calibrated"' in r.text  # followed the redirect
    after = json.loads(path.read_text())
    (model_id,) = after
    fitted = after[model_id]
    assert "cross-validation" in fitted["meta"]["method"] and fitted["meta"]["synthetic"]
    assert fitted["target_precision"] == before[model_id]["target_precision"]
    with env.factory() as db:  # type: ignore[operator]
        n_refs = db.scalar(sa.select(sa.func.count(Label.id)).where(Label.source == "reference"))
        assert fitted["meta"]["n_gallery"] == n_refs
        actions = set(db.scalars(sa.select(AuditEvent.action)))
    assert "calibration.fit" in actions
    rows = _rows(r.text)
    assert rows["z-line"][0] == "ok" and 'id="stale"' not in r.text


def test_recalibration_revotes_stored_predictions_against_the_new_references(env: Env) -> None:
    from app.documentation.refresh import refresh_predictions
    from app.documentation.service import documentation_of
    from app.documentation.suggest import votes

    token = env.sign_in(["search", "label"])
    r = env.client.post("/ui/gallery/calibrate", data={"csrf_token": token})
    assert r.status_code == 200 and re.search(r"refreshed=\d+", str(r.url)), str(r.url)
    docs = documentation_of(env.client.app.state.runtime)  # type: ignore[attr-defined]
    with env.factory() as db:  # type: ignore[operator]
        assert refresh_predictions(docs, db) == 0  # already re-voted: nothing left to change
        assert refresh_predictions(docs, db, limit=0) is None  # too many: left as they are
        fresh = {v.image.id: v.vote for v in votes(docs, db)}
        stored = dict(
            db.execute(
                sa.select(Label.image_id, Label.label).where(
                    Label.source == "predicted", Label.image_id.in_(list(fresh))
                )
            ).all()
        )
    assert stored and all(stored[i] == fresh[i].label for i in stored)
