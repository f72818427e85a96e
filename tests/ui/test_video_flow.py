"""A procedure video in real Chromium against a real server, on SYNTHETIC data end to end:
upload through the UI, the real analysis job (the demo's model and reference gallery), the
timeline, playback from a still, accept/reject, and the checklist's video evidence."""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.db.models import Procedure, VideoImage
from app.db.session import create_db_engine, create_session_factory
from app.ui.queries import DEMO_SOURCE
from app.video.quality import REASONS
from tests.app.video.factory import procedure_video
from tests.timing import scaled
from tests.ui.conftest import sign_in_with_key

pytestmark = pytest.mark.browser
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
SHOTS = DOCS_IMG if os.environ.get("ENDOSEEK_UPDATE_SCREENSHOTS") == "1" else None
# a short synthetic colonoscopy: the demo gallery knows "cecum" and "ileum"; the bad
# stretches must not give a still
SCRIPT = [
    ("plain", 2),
    ("cecum", 6),
    ("blur", 2),
    ("ileum", 6),
    ("dark", 2),
    ("out_of_body", 2),
]


def _shot(page, name: str) -> None:  # noqa: ANN001
    folder = SHOTS or Path(tempfile.mkdtemp(prefix="endoseek-ui-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"ui-{name}.png"), full_page=True)


def _new_procedure(db_url: str) -> str:
    """An empty synthetic colonoscopy: whatever documents it comes from the video."""
    factory = create_session_factory(create_db_engine(db_url))
    with factory() as db:
        proc = Procedure(
            source=DEMO_SOURCE,
            external_id="SYNTHETIC-VIDEO-0001",
            kind="colonoscopy",
            performed_at=datetime.now(UTC),
        )
        db.add(proc)
        db.commit()
        return str(proc.id)


def _picks(db_url: str) -> list[VideoImage]:
    factory = create_session_factory(create_db_engine(db_url))
    with factory() as db:
        return list(db.scalars(sa.select(VideoImage).order_by(VideoImage.t_ms)))


def test_video_flow(page, server, archive, tmp_path) -> None:  # noqa: ANN001
    errors: list[str] = []  # a CSP violation, a script error or a missing resource
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    pid = _new_procedure(archive.database_url)
    clip = procedure_video(tmp_path / "procedure.mp4", SCRIPT, fps=10, size=(320, 240))

    page.goto(f"/ui/procedures/{pid}")
    sign_in_with_key(page, archive.key)
    expect(page.locator("#videos")).to_contain_text("No videos yet.")

    # upload: the page of the new video follows its analysis and reloads when it is done
    page.get_by_label("Add a procedure video").set_input_files(clip.path)
    page.get_by_role("button", name="Add video").click()
    expect(page).to_have_url(re.compile(r"/ui/videos/[0-9a-f-]{36}$"))
    expect(page.locator("#video-status")).to_have_text("done", timeout=scaled(300) * 1000)
    expect(page.locator("#video-duration")).to_have_text("0:20")

    # the timeline: a band per requirement; the quality strip shows the bad stretches
    bands = page.locator("svg.timeline g.band")
    expect(bands).to_have_count(3)
    strip = page.locator("svg.timeline .quality-strip rect")
    reasons = set(strip.evaluate_all("rs => rs.map(r => r.dataset.reason)"))
    # (which bad stretch gets which reason is the gate's business: tests/app/video)
    assert "kept" in reasons and reasons - {"kept"} <= set(REASONS), reasons
    assert len(reasons) >= 3, reasons

    # every still lies inside its landmark's interval; none comes from a bad stretch
    picks = _picks(archive.database_url)
    assert {p.requirement for p in picks} == {"cecum", "ileum"}, picks
    for pick in picks:
        assert clip.kind_at(pick.t_ms / 1000) == pick.label, (pick.label, pick.t_ms)
    expect(page.locator("svg.timeline a.marker")).to_have_count(len(picks))
    expect(page.locator("#picks li.pick")).to_have_count(len(picks))

    # play from a still: the player jumps to its time
    cecum = next(p for p in picks if p.requirement == "cecum" and p.rank == 1)
    card = page.locator(f'#picks li[data-t-ms="{cecum.t_ms}"]')
    card.get_by_role("link", name=re.compile("Play from")).click()
    player = page.locator("#video-player")
    page.wait_for_function(
        "([t]) => { const v = document.querySelector('#video-player');"
        " return v.readyState >= 1 && Math.abs(v.currentTime - t) < 0.6; }",
        arg=[cecum.t_ms / 1000],
    )
    assert player.evaluate("v => v.error") is None

    # keyboard: a timeline marker is focusable and seeks the player too
    ileum = next(p for p in picks if p.requirement == "ileum")
    marker = page.locator(f'svg.timeline a.marker[data-seek="{ileum.t_ms / 1000:.3f}"]').first
    marker.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "([t]) => Math.abs(document.querySelector('#video-player').currentTime - t) < 0.6",
        arg=[ileum.t_ms / 1000],
    )

    # a click on the timeline seeks to that moment (here 0:17, in the quality strip)
    svg = page.locator("svg.timeline")
    box = svg.bounding_box()
    x0, plot_w, width = (
        float(svg.get_attribute(name)) for name in ("data-x0", "data-plot-w", "data-width")
    )
    strip_y = float(strip.first.get_attribute("y")) + 8
    scale = box["width"] / width
    page.mouse.click(box["x"] + (x0 + plot_w * 17 / 20) * scale, box["y"] + strip_y * scale)
    page.wait_for_function(
        "() => Math.abs(document.querySelector('#video-player').currentTime - 17) < 0.6"
    )

    # review: accept the first cecum still, reject every ileum still
    card.get_by_role("button", name=re.compile("^Accept")).click()
    expect(page.locator(f'#picks li[data-t-ms="{cecum.t_ms}"] [data-review]')).to_have_text(
        "Accepted"
    )
    for pick in [p for p in picks if p.requirement == "ileum"]:
        item = page.locator(f'#picks li[data-t-ms="{pick.t_ms}"]')
        item.get_by_role("button", name=re.compile("^Reject")).click()
        expect(page.locator(f'#picks li[data-t-ms="{pick.t_ms}"] [data-review]')).to_have_text(
            "Rejected"
        )
    # the screenshot: the page as a reviewer sees it, paused on the accepted still
    page.goto(page.url.split("#")[0])
    card = page.locator(f'#picks li[data-t-ms="{cecum.t_ms}"]')
    card.get_by_role("link", name=re.compile("Play from")).click()
    page.wait_for_function(
        "([t]) => { const v = document.querySelector('#video-player');"
        " return v.readyState >= 2 && Math.abs(v.currentTime - t) < 0.6; }",
        arg=[cecum.t_ms / 1000],
    )
    player.evaluate("(v, t) => { v.pause(); v.currentTime = t; }", cecum.t_ms / 1000)
    page.wait_for_function("() => !document.querySelector('#video-player').seeking")
    _shot(page, "video")

    # the checklist: the caecum is documented by video evidence with its time; ileum is not
    page.goto(f"/ui/procedures/{pid}")
    item = page.locator('#checklist li[data-requirement="cecum"]')
    expect(item).to_have_attribute("data-status", "documented")
    seconds = round(cecum.t_ms / 1000)
    expect(item.locator('[data-evidence="video"]')).to_contain_text(
        f"still at {seconds // 60}:{seconds % 60:02d}"
    )
    ileum_item = page.locator('#checklist li[data-requirement="ileum"]')
    expect(ileum_item).to_have_attribute("data-status", "missing")
    expect(page.locator("#video-list tr[data-video]")).to_have_attribute("data-status", "done")
    item.locator('[data-evidence="video"]').click()
    expect(page).to_have_url(re.compile(r"/ui/videos/[0-9a-f-]{36}\?t=[\d.]+#player$"))
    assert not errors, errors
