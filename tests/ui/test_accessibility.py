"""Accessibility of the web UI in real Chromium (issue 17 item 7): every page passes an
axe-core audit with no serious or critical violation, and sign-in, checklist review and the
review of video stills work with the keyboard alone.

One SYNTHETIC demo archive and one server serve the whole module (seeding takes about a
minute); a video with its frames and picks is written as the analysis job writes them, on
a demo colonoscopy, so the video pages have content without running an analysis here
(tests/ui/test_video_flow.py runs the real one).
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.accounts import users
from app.db.models import Image, Procedure, Video, VideoImage
from app.db.session import create_db_engine, create_session_factory, session_scope
from tests.app.video.factory import procedure_video
from tests.ui.axe import assert_accessible, audit
from tests.ui.conftest import Archive, Server, open_page, sign_in_with_key
from tests.ui.keyboard import focused, from_top, tab_to
from tests.ui.video_seed import SCRIPT, analysed_frames, done_video

pytestmark = pytest.mark.browser

COLONOSCOPY = "SYNTHETIC-0003"  # a demo colonoscopy: the video is added to it
EMPTY = "SYNTHETIC-0006"  # the demo's undocumented upper-GI procedure (an ulcer photo only)
USER, PASSWORD = "kim.reviewer", "kim-Reviewer-pw-2026"  # a local staff account (reviewer)


@dataclass
class Site:
    """The shared server and what the pages show: ids to build their paths."""

    server: Server
    archive: Archive
    procedures: dict[str, str]  # external id -> procedure id
    image_uid: str  # a photo of the colonoscopy (search by example starts from it)
    video_id: str
    picks: list[str]  # image uids of the video's picked stills, all "needs review"
    analysing_id: str  # a second video, its analysis under way (no frame yet)


def _add_video(archive: Archive, procedure_id: str) -> tuple[str, list[str]]:
    """A finished analysis of a synthetic clip on the procedure: the kept original, its
    frames and three stills (photos of the procedure) waiting for review."""
    from app.settings import Settings

    video_dir = Settings().video_dir
    clip = procedure_video(archive.root / "clip.mp4", SCRIPT, fps=10, size=(320, 240))
    (video_dir / "h7").mkdir(parents=True, exist_ok=True)
    shutil.copy(clip.path, video_dir / "h7" / "clip.mp4")
    factory = create_session_factory(create_db_engine(archive.database_url))
    with factory() as db:
        pid = uuid.UUID(procedure_id)
        images = db.scalars(
            sa.select(Image).where(Image.procedure_id == pid).order_by(Image.id).limit(3)
        ).all()
        video = done_video(
            pid, sha256="a7" * 32, file_key="h7/clip.mp4", size=clip.path.stat().st_size
        )
        db.add(video)
        db.flush()
        db.add_all(analysed_frames(video.id))
        picks = [("cecum", 1, 3500, 0.91), ("cecum", 2, 5500, 0.84), ("ileum", 1, 10000, 0.77)]
        for image, (requirement, rank, t_ms, score) in zip(images, picks, strict=True):
            db.add(
                VideoImage(
                    image_id=image.id,
                    video_id=video.id,
                    requirement=requirement,
                    label=requirement,
                    t_ms=t_ms,
                    score=score,
                    quality=0.8,
                    rank=rank,
                )
            )
        db.commit()
        return str(video.id), [str(image.uid) for image in images]


def _add_analysing_video(archive: Archive, procedure_id: str) -> str:
    """A video whose analysis has started: the page shows its progress and polls."""
    factory = create_session_factory(create_db_engine(archive.database_url))
    with session_scope(factory) as db:
        video = Video(
            procedure_id=uuid.UUID(procedure_id),
            sha256="b8" * 32,
            container="mp4",
            codec="h264",
            width=320,
            height=240,
            fps=10.0,
            duration_s=30.0,
            bytes=1_000_000,
            file_key=None,
            status="analysing",
        )
        db.add(video)
        db.flush()
        return str(video.id)


@pytest.fixture(scope="module")
def site(module_archive: Archive, module_server: Server) -> Site:
    factory = create_session_factory(create_db_engine(module_archive.database_url))
    with factory() as db:
        procedures = {
            external: str(pid)
            for external, pid in db.execute(sa.select(Procedure.external_id, Procedure.id))
        }
        image_uid = db.scalar(
            sa.select(Image.uid)
            .where(Image.procedure_id == uuid.UUID(procedures[COLONOSCOPY]))
            .order_by(Image.id.desc())
        )
    video_id, picks = _add_video(module_archive, procedures[COLONOSCOPY])
    with session_scope(factory) as db:
        users.create(db, USER, "reviewer", PASSWORD)
    analysing = _add_analysing_video(module_archive, procedures[COLONOSCOPY])
    return Site(
        module_server, module_archive, procedures, str(image_uid), video_id, picks, analysing
    )


def _sign_in(page, key: str) -> None:  # noqa: ANN001
    page.goto("/ui/sign-in")
    sign_in_with_key(page, key)
    expect(page).to_have_url(re.compile(r"/ui/procedures$"))


@pytest.fixture(scope="module")
def signed_in(browser, site: Site) -> Iterator:  # noqa: ANN001
    """One signed-in page (the demo's QA key: search, ingest, label) for the whole module."""
    with open_page(browser, site.server) as page:
        _sign_in(page, site.archive.key)
        yield page


# --- the audit itself can fail -------------------------------------------------------------


def test_audit_reports_serious_violations(browser) -> None:  # noqa: ANN001
    """A page with known faults: the helper names each (so a clean page means something)."""
    page = browser.new_page()
    try:
        page.set_content(
            '<!doctype html><html lang="en"><head><title>faults</title>'
            "<style>.faint { color: #b0b0b0; background: #fff; }</style></head><body><main>"
            '<h1>Faults</h1><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
            '<p class="faint">Low contrast text</p><input type="text">'
            "<button></button></main></body></html>"
        )
        rules = {v.rule for v in audit(page).blocking()}
    finally:
        page.close()
    assert {"image-alt", "label", "color-contrast", "button-name"} <= rules, rules


# --- every page: no serious or critical violation ------------------------------------------


def test_sign_in_page(browser, site: Site) -> None:  # noqa: ANN001
    with open_page(browser, site.server) as page:
        page.goto("/ui/procedures")
        expect(page).to_have_url(re.compile(r"/ui/sign-in"))
        assert_accessible(page, "sign-in")
        sign_in_with_key(page, "esk_not_a_key")
        expect(page.get_by_role("alert")).to_be_visible()
        assert_accessible(page, "sign-in with an error")


def _paths(site: Site) -> dict[str, str]:
    colonoscopy = site.procedures[COLONOSCOPY]
    return {
        "procedures": "/ui/procedures",
        "procedures-none-found": "/ui/procedures?kind=other",
        "procedure-with-video": f"/ui/procedures/{colonoscopy}",
        "procedure-undocumented": f"/ui/procedures/{site.procedures[EMPTY]}",
        "search": "/ui/search",
        "search-results": f"/ui/search?image={site.image_uid}",
        "models-and-jobs": "/ui/models",
        "video": f"/ui/videos/{site.video_id}",
        "video-analysing": f"/ui/videos/{site.analysing_id}",
        "quality": "/ui/quality",
        "quality-by-week": "/ui/quality?period=week&standard=landmarks-upper-gi",
        "gallery": "/ui/gallery",
        "gallery-landmark": "/ui/gallery/z-line",
        "account": "/ui/account",
    }


PAGES = (
    "procedures",
    "procedures-none-found",
    "procedure-with-video",
    "procedure-undocumented",
    "search",
    "search-results",
    "models-and-jobs",
    "video",
    "video-analysing",
    "quality",
    "quality-by-week",
    "gallery",
    "gallery-landmark",
    "account",
)


# Content that spills out of its panel overlaps its neighbour (axe does not see it).
OVERFLOW_JS = """() => {
    const out = [];
    if (document.documentElement.scrollWidth > window.innerWidth) out.push('page');
    document.querySelectorAll('.panel').forEach((panel) => {
        if (panel.scrollWidth > panel.clientWidth + 1) {
            const wide = [...panel.querySelectorAll('*')].filter(
                (el) => el.getBoundingClientRect().right > panel.getBoundingClientRect().right + 1);
            out.push(wide.map((el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : ''))
                .join(' ') || 'panel');
        }
    });
    return out;
}"""


@pytest.mark.parametrize("name", PAGES)
def test_page(signed_in, site: Site, name: str) -> None:  # noqa: ANN001
    signed_in.goto(_paths(site)[name])
    expect(signed_in).to_have_url(site.server.url + _paths(site)[name])  # not signed out
    expect(signed_in.locator("main h1")).to_be_visible()
    assert_accessible(signed_in, name)
    assert signed_in.evaluate(OVERFLOW_JS) == [], f"{name}: content wider than its panel"


TABLET = ("procedures", "procedure-with-video", "video", "quality", "gallery")


def test_tablet_width(browser, signed_in, site: Site) -> None:  # noqa: ANN001
    """At 768 px (the smallest width the UI supports) the main pages still fit and pass."""
    state = signed_in.context.storage_state()  # the module's session, in a tablet browser
    context = browser.new_context(
        viewport={"width": 768, "height": 1024}, base_url=site.server.url, storage_state=state
    )
    try:
        page = context.new_page()
        for name in TABLET:
            page.goto(_paths(site)[name])
            expect(page).to_have_url(site.server.url + _paths(site)[name])  # not signed out
            expect(page.locator("main h1")).to_be_visible()
            assert_accessible(page, f"{name} at 768 px")
            assert page.evaluate(OVERFLOW_JS) == [], f"{name} at 768 px: content too wide"
    finally:
        context.close()


def test_error_page(signed_in, site: Site) -> None:  # noqa: ANN001
    """The 'form expired' page: a label form posted with a stale CSRF token."""
    signed_in.goto(f"/ui/procedures/{site.procedures[EMPTY]}")
    form = signed_in.locator("#photos li").first.locator("form.label-form")
    form.locator('input[name="csrf_token"]').evaluate("el => { el.value = 'stale'; }")
    form.locator("select").select_option("z-line")
    form.get_by_role("button", name="Mark reference").click()
    expect(signed_in.locator("main h1")).to_have_text("Form expired")
    assert_accessible(signed_in, "error")


# --- keyboard only ----------------------------------------------------------------------------


def test_keyboard_sign_in(browser, site: Site) -> None:  # noqa: ANN001
    """Sign in with a staff account, skip to the content, sign out, then sign in with an API
    key (behind a disclosure), without a mouse."""
    with open_page(browser, site.server) as page:
        page.goto("/ui/procedures")
        expect(page).to_have_url(re.compile(r"/ui/sign-in"))
        from_top(page)  # not from the autofocus
        tab_to(page, lambda f: f["id"] == "username")
        page.keyboard.type(USER)
        tab_to(page, lambda f: f["id"] == "password", limit=1)
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"/ui/procedures$"))
        # the first stop is the skip link; it moves the focus to the content
        first = tab_to(page, lambda f: True, limit=1)
        assert first["href"] == "#main", first
        page.keyboard.press("Enter")
        assert focused(page)["id"] == "main"
        nxt = tab_to(page, lambda f: True, limit=1)
        assert nxt["tag"] in ("a", "input", "select", "button"), nxt  # inside the content
        # sign out from the top bar
        from_top(page)
        tab_to(page, lambda f: f["text"] == "Sign out")
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"/ui/sign-in$"))
        # an API key: open its form from the disclosure
        from_top(page)
        if not page.get_by_label("API key", exact=True).is_visible():
            tab_to(page, lambda f: f["tag"] == "summary" and "API key" in f["text"])
            page.keyboard.press("Enter")
        tab_to(page, lambda f: f["id"] == "api_key")
        page.keyboard.type(site.archive.key)
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"/ui/procedures$"))


