"""Sign-in, session cookie, CSRF and scopes of the UI (TestClient on the real app + SQLite)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.db.migrate import upgrade
from app.db.session import create_db_engine, create_session_factory
from app.services import keys

sys.path.insert(0, str(Path(__file__).parent))
from serve import build  # noqa: E402


def _key(factory, scopes: list[str]) -> str:
    """A new key with `scopes` (created the way `endoseek keys create` does)."""
    with factory() as db:
        _, key = keys.create_key(db, "ui-test", scopes)
        db.commit()
        assert keys.authenticate(db, key) is not None
    return key


@pytest.fixture
def env(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    monkeypatch.setenv("ENDOSEEK_DATABASE_URL", url)
    monkeypatch.setenv("ENDOSEEK_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.setenv("ENDOSEEK_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.chdir(tmp_path)
    upgrade(url)
    factory = create_session_factory(create_db_engine(url))
    with TestClient(build()) as client:
        yield client, factory


def _sign_in(client: TestClient, key: str):  # type: ignore[no-untyped-def]
    page = client.get("/ui/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/ui/sign-in", data={"api_key": key, "csrf_token": token}, follow_redirects=False
    )


def test_nothing_under_ui_works_without_a_session(env) -> None:
    client, _ = env
    for path in ("/ui/procedures", "/ui/static/ui.css", "/ui/models", "/ui/search"):
        resp = client.get(path, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/ui/sign-in")
    assert client.get("/ui/jobs.json").status_code == 401


def test_sign_in_sets_strict_httponly_cookie_and_sign_out_ends_it(env) -> None:
    client, factory = env
    key = _key(factory, ["search"])
    resp = _sign_in(client, key)
    assert resp.status_code == 303
    cookie = resp.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and key.lower() not in cookie
    assert client.get("/ui/procedures").status_code == 200
    page = client.get("/ui/models").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    assert client.post("/ui/sign-out", data={}, follow_redirects=False).status_code == 403
    client.post("/ui/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert client.get("/ui/procedures", follow_redirects=False).status_code == 303


def test_wrong_key_and_missing_form_token_are_refused(env) -> None:
    client, factory = env
    resp = _sign_in(client, "esk_nope_nope")
    assert resp.status_code == 401 and "not valid" in resp.text
    key = _key(factory, ["search"])
    resp = client.post("/ui/sign-in", data={"api_key": key, "csrf_token": "forged"})
    assert resp.status_code == 403
    assert client.get("/ui/procedures", follow_redirects=False).status_code == 303


def test_revoked_key_ends_the_session_and_scopes_are_enforced(env) -> None:
    client, factory = env
    key = _key(factory, ["search"])
    _sign_in(client, key)
    page = client.get("/ui/search").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    fake = "00000000-0000-0000-0000-000000000001"
    resp = client.post(f"/ui/images/{fake}/label", data={"csrf_token": token, "label": "z-line"})
    assert resp.status_code == 403 and "label" in resp.text
    with factory() as db:
        keys.revoke_key(db, key.split("_")[1])
        db.commit()
    assert client.get("/ui/procedures", follow_redirects=False).status_code == 303


def test_ui_pages_carry_security_headers_and_api_answers_do_not(env) -> None:
    client, _ = env
    for resp in (client.get("/ui/sign-in"), client.get("/ui/procedures", follow_redirects=False)):
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["Cache-Control"] == "no-store"
    api = client.get("/health")
    assert api.status_code == 200 and "X-Frame-Options" not in api.headers
