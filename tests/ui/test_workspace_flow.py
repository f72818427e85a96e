"""The QA workspace in real Chromium against a real server (issue 17 acceptance): sign-in
with a local account and with a directory account (a real slapd), role enforcement, the
quality dashboard with filters and its CSV / PDF / PNG downloads, and guided labelling with
the keyboard, on the SYNTHETIC demo. Every page met is also audited with axe-core.

One archive (a copy of the seeded demo), one slapd and one server serve the module.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.accounts import users
from app.db.models import AuditEvent, Procedure, User
from app.db.session import create_db_engine, create_session_factory, session_scope
from tests.ldap_server import PEOPLE, Slapd, require_slapd, start_slapd
from tests.ui.axe import assert_accessible
from tests.ui.conftest import Archive, Server, open_page, run_server, screenshot
from tests.ui.keyboard import from_top, tab_to

pytestmark = pytest.mark.browser

# local staff accounts: (user name, role, password)
LOCAL = {
    "viewer": ("vera.viewer", "viewer", "vera-Viewer-pw-2026"),
    "reviewer": ("rita.reviewer", "reviewer", "rita-Reviewer-pw-2026"),
    "admin": ("adam.admin", "admin", "adam-Admin-pw-2026"),
}
ROOMS, OPERATORS = ("ENDO-1", "ENDO-2"), ("OP-7", "OP-9")  # pseudonymous codes
DIRECTORY = {p.uid: p for p in PEOPLE}


@dataclass
class Workspace:
    server: Server
    archive: Archive
    procedures: dict[str, tuple[str, str, str | None]]  # id -> (external id, kind, room)

    def db(self):  # type: ignore[no-untyped-def]  # noqa: ANN201
        return create_session_factory(create_db_engine(self.archive.database_url))()


def _env_value(value: object) -> str:
    """A Settings value as an ENDOSEEK_* variable (dicts as JSON, as pydantic reads them)."""
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()  # type: ignore[no-any-return, union-attr]
    return str(value)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd | None]:
    """A real slapd; None locally without one (the directory test then skips, the others
    run), an error in CI (require_slapd fails there)."""
    try:
        server = start_slapd(tmp_path_factory.mktemp("slapd"), PEOPLE)
    except pytest.skip.Exception:
        yield None
        return
    yield server
    server.stop()


@pytest.fixture(scope="module")
def workspace(module_archive: Archive, slapd: Slapd | None) -> Iterator[Workspace]:
    """Local accounts of each role, room and operator codes on the demo procedures (where
    the demo left them empty), and the server signing in against the directory too."""
    factory = create_session_factory(create_db_engine(module_archive.database_url))
    with session_scope(factory) as db:
        for name, role, password in LOCAL.values():
            users.create(db, name, role, password)
        rows = db.scalars(sa.select(Procedure).order_by(Procedure.external_id)).all()
        for i, proc in enumerate(rows):
            proc.room = proc.room or ROOMS[i % 2]
            proc.operator = proc.operator or OPERATORS[(i // 2) % 2]
        procedures = {str(p.id): (p.external_id, p.kind, p.room) for p in rows}
    settings = slapd.settings() if slapd else {}
    ldap = {f"ENDOSEEK_{k.upper()}": _env_value(v) for k, v in settings.items()}
    archive = replace(module_archive, env={**module_archive.env, **ldap})
    with run_server(archive) as server:
        yield Workspace(server, archive, procedures)


def _sign_in(page, username: str, password: str) -> None:  # noqa: ANN001
    page.goto("/ui/sign-in")
    page.get_by_label("User name", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


@pytest.fixture
def as_role(browser, workspace: Workspace) -> Iterator:  # noqa: ANN001
    """Open a fresh browser signed in with the local account of a role."""
    with ExitStack() as stack:

        def open_as(role: str):  # noqa: ANN202
            page = stack.enter_context(open_page(browser, workspace.server))
            name, _, password = LOCAL[role]
            _sign_in(page, name, password)
            expect(page).to_have_url(re.compile(r"/ui/procedures$"))
            return page

        yield open_as


def _procedure(ws: Workspace, kind: str) -> str:
    return next(pid for pid, (_, k, _) in sorted(ws.procedures.items()) if k == kind)


# --- sign-in ---------------------------------------------------------------------------------


def test_local_account_sign_in(browser, workspace: Workspace) -> None:  # noqa: ANN001
    """A wrong password is refused with a message; the right one opens the asked page."""
    name, _, password = LOCAL["reviewer"]
    with open_page(browser, workspace.server) as page:
        page.goto("/ui/quality")
        expect(page).to_have_url(re.compile(r"/ui/sign-in\?next=/ui/quality$"))
        expect(page.get_by_label("User name", exact=True)).to_be_focused()
        screenshot(page, "sign-in")
        page.get_by_label("User name", exact=True).fill(name)
        page.get_by_label("Password", exact=True).fill("not-the-password")
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page.get_by_role("alert")).to_be_visible()
        assert_accessible(page, "sign-in refused")
        page.get_by_label("User name", exact=True).fill(name)
        page.get_by_label("Password", exact=True).fill(password)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).to_have_url(re.compile(r"/ui/quality$"))
        expect(page.locator(".topbar")).to_contain_text(name)
        page.goto("/ui/account")
        expect(page.locator("main")).to_contain_text("EndoSeek password")
        expect(page.get_by_label("Current password")).to_be_visible()
        assert_accessible(page, "account (local)")
        screenshot(page, "account")
    assert password not in workspace.server.log_text()


def test_directory_sign_in(browser, workspace: Workspace, slapd: Slapd | None) -> None:  # noqa: ANN001
    """A directory user signs in with their directory password; the role comes from their
    groups. A user in no mapped group is refused."""
    if slapd is None:
        require_slapd()  # skips, saying what is missing
    bob, dave = DIRECTORY["bob"], DIRECTORY["dave"]
    with open_page(browser, workspace.server) as page:
        _sign_in(page, dave.uid, dave.password)
        expect(page.get_by_role("alert")).to_be_visible()
        expect(page).to_have_url(re.compile(r"/ui/sign-in"))
        _sign_in(page, bob.uid, bob.password)
        expect(page).to_have_url(re.compile(r"/ui/procedures$"))
        expect(page.locator(".topbar")).to_contain_text(bob.name)
        page.goto("/ui/account")
        account = page.locator("main")
        expect(account).to_contain_text("hospital directory")
        expect(account).to_contain_text("reviewer")
        expect(page.get_by_label("Current password")).to_have_count(0)  # not ours to change
        assert_accessible(page, "account (directory)")
    with workspace.db() as db:
        row = db.scalar(sa.select(User).where(User.username == bob.uid))
        assert row is not None and row.source == "ldap" and row.role == "reviewer"
        assert db.scalar(sa.select(User).where(User.username == dave.uid)) is None
    log = workspace.server.log_text()
    assert bob.password not in log and dave.password not in log


def test_roles_are_enforced(as_role, workspace: Workspace) -> None:  # noqa: ANN001
    """Viewer: search only; reviewer: + labelling; admin: + uploads. The pages offer only
    what the role may do, and the server refuses the rest (403)."""
    pid = _procedure(workspace, "upper_gi")
    expected = {  # role -> (label forms, upload form, calibrate button)
        "viewer": (False, False, False),
        "reviewer": (True, False, True),
        "admin": (True, True, True),
    }
    for role, (can_label, can_upload, can_calibrate) in expected.items():
        page = as_role(role)
        page.goto(f"/ui/procedures/{pid}")
        expect(page.locator("#checklist li").first).to_be_visible()
        uid = page.locator("#photos > li").first.get_attribute("id").removeprefix("img-")
        assert (page.locator("form.label-form").count() > 0) is can_label, role
        assert (page.locator("#files").count() > 0) is can_upload, role
        page.goto("/ui/gallery")
        expect(page.locator("#landmarks")).to_be_visible()
        assert (page.locator("#calibrate").count() > 0) is can_calibrate, role
        # the server, not just the page: post a label and an upload as this role
        token = page.locator('meta[name="csrf-token"]').get_attribute("content")
        label = page.request.post(
            f"/ui/images/{uid}/label",
            form={"csrf_token": token, "label": "z-line"},
            max_redirects=0,
        )
        assert (label.status == 303) is can_label, (role, label.status)
        if not can_label:
            assert label.status == 403, (role, label.status)
        if role == "viewer":
            upload = page.request.post(
                f"/ui/procedures/{pid}/images",
                multipart={
                    "csrf_token": token,
                    "files": {"name": "x.jpg", "mimeType": "image/jpeg", "buffer": b"x"},
                },
                max_redirects=0,
            )
            assert upload.status == 403, upload.status


# --- quality dashboard -----------------------------------------------------------------------


def _download(page, name: str) -> tuple[str, bytes]:  # noqa: ANN001
    with page.expect_download() as info:
        page.get_by_role("link", name=name).click()
    download = info.value
    return download.suggested_filename, Path(download.path()).read_bytes()


def test_dashboard_filters_and_exports(as_role, workspace: Workspace) -> None:  # noqa: ANN001
    page = as_role("viewer")  # the dashboard needs only the search scope
    page.goto("/ui/quality")
    std = "landmarks-upper-gi"
    expect(page.locator(f"#requirements-{std}")).to_be_visible()
    upper = [room for _, kind, room in workspace.procedures.values() if kind == "upper_gi"]
    headline = page.locator(f'section[aria-labelledby="std-{std}"] .quality-headline')
    expect(headline).to_contain_text(f"of {len(upper)} procedures")
    screenshot(page, "quality", height=1400)
    assert_accessible(page, "quality dashboard")

    # filters: one room, per week, one standard
    page.get_by_label("Standard").select_option(std)
    page.get_by_label("Period").select_option("week")
    page.get_by_label("Room").select_option(ROOMS[0])
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(rf"standard={std}.*period=week.*room={ROOMS[0]}"))
    n = upper.count(ROOMS[0])
    assert n >= 1
    expect(headline).to_contain_text(f"of {n} procedure")
    rooms = page.locator(f"#rooms-{std} tbody th")
    expect(rooms).to_have_text([ROOMS[0]])
    expect(page.locator("section.quality-standard")).to_have_count(1)
    assert_accessible(page, "quality dashboard, filtered")

    # the downloads repeat exactly what the page shows
    name, body = _download(page, "Export CSV")
    assert name.endswith(".csv"), name
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    assert {r["standard_id"] for r in rows} == {std}
    assert {r["group"] for r in rows if r["group_by"] == "room"} == {ROOMS[0]}
    overall = next(r for r in rows if r["group_by"] == "all" and r["measure"] == "complete")
    assert int(overall["n"]) == n
    name, body = _download(page, "Printable report (PDF)")
    assert name.endswith(".pdf") and body.startswith(b"%PDF-") and len(body) > 5000, name
    name, body = _download(page, "Download plot (PNG)")
    assert name.endswith(".png") and body.startswith(b"\x89PNG\r\n\x1a\n"), name


# --- guided labelling ------------------------------------------------------------------------


def test_guided_labelling_by_keyboard(as_role, workspace: Workspace) -> None:  # noqa: ANN001
    """On the gallery's suggestions: J moves to a photo, a label's key labels it at once;
    then re-calibrate from the keyboard. The audit trail names the reviewer."""
    page = as_role("reviewer")
    page.goto("/ui/gallery")
    cards = page.locator("#suggestions-section [data-labelling] > li")
    expect(cards.first).to_be_visible()
    screenshot(page, "gallery", height=1500)
    assert_accessible(page, "reference gallery")
    before = cards.count()
    first = cards.first
    uid = first.get_attribute("id").removeprefix("img-")
    voted = first.locator(".lbl").inner_text().split()[0]  # confirm the photo's vote
    option = first.locator(f'option[data-key][value="{voted}"]')
    if option.count() == 0:  # a label without a key: any keyed label will do
        option = first.locator("option[data-key]").first
    label, key = option.get_attribute("value"), option.get_attribute("data-key")
    from_top(page)
    page.keyboard.press("j")
    expect(first).to_be_focused()
    page.keyboard.press(key)
    expect(page).to_have_url(re.compile(r"/ui/gallery#suggestions-section$"))
    expect(page.locator(f"#img-{uid}")).to_have_count(0)  # labelled: no longer suggested
    assert cards.count() <= before
    with workspace.db() as db:
        rita = db.scalar(sa.select(User.id).where(User.username == LOCAL["reviewer"][0]))
        event = db.scalar(
            sa.select(AuditEvent)
            .where(AuditEvent.action == "image.label.set", AuditEvent.target == uid)
            .order_by(AuditEvent.id.desc())
        )
    assert event is not None and event.user_id == rita and event.detail["label"] == label

    # re-calibrate from the keyboard
    from_top(page)
    tab_to(page, lambda f: f["id"] == "calibrate", limit=120)
    page.keyboard.press("Enter")
    expect(page.locator("#calibrated")).to_be_visible()

    # the photo's procedure shows the new reference label
    page.goto(f"/ui/gallery/{label}")
    assert_accessible(page, "gallery landmark")
    screenshot(page, "gallery-landmark", height=1300)
    pid = _photo_procedure(workspace, uid)
    page.goto(f"/ui/procedures/{pid}")
    expect(page.locator(f"#img-{uid} .lbl-ref")).to_contain_text(label)
    page.locator("#shortcuts summary").click()
    screenshot(page, "labelling", height=1400)


def _photo_procedure(ws: Workspace, uid: str) -> str:
    from app.db.models import Image

    with ws.db() as db:
        return str(db.scalar(sa.select(Image.procedure_id).where(Image.uid == uuid.UUID(uid))))
