"""The QA flow in real Chromium against a real server: sign in, upload, search, label, jobs."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.cli.demo import LANDMARKS, PROCEDURES, _images
from app.db.models import Job, Procedure
from app.db.session import create_db_engine, create_session_factory
from tests.ui.conftest import sign_in_with_key

pytestmark = pytest.mark.browser
# The README's screenshots are refreshed only on request (ENDOSEEK_UPDATE_SCREENSHOTS=1), so
# that a test run never rewrites tracked files; otherwise they go to a temporary folder.
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
SHOTS = DOCS_IMG if os.environ.get("ENDOSEEK_UPDATE_SCREENSHOTS") == "1" else None


def _shot(page, name: str) -> None:
    folder = SHOTS or Path(tempfile.mkdtemp(prefix="endoseek-ui-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"ui-{name}.png"), full_page=True)


def _procedure_id(db_url: str, external_id: str) -> str:
    factory = create_session_factory(create_db_engine(db_url))
    with factory() as db:
        return str(db.scalar(sa.select(Procedure.id).where(Procedure.external_id == external_id)))


UPPER_GI = ("z-line", "pylorus", "retroflex-stomach")


def _missing_recognisable_label(page, calibration: Path) -> tuple[str, str]:  # noqa: ANN001
    """An upper-GI landmark missing on the open procedure page that the demo calibration can
    recognise (at least as uncertain), and the synthetic class that plays it."""
    entries = next(iter(json.loads(calibration.read_text()).values()))["labels"]
    for cls, label in LANDMARKS.items():
        if label in UPPER_GI and entries.get(label, {}).get("uncertain") is not None:
            item = page.locator(f'#checklist li[data-requirement="{label}"]')
            if item.get_attribute("data-status") == "missing":
                return label, cls
    pytest.fail(f"no recognisable upper-GI landmark is missing here: {entries}")


def _sign_in(page, key: str) -> None:
    page.goto("/ui/procedures")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next=/ui/procedures$"))
    sign_in_with_key(page, key)
    expect(page).to_have_url(re.compile(r"/ui/procedures$"))


def test_qa_flow(page, server, archive, tmp_path) -> None:
    page.goto("/ui/sign-in")
    _shot(page, "sign-in")
    _sign_in(page, archive.key)
    expect(page.get_by_role("note")).to_contain_text("SYNTHETIC DEMO DATA")
    expect(page.locator("#procedures tbody tr")).to_have_count(len(PROCEDURES) + 1)  # + gallery
    _shot(page, "procedures")

    # filters: incomplete upper-GI procedures only
    page.get_by_label("Kind").select_option("upper_gi")
    page.get_by_label("Documentation").select_option("incomplete")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"kind=upper_gi.*completeness=incomplete"))
    rows = page.locator("#procedures tbody tr")
    expect(rows.first).to_contain_text("upper gi")
    for text in rows.all_inner_texts():
        assert "upper gi" in text and "Incomplete" in text

    # upload a landmark photo to a procedure where it is missing: the checklist changes
    calibration = archive.root / "calibration.json"  # ENDOSEEK_CALIBRATION_PATH, once it exists
    if not calibration.exists():
        calibration = archive.root / "var" / "calibration.json"  # the UI's fallback
    undocumented = f"SYNTHETIC-{len(PROCEDURES):04d}"  # the demo's last: no landmark photo
    pid = _procedure_id(archive.database_url, undocumented)
    page.goto(f"/ui/procedures/{pid}")
    expect(page.locator("#checklist li").first).to_be_visible()
    label, cls = _missing_recognisable_label(page, calibration)
    item = page.locator(f'#checklist li[data-requirement="{label}"]')
    expect(item).to_have_attribute("data-status", "missing")
    photo = tmp_path / "upload.jpg"
    photo.write_bytes(_images(cls, 0, 1, 224)[0])  # same bytes as a reference photo
    page.get_by_label("Add photos to this procedure").set_input_files(photo)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-notice")).to_contain_text("1 photo(s) added")
    expect(item).not_to_have_attribute("data-status", "missing")
    expect(item.locator("img")).to_be_visible()
    _shot(page, "procedure")

    # find similar from a stored photo: the photo itself comes first with score 1.00
    page.locator("#photos li").last.get_by_role("link", name="Find similar").click()
    expect(page.locator("#results li").first).to_be_visible()
    expect(page.locator("#results li [data-score]").first).to_have_text("1.00")
    _shot(page, "search")

    # search by an uploaded photo (never stored)
    page.goto("/ui/search")
    page.get_by_label("Choose a photo or drop it here").set_input_files(photo)
    page.locator("#search-upload").get_by_role("button", name="Search").click()
    expect(page.locator("#results li")).to_have_count(8)

    # label: mark the procedure's first photo as the reference for its missing landmark
    page.goto(f"/ui/procedures/{pid}")
    expect(page.locator("#checklist li").first).to_be_visible()
    other = next(
        lab
        for lab in UPPER_GI
        if page.locator(f'#checklist li[data-requirement="{lab}"]').get_attribute("data-status")
        == "missing"
    )
    target = page.locator(f'#checklist li[data-requirement="{other}"]')
    expect(target).to_have_attribute("data-status", "missing")
    card = page.locator("#photos li").first
    card.get_by_label(re.compile(r"^Reference landmark for photo")).select_option(other)
    card.get_by_role("button", name="Mark reference").click()
    expect(target).to_have_attribute("data-status", "documented")
    expect(page.locator("#photos li").first.locator(".lbl-ref")).to_contain_text(other)

    # jobs: a running job's progress updates live (the page polls JSON)
    factory = create_session_factory(create_db_engine(archive.database_url))
    with factory() as db:
        job = Job(kind="reindex", status="running", total=10, done=3)
        db.add(job)
        db.commit()
        job_id = str(job.id)
    page.goto("/ui/models")
    expect(page.locator("#model-name")).not_to_be_empty()
    row = page.locator(f'#jobs tr[data-job="{job_id}"]')
    expect(row).to_contain_text("3 / 10")
    with factory() as db:
        db.execute(sa.update(Job).where(Job.id == job.id).values(done=10, status="done"))
        db.commit()
    expect(row).to_contain_text("10 / 10")
    expect(row.locator('[data-field="status"]')).to_have_text("done")
    _shot(page, "models-jobs")

    # tablet width
    page.set_viewport_size({"width": 768, "height": 1024})
    page.goto(f"/ui/procedures/{pid}")
    expect(item).to_be_visible()
    _shot(page, "procedure-tablet")

    # sign out: pages need a key again
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))
    page.goto(f"/ui/procedures/{pid}")
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))

    # no key and no device identifiers in any URL or in the server log
    urls = "\n".join(page.requested_urls)
    log = server.log_text()
    assert "GET /ui/procedures" in log  # the access log was captured
    for secret in (archive.key, archive.key.split("_", 2)[-1], undocumented):
        assert secret not in urls
        assert secret not in log