def test_keyboard_checklist_review(signed_in, site: Site) -> None:  # noqa: ANN001
    """Pick a photo's landmark from its list and mark it as the reference for a missing
    requirement, then go from the checklist item to its photo, with the keyboard only."""
    page = signed_in
    page.goto(f"/ui/procedures/{site.procedures[EMPTY]}")
    item = page.locator('#checklist li[data-requirement="z-line"]')
    expect(item).to_have_attribute("data-status", "missing")
    from_top(page)
    field = tab_to(page, lambda f: f["id"].startswith("lab-"))
    for _ in range(40):  # arrow keys step through the closed list's options
        if page.evaluate("() => document.activeElement.value") == "z-line":
            break
        page.keyboard.press("ArrowDown")
    assert page.evaluate("() => document.activeElement.value") == "z-line"
    tab_to(page, lambda f: f["text"] == "Mark reference", limit=1)
    page.keyboard.press("Enter")
    expect(item).to_have_attribute("data-status", "documented")
    uid = field["id"].removeprefix("lab-")
    from_top(page)
    tab_to(page, lambda f: f["href"] == f"#img-{uid}" and "z-line" in f["text"])
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"#img-{uid}$"))
    expect(page.locator(f"#img-{uid} .lbl-ref")).to_contain_text("z-line")


