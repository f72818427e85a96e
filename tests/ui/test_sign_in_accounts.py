"""Staff accounts in the UI: local and directory (real slapd) sign-in, roles -> scopes,
lockout, idle and absolute timeouts, sign-out everywhere, disabled accounts, audit events
that name the user (TestClient on the real app, SQLite)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.accounts import users
from app.db import migrate
from app.db.models import User
from app.db.session import create_db_engine, create_session_factory, session_scope
from app.db.types import utcnow
from app.main import create_app
from app.ui.security import COOKIE
from tests.app.accounts.flows import (
    audit_rows,
    make_user,
    page_csrf,
    sign_in,
    signed_in,
)
from tests.app.conftest import create_keys, jpeg_bytes, make_settings
from tests.ldap_server import PEOPLE, Slapd, start_slapd

PW = {"vera": "vera-viewer-pw-1", "rita": "rita-reviewer-pw-2", "adam": "adam-admin-pw-33"}
MAX_FAILURES = 3


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = start_slapd(tmp_path_factory.mktemp("slapd"), PEOPLE)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, slapd: Slapd):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("accounts-ui")
    url = f"sqlite:///{root / 'ui.db'}"
    migrate.upgrade(url)
    for name, role in (("vera", "viewer"), ("rita", "reviewer"), ("adam", "admin")):
        make_user(url, name, role, PW[name])
    settings = make_settings(
        root,
        url,
        login_max_failures=MAX_FAILURES,
        login_ip_failures_per_minute=1000,
        ui_idle_timeout_s=600,
        ui_absolute_timeout_s=3600,
        **slapd.settings(),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, url


@pytest.fixture
def browser(env) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A browser of its own (cookie jar) on the module's app."""
    client, _ = env
    other = TestClient(client.app, raise_server_exceptions=False)
    yield other
    client.app.state.ui.store.clock = utcnow


def _factory(url: str):  # type: ignore[no-untyped-def]
    return create_session_factory(create_db_engine(url))


def test_local_accounts_sign_in_and_roles_map_to_scopes(env, browser) -> None:
    client, url = env
    headers = create_keys(url)
    r = client.post("/v1/procedures", json={"source": "t", "external_id": "acc-1"},
                    headers=headers["ingest"])  # fmt: skip
    photo = jpeg_bytes(Image.new("RGB", (64, 64), (150, 70, 60)))
    up = client.post(f"/v1/procedures/{r.json()['id']}/images",
                     files={"files": ("a.jpg", photo)}, headers=headers["ingest"])  # fmt: skip
    uid = up.json()["items"][0]["id"]

    for name, label_allowed in (("vera", False), ("rita", True), ("adam", True)):
        browser.cookies.clear()
        resp = sign_in(browser, username=name.upper(), password=PW[name])  # case-insensitive
        assert resp.status_code == 303, resp.text
        assert signed_in(browser)
        assert browser.get(f"/ui/images/{uid}/file").status_code == 200
        token = page_csrf(browser)
        form = {"csrf_token": token, "label": "cecum"}
        r = browser.post(f"/ui/images/{uid}/label", data=form, follow_redirects=False)
        assert (r.status_code != 403) == label_allowed, (name, r.status_code)

    rows = audit_rows(url)
    ids = {u.username: u.id for u in _users(url)}
    views = [(a, uid_) for a, t, k, uid_ in rows if a == "ui.image.view" and t == uid]
    assert {u for _, u in views} == {ids["vera"], ids["rita"], ids["adam"]}
    labelled = {u for a, t, k, u in rows if a.startswith("image.label") and t == uid}
    assert labelled == {ids["rita"], ids["adam"]}
    assert all(k is not None or u is not None for _, _, k, u in rows), rows


def _users(url: str) -> list[User]:
    with _factory(url)() as db:
        return list(db.query(User))


def test_wrong_password_is_generic_and_repeated_failures_lock_the_account(env, browser) -> None:
    _, url = env
    make_user(url, "lena", "viewer", "lena-locked-pw-1")
    unknown = sign_in(browser, username="nobody-here", password="whatever-pw-123")
    wrong = sign_in(browser, username="lena", password="not-her-password")
    assert unknown.status_code == wrong.status_code == 401
    assert "Wrong user name or password" in unknown.text and "Wrong user name" in wrong.text
    for _ in range(MAX_FAILURES - 1):
        assert sign_in(browser, username="lena", password="still-wrong-pw").status_code == 401
    locked = sign_in(browser, username="lena", password="lena-locked-pw-1")  # right, but locked
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 60
    assert not signed_in(browser)
    with session_scope(_factory(url)) as db:  # `endoseek users reset` lifts the lock
        users.reset_password(db, "lena", "lena-new-password-2")
    assert sign_in(browser, username="lena", password="lena-new-password-2").status_code == 303
    lena = next(u for u in _users(url) if u.username == "lena")
    actions = [a for a, _, _, u in audit_rows(url) if u == lena.id]
    assert actions.count("ui.sign_in.failed") == MAX_FAILURES
    assert "account.locked" in actions and actions[-1] == "ui.sign_in"


def test_idle_and_absolute_timeouts(env, browser) -> None:
    client, _ = env
    store = client.app.state.ui.store
    assert sign_in(browser, username="vera", password=PW["vera"]).status_code == 303
    start = utcnow()
    store.clock = lambda: start + timedelta(seconds=500)  # active within the idle limit
    assert signed_in(browser)
    store.clock = lambda: start + timedelta(seconds=500 + 601)  # idle too long
    assert not signed_in(browser)

    store.clock = utcnow
    assert sign_in(browser, username="vera", password=PW["vera"]).status_code == 303
    start = utcnow()
    for minutes in range(5, 61, 5):  # busy all the time, but the absolute limit still ends it
        store.clock = lambda m=minutes: start + timedelta(minutes=m, seconds=1)
        assert signed_in(browser) == (minutes < 60), minutes


