"""The video pages of the UI on the real app (TestClient + SQLite), on a SYNTHETIC video.

The per-frame table and the picks are written as the analysis job writes them (its own
output is covered by tests/app/video and the browser flow); the stills are real frames of a
synthetic video stored through the core IngestService, the original is a real H.264 file.
"""

from __future__ import annotations

import io
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from app.db.migrate import upgrade
from app.db.models import AuditEvent, Image, Job, Procedure, Video, VideoImage
from app.db.session import create_db_engine, create_session_factory
from app.services import keys
from app.services.ingest import IngestService, Upload
from app.ui.queries import DEMO_SOURCE
from tests.app.video.factory import procedure_video
from tests.ui.video_seed import SCRIPT, analysed_frames, done_video

sys.path.insert(0, str(Path(__file__).parent))
from serve import build  # noqa: E402

# (kind, seconds): the synthetic video and the verdicts written for its frames
PICKS = [("cecum", "cecum", 1, 3500, 0.91), ("cecum", "cecum", 2, 5500, 0.84)]
PICKS += [("ileum", "ileum", 1, 10000, 0.77)]


@dataclass
class Env:
    client: TestClient
    factory: object
    full: str  # search + ingest + label
    viewer: str  # search only
    procedure_id: uuid.UUID
    video_id: uuid.UUID
    stills: dict[tuple[str, int], uuid.UUID]  # (requirement, rank) -> image uid
    video_dir: Path


def _key(factory, scopes: list[str]) -> str:  # noqa: ANN001
    with factory() as db:
        _, key = keys.create_key(db, "ui-video-test", scopes)
        db.commit()
    return key


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("ui-video")
    url = f"sqlite:///{root / 'db.sqlite'}"
    mp = pytest.MonkeyPatch()
    for name, value in {
        "ENDOSEEK_DATABASE_URL": url,
        "ENDOSEEK_STORAGE_DIR": str(root / "storage"),
        "ENDOSEEK_INDEX_DIR": str(root / "index"),
        "ENDOSEEK_VIDEO_DIR": str(root / "videos"),
    }.items():
        mp.setenv(name, value)
    mp.chdir(root)
    upgrade(url)
    factory = create_session_factory(create_db_engine(url))
    clip = procedure_video(root / "clip.mp4", SCRIPT, fps=10, size=(320, 240))
    try:
        with TestClient(build()) as client:
            rt = client.app.state.runtime
            with factory() as db:
                proc = Procedure(
                    source=DEMO_SOURCE,
                    external_id="SYNTHETIC-VIDEO-UI",
                    kind="colonoscopy",
                    performed_at=datetime(2024, 5, 1, tzinfo=UTC),
                )
                db.add(proc)
                db.commit()
                pid = proc.id
            from app.video.decode import frame_at

            stills = {}
            for requirement, _, rank, t_ms, _ in PICKS:
                buf = io.BytesIO()
                PILImage.fromarray(frame_at(clip.path, t_ms)).save(buf, "JPEG", quality=95)
                (result,) = IngestService(rt).ingest(pid, [Upload(None, buf.getvalue())])
                stills[(requirement, rank)] = result.image.uid
            video_dir = Path(rt.settings.video_dir)
            (video_dir / "ab").mkdir(parents=True, exist_ok=True)
            shutil.copy(clip.path, video_dir / "ab" / "clip.mp4")
            with factory() as db:
                video = done_video(
                    pid, sha256="ab" * 32, file_key="ab/clip.mp4", size=clip.path.stat().st_size
                )
                db.add(video)
                db.flush()
                db.add_all(analysed_frames(video.id))
                for requirement, label, rank, t_ms, score in PICKS:
                    uid = stills[(requirement, rank)]
                    image_id = db.scalar(sa.select(Image.id).where(Image.uid == uid))
                    db.add(
                        VideoImage(
                            image_id=image_id,
                            video_id=video.id,
                            requirement=requirement,
                            label=label,
                            t_ms=t_ms,
                            score=score,
                            quality=0.8,
                            rank=rank,
                        )
                    )
                db.commit()
                vid = video.id
            yield Env(
                client,
                factory,
                _key(factory, ["search", "ingest", "label"]),
                _key(factory, ["search"]),
                pid,
                vid,
                stills,
                video_dir,
            )
    finally:
        mp.undo()


def _sign_in(client: TestClient, key: str) -> str:
    """Sign in (a fresh session) and return its CSRF token."""
    client.cookies.clear()
    page = client.get("/ui/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    resp = client.post(
        "/ui/sign-in", data={"api_key": key, "csrf_token": token}, follow_redirects=False
    )
    assert resp.status_code == 303
    page = client.get("/ui/procedures").text
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def _review(env: Env, csrf: str, uid: uuid.UUID, decision: str, **kw):  # noqa: ANN003, ANN202
    return env.client.post(
        f"/ui/videos/{env.video_id}/picks/{uid}/review",
        data={"csrf_token": csrf, "decision": decision, **kw},
        follow_redirects=False,
    )