def test_keyboard_standard_picker(signed_in, site: Site) -> None:  # noqa: ANN001
    """The checklist's standard picker: arrow keys move the choice without leaving the page
    (WCAG 3.2.2), Enter applies it."""
    page = signed_in
    pid = site.procedures[EMPTY]
    page.goto(f"/ui/procedures/{pid}")
    page.evaluate(  # count form submissions made by the page's scripts
        """() => {
            window.submits = 0;
            const submit = HTMLFormElement.prototype.submit;
            HTMLFormElement.prototype.submit = function () { window.submits++; submit.call(this); };
        }"""
    )
    from_top(page)
    tab_to(page, lambda f: f["id"] == "std")
    start = page.locator("#std").input_value()
    page.keyboard.press("ArrowDown")
    if page.locator("#std").input_value() == start:  # it was the last option
        page.keyboard.press("ArrowUp")
    choice = page.locator("#std").input_value()
    assert choice != start
    assert page.evaluate("() => window.submits") == 0  # still here: nothing was submitted
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/ui/procedures/{pid}\?standard={choice}$"))
    expect(page.locator("#std")).to_have_value(choice)


def test_keyboard_video_review(signed_in, site: Site) -> None:  # noqa: ANN001
    """Play from a still and accept it with the keyboard; the review is recorded."""
    page = signed_in
    page.goto(f"/ui/videos/{site.video_id}")
    uid = site.picks[1]  # the second cecum still, at 0:05.5
    badge = page.locator(f"#pick-{uid} [data-review]")
    expect(badge).to_have_text("Needs review")
    from_top(page)
    tab_to(page, lambda f: f["card"] == uid and f["text"].startswith("▶ Play from"), limit=120)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const v = document.querySelector('#video-player');"
        " return v.readyState >= 1 && Math.abs(v.currentTime - 5.5) < 0.6; }"
    )
    tab_to(page, lambda f: f["card"] == uid and f["text"] == "Accept", limit=10)
    page.keyboard.press("Enter")
    expect(badge).to_have_text("Accepted")
    assert page.locator("[data-review='accepted']").count() == 1