def test_sign_out_everywhere_ends_every_browser(env, browser) -> None:
    client, _ = env
    laptop = TestClient(client.app, raise_server_exceptions=False)
    for b in (browser, laptop):
        assert sign_in(b, username="rita", password=PW["rita"]).status_code == 303
    assert signed_in(browser) and signed_in(laptop)
    token = page_csrf(laptop, "/ui/account")
    assert "Sign out everywhere" in laptop.get("/ui/account").text
    r = laptop.post("/ui/sign-out-everywhere", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and "everywhere" in r.headers["location"]
    assert not signed_in(browser) and not signed_in(laptop)
    assert laptop.post("/ui/sign-out-everywhere", data={}).status_code in (401, 403)


def test_disable_and_role_change_apply_to_open_sessions(env, browser) -> None:
    _, url = env
    make_user(url, "dina", "viewer", "dina-disabled-pw-1")
    assert sign_in(browser, username="dina", password="dina-disabled-pw-1").status_code == 303
    assert "search" in browser.get("/ui/account").text
    with session_scope(_factory(url)) as db:
        users.set_role(db, "dina", "reviewer")
    assert "label" in browser.get("/ui/account").text  # next request: the new scopes
    with session_scope(_factory(url)) as db:
        users.disable(db, "dina")
    assert not signed_in(browser)
    r = sign_in(browser, username="dina", password="dina-disabled-pw-1")
    assert r.status_code == 403 and "disabled" in r.text


def test_api_key_sign_in_still_works_and_is_audited_under_the_key(env, browser) -> None:
    _, url = env
    key = create_keys(url)["search"]["Authorization"].split()[1]
    assert sign_in(browser, api_key=key).status_code == 303
    assert signed_in(browser)
    assert "an API key" in browser.get("/ui/account").text
    assert sign_in(browser, api_key="esk_nope_nope").status_code == 401
    rows = [r for r in audit_rows(url) if r[0] == "ui.sign_in" and r[2] is not None]
    assert rows and rows[-1][3] is None


def test_change_own_password_signs_out_everywhere(env, browser) -> None:
    _, url = env
    make_user(url, "cora", "viewer", "cora-old-password-1")
    assert sign_in(browser, username="cora", password="cora-old-password-1").status_code == 303
    token = page_csrf(browser, "/ui/account")
    form = {"csrf_token": token, "current": "wrong-current-pw", "new": "cora-new-password-2",
            "confirm": "cora-new-password-2"}  # fmt: skip
    assert browser.post("/ui/account/password", data=form).status_code == 400
    form["current"] = "cora-old-password-1"
    r = browser.post("/ui/account/password", data=form, follow_redirects=False)
    assert r.status_code == 303 and not signed_in(browser)
    assert sign_in(browser, username="cora", password="cora-old-password-1").status_code == 401
    assert sign_in(browser, username="cora", password="cora-new-password-2").status_code == 303


def test_directory_sign_in_maps_groups_to_roles(env, browser) -> None:
    _, url = env
    people = {p.uid: p for p in PEOPLE}
    for uid, role in (("alice", "admin"), ("bob", "reviewer"), ("carol", "viewer")):
        browser.cookies.clear()
        assert sign_in(browser, username=uid, password=people[uid].password).status_code == 303
        assert role in browser.get("/ui/account").text
    rows = {u.username: u for u in _users(url)}
    assert rows["alice"].source == "ldap" and rows["alice"].role == "admin"
    assert rows["alice"].password_hash is None  # the directory keeps the password
    browser.cookies.clear()
    r = sign_in(browser, username="dave", password=people["dave"].password)
    assert r.status_code == 403 and "no EndoSeek group" in r.text
    r = sign_in(browser, username="bob", password="not-bobs-password")
    assert r.status_code == 401 and not signed_in(browser)
    with session_scope(_factory(url)) as db:  # disabled here wins over the directory
        users.disable(db, "carol")
    r = sign_in(browser, username="carol", password=people["carol"].password)
    assert r.status_code == 403


def test_directory_down_answers_503_and_local_accounts_still_work(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'down.db'}"
    migrate.upgrade(url)
    make_user(url, "vera", "viewer", PW["vera"])
    closed = f"ldap://127.0.0.1:{_closed_port()}"
    settings = make_settings(tmp_path, url, ldap_url=closed, ldap_user_base="dc=x",
                             ldap_timeout_s=2)  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r = sign_in(client, username="someone", password="some-password-1")
        assert r.status_code == 503 and "directory" in r.text
        assert sign_in(client, username="vera", password=PW["vera"]).status_code == 303


def _closed_port() -> int:
    from tests.app.server import free_port

    return free_port()


def test_session_cookie_is_random_and_only_its_hash_is_stored(env, browser) -> None:
    _, url = env
    assert sign_in(browser, username="vera", password=PW["vera"]).status_code == 303
    sid = browser.cookies.get(COOKIE)
    assert sid and len(sid) >= 40
    blob = b"".join(
        p.read_bytes() for p in Path(url.removeprefix("sqlite:///")).parent.glob("ui.db*")
    )
    assert sid.encode() not in blob
    for password in PW.values():
        assert password.encode() not in blob
    uuid.UUID(str(next(u.id for u in _users(url) if u.username == "vera")))