def test_video_page_draws_timeline_stills_and_player(env: Env) -> None:
    _sign_in(env.client, env.viewer)
    resp = env.client.get(f"/ui/videos/{env.video_id}")
    assert resp.status_code == 200
    html = resp.text
    assert "SYNTHETIC DEMO DATA" in html and "badge-synthetic" in html
    # one band per requirement of the standard the picks were made for, in its order
    bands = re.findall(r'<g class="band" data-requirement="([^"]+)" data-peak="([^"]+)"', html)
    assert [b[0] for b in bands] == ["cecum", "ileum", "retroflex-rectum"]
    assert ">Caecum with appendiceal…<" in html  # long names are cut in the SVG
    peaks = {req: float(peak) for req, peak in bands}
    assert peaks["cecum"] == pytest.approx(0.9, abs=0.01)
    assert peaks["retroflex-rectum"] == 0.0
    # the quality strip: kept, blurred, kept (runs of equal verdicts), and its legend
    assert re.findall(r'data-reason="(\w+)"><title>', html) == ["kept", "blur", "kept"]
    assert "0:06–0:08: blurred" in html
    # a marker per pick that seeks the player; the gallery with time, score and review forms
    markers = re.findall(r'<a class="marker marker-needs_review"[^>]*data-seek="([\d.]+)"', html)
    assert sorted(float(m) for m in markers) == [3.5, 5.5, 10.0]
    assert f'src="/ui/videos/{env.video_id}/file"' in html
    uid = env.stills[("cecum", 1)]
    card = html[html.index(f'id="pick-{uid}"') :]
    card = card[: card.index("</li>")]
    assert "0:04" in card and "score 0.91" in card and "Needs review" in card
    assert "Play from 0:04" in card
    assert "Accept" not in card  # the viewer key lacks the label scope: no review buttons
    # counts per verdict; the requirement without a still is named
    assert re.search(r'data-reason="kept">.*?<td>20</td>', html, re.S)
    assert re.search(r'data-reason="blur">.*?<td>4</td>', html, re.S)
    assert 'id="no-still">No still for Retroflexed view of the rectum:' in html
    # ?t= starts the player there (a media fragment: works without JavaScript)
    started = env.client.get(f"/ui/videos/{env.video_id}?t=5.5").text
    assert f'src="/ui/videos/{env.video_id}/file#t=5.500"' in started


def test_procedure_page_lists_the_video_and_marks_its_stills(env: Env) -> None:
    _sign_in(env.client, env.full)
    html = env.client.get(f"/ui/procedures/{env.procedure_id}").text
    row = re.search(r'<tr data-video="([^"]+)" data-status="(\w+)">', html)
    assert row and row.groups() == (str(env.video_id), "done")
    assert "3 (0 accepted, 3 to review)" in html
    assert html.count('class="video-still"') == 3
    assert f'action="/ui/procedures/{env.procedure_id}/videos"' in html
    assert "data-video-poll" not in html  # nothing runs: no polling


def test_accept_and_reject_need_the_form_token_and_the_label_scope(env: Env) -> None:
    uid = env.stills[("cecum", 1)]
    csrf = _sign_in(env.client, env.viewer)
    assert _review(env, csrf, uid, "accept").status_code == 403  # scope label
    csrf = _sign_in(env.client, env.full)
    assert _review(env, "forged", uid, "accept").status_code == 403  # CSRF
    assert _review(env, csrf, uuid.uuid4(), "accept").status_code == 404
    assert _review(env, csrf, uid, "maybe").status_code == 422
    with env.factory() as db:
        assert db.scalar(sa.select(VideoImage.review).where(VideoImage.rank == 1).limit(1)) == (
            "needs_review"
        )

    resp = _review(env, csrf, uid, "accept")
    assert resp.status_code == 303
    assert resp.headers["location"] == f"/ui/videos/{env.video_id}#pick-{uid}"
    page = env.client.get(f"/ui/videos/{env.video_id}").text
    card = page[page.index(f'id="pick-{uid}"') :]
    assert "Accepted" in card[: card.index("</li>")]
    assert 'class="marker marker-accepted"' in page
    with env.factory() as db:
        event = db.scalar(sa.select(AuditEvent).where(AuditEvent.action == "video.review").limit(1))
        assert event is not None and event.target == str(uid)

    # the accepted still documents its requirement, shown as video evidence with its time
    html = env.client.get(f"/ui/procedures/{env.procedure_id}").text
    item = re.search(r'<li class="check [^"]*" data-requirement="cecum".*?</li>', html, re.S)
    assert item and 'data-status="documented"' in item.group(0)
    assert 'data-evidence="video"' in item.group(0)
    assert 'still at <span class="pick-time">0:04</span>' in item.group(0)
    assert f"/ui/videos/{env.video_id}?t=3.500#player" in item.group(0)
    listing = env.client.get("/ui/procedures").text  # the list's verdict counts it too
    row = listing[listing.index("SYNTHETIC-VIDEO-UI") :]
    assert "Incomplete · 33 %" in row[: row.index("</tr>")]

    # rejected: it no longer counts
    assert _review(env, csrf, uid, "reject").status_code == 303
    html = env.client.get(f"/ui/procedures/{env.procedure_id}").text
    item = re.search(r'<li class="check [^"]*" data-requirement="cecum".*?</li>', html, re.S)
    assert item and 'data-evidence="video"' not in item.group(0)
    assert 'data-status="documented"' not in item.group(0)


def test_the_original_streams_with_range_and_is_audited_once(env: Env) -> None:
    _sign_in(env.client, env.viewer)
    url = f"/ui/videos/{env.video_id}/file"
    size = (env.video_dir / "ab" / "clip.mp4").stat().st_size
    with env.factory() as db:
        before = db.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "ui.video.view"))
    first = env.client.get(url, headers={"Range": "bytes=0-99"})
    assert first.status_code == 206 and len(first.content) == 100
    assert first.headers["content-range"] == f"bytes 0-99/{size}"
    assert first.headers["content-type"] == "video/mp4"
    later = env.client.get(url, headers={"Range": f"bytes=100-{size - 1}"})
    assert later.status_code == 206 and len(later.content) == size - 100
    with env.factory() as db:
        after = db.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "ui.video.view"))
    assert after == before + 1  # a playback start, not every range request
    env.client.cookies.clear()
    assert env.client.get(url, follow_redirects=False).status_code == 303  # sign in first


def test_a_video_not_kept_has_no_player(env: Env) -> None:
    _sign_in(env.client, env.viewer)
    with env.factory() as db:
        db.execute(sa.update(Video).where(Video.id == env.video_id).values(file_key=None))
        db.commit()
    try:
        html = env.client.get(f"/ui/videos/{env.video_id}").text
        assert 'id="not-kept"' in html and "<video" not in html
        assert "data-seek=" not in html  # markers link to the stills instead
        assert env.client.get(f"/ui/videos/{env.video_id}/file").status_code == 404
    finally:
        with env.factory() as db:
            db.execute(
                sa.update(Video).where(Video.id == env.video_id).values(file_key="ab/clip.mp4")
            )
            db.commit()


def test_a_running_analysis_shows_progress_and_is_polled(env: Env) -> None:
    _sign_in(env.client, env.viewer)
    with env.factory() as db:
        job = Job(kind="video_analysis", status="running", total=40, done=10)
        db.add(job)
        db.flush()
        db.execute(
            sa.update(Video)
            .where(Video.id == env.video_id)
            .values(status="analysing", job_id=job.id)
        )
        db.commit()
        job_id = job.id
    try:
        html = env.client.get(f"/ui/videos/{env.video_id}").text
        assert f'data-video-poll="/ui/videos/{env.video_id}/status.json"' in html
        assert re.search(r'<progress id="analysis-bar" max="40" value="10">', html)
        assert "10 / 40 frames" in html
        status = env.client.get(f"/ui/videos/{env.video_id}/status.json").json()
        assert status["status"] == "analysing" and (status["done"], status["total"]) == (10, 40)
        listing = env.client.get(f"/ui/procedures/{env.procedure_id}").text
        assert "data-video-poll" in listing
    finally:
        with env.factory() as db:
            db.execute(
                sa.update(Video).where(Video.id == env.video_id).values(status="done", job_id=None)
            )
            db.execute(sa.delete(Job).where(Job.id == job_id))
            db.commit()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a video at all", "not a video the service can read"),
        (b"", "could not be decoded"),
    ],
)
def test_a_refused_upload_is_explained_on_the_procedure_page(
    env: Env, content: bytes, message: str
) -> None:
    csrf = _sign_in(env.client, env.full)
    url = f"/ui/procedures/{env.procedure_id}/videos"
    files = {"file": ("clip.mp4", content, "video/mp4")}
    assert env.client.post(url, files=files, follow_redirects=False).status_code == 403
    resp = env.client.post(url, data={"csrf_token": csrf}, files=files, follow_redirects=False)
    assert resp.status_code == 303
    assert re.search(r"\?video_error=\w+#videos$", resp.headers["location"])
    page = env.client.get(resp.headers["location"]).text
    assert 'id="video-error"' in page and message in page
    with env.factory() as db:  # refused before any row or job exists
        assert db.scalar(sa.select(sa.func.count()).select_from(Video)) == 1
    viewer_csrf = _sign_in(env.client, env.viewer)
    resp = env.client.post(url, data={"csrf_token": viewer_csrf}, files=files)
    assert resp.status_code == 403  # scope ingest
