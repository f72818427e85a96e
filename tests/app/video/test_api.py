"""Video API on SQLite and PostgreSQL: upload (202, probe refusals before any job, the same
file again 200), list/get/frames/file with Range, cancel, pick review scopes, ImageOut's
video ref, and that the upload's file name is stored and logged nowhere."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from app.db import migrate
from app.db.models import AuditEvent, Image, Job, Video, VideoImage
from app.main import create_app
from app.services.job_threads import threads_of
from app.settings import Settings
from tests.app.conftest import create_keys, jpeg_bytes, make_settings
from tests.app.video import factory
from tests.timing import scaled

PHI_NAME = "DOE_JOHN_1961-02-03_colonoscopy.mp4"  # a file name that must never be stored
MAX_BYTES = 3_000_000


@dataclass
class World:
    client: TestClient
    keys: dict[str, dict[str, str]]
    settings: Settings
    root: Path
    procedure: str


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "main": factory.procedure_video(d / "main.mp4", [("plain", 3), ("blur", 2)]).path,
        "long": factory.procedure_video(
            d / "long.mp4", [("plain", 20)], fps=5, size=(160, 120), seed=1
        ).path,
        "too_long": factory.procedure_video(
            d / "too_long.mp4", [("plain", 31)], fps=2, size=(64, 48)
        ).path,
        "too_large": factory.procedure_video(d / "big.mp4", [("plain", 0.5)], size=(640, 360)).path,
        "audio": factory.audio_only(d / "audio.mp4"),
        "empty": factory.zero_length(d / "empty.mp4"),
        "jpeg": factory.jpeg_named_mp4(d / "photo.mp4"),
        "bytes": factory.random_bytes(d / "huge.mp4", MAX_BYTES + 20_000),
    }


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    root = tmp_path_factory.mktemp(f"video-api-{request.param}")
    if request.param == "postgres":
        url = request.getfixturevalue("pg_module_url")
    else:
        url = f"sqlite:///{root / 'v.db'}"
    migrate.upgrade(url)
    keys = create_keys(url)
    settings = make_settings(
        root,
        url,
        video_max_bytes=MAX_BYTES,
        video_max_duration_s=30.0,
        video_max_pixels=400 * 300,
        video_chunk_s=2.0,
    )
    with TestClient(create_app(settings, with_ui=False), raise_server_exceptions=False) as c:
        r = c.post(
            "/v1/procedures",
            json={"source": "t", "external_id": "v1", "kind": "colonoscopy"},
            headers=keys["ingest"],
        )
        assert r.status_code == 201, r.text
        yield World(c, keys, settings, root, r.json()["id"])


def _upload(w: World, path: Path, name: str = PHI_NAME, procedure: str | None = None):
    return w.client.post(
        f"/v1/procedures/{procedure or w.procedure}/videos",
        files={"file": (name, path.read_bytes(), "video/mp4")},
        headers=w.keys["ingest"],
    )


def _finish(w: World, video: dict) -> dict:
    """Wait for the video's analysis thread, then read the video again."""
    job_id = uuid.UUID(video["progress"]["job_id"])
    assert threads_of(w.client.app.state.runtime).join(job_id, scaled(180))
    r = w.client.get(video["url"], headers=w.keys["search"])
    assert r.status_code == 200, r.text
    return r.json()


def _counts(w: World) -> tuple[int, int]:
    with w.client.app.state.runtime.sessions() as s:
        videos = s.scalar(sa.select(sa.func.count()).select_from(Video))
        job_rows = s.scalar(sa.select(sa.func.count()).select_from(Job))
    return videos, job_rows


def _files(w: World) -> list[Path]:
    return sorted(p for p in Path(w.settings.video_dir).rglob("*") if p.is_file())


def test_upload_202_then_same_file_200_and_no_file_name_anywhere(
    world: World, clips: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        r = _upload(world, clips["main"])
        assert r.status_code == 202, r.text
        first = r.json()
        assert first["status"] in ("queued", "analysing", "done")
        assert (first["codec"], first["width"], first["height"]) == ("h264", 320, 240)
        assert first["duration_s"] == pytest.approx(5.0, abs=0.2)
        assert first["kept"] and first["progress"]["job_id"]
        again = _upload(world, clips["main"], name="other.mp4")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"]
    assert PHI_NAME not in caplog.text and "DOE_JOHN" not in caplog.text
    done = _finish(world, first)
    assert done["status"] == "done"
    assert done["progress"]["done"] == done["progress"]["total"] > 0
    # one kept original, nothing left in incoming/
    kept = [p for p in _files(world) if p.parent.name != "incoming"]
    assert [p.name for p in kept] == [f"{first['sha256']}.mp4"]
    assert not [p for p in _files(world) if p.parent.name == "incoming"]
    with world.client.app.state.runtime.sessions() as s:
        row = s.get(Video, uuid.UUID(first["id"]))
        assert row is not None and "DOE" not in repr(row.origin) + repr(row.analysis)
        details = " ".join(repr(e.detail) + str(e.target) for e in s.scalars(sa.select(AuditEvent)))
        assert "DOE" not in details
        assert {"video.upload", "video.upload_again"} <= set(
            s.scalars(sa.select(AuditEvent.action))
        )
    if world.settings.database_url.startswith("sqlite"):
        blob = b"".join(p.read_bytes() for p in world.root.glob("v.db*"))
        assert b"DOE_JOHN" not in blob


@pytest.mark.parametrize(
    ("clip", "status", "code"),
    [
        ("jpeg", 415, "not_a_video"),
        ("audio", 415, "not_a_video"),
        ("empty", 422, "video_unreadable"),
        ("too_long", 413, "video_too_long"),
        ("too_large", 413, "video_too_large"),
        ("bytes", 413, "video_too_large_bytes"),
    ],
)
def test_refusals_come_before_any_job_and_leave_no_file(
    world: World, clips: dict[str, Path], clip: str, status: int, code: str
) -> None:
    before, files = _counts(world), _files(world)
    r = _upload(world, clips[clip])
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code
    assert _counts(world) == before
    assert _files(world) == files


def test_bad_requests(world: World, clips: dict[str, Path]) -> None:
    nil = "00000000-0000-4000-8000-000000000000"
    r = _upload(world, clips["main"], procedure=nil)
    assert (r.status_code, r.json()["code"]) == (404, "procedure_not_found")
    url = f"/v1/procedures/{world.procedure}/videos"
    r = world.client.post(url, files={"other": ("a", b"x")}, headers=world.keys["ingest"])
    assert (r.status_code, r.json()["code"]) == (422, "missing_file")
    r = world.client.post(url, content=b"xyz", headers=world.keys["ingest"])
    assert (r.status_code, r.json()["code"]) == (415, "not_multipart")
    r = world.client.post(
        url, files={"file": ("a", clips["main"].read_bytes())}, headers=world.keys["search"]
    )
    assert r.status_code == 403
    assert world.client.get(f"/v1/videos/{nil}", headers=world.keys["search"]).status_code == 404
    assert not [p for p in _files(world) if p.parent.name == "incoming"]


def _done_video(world: World, clips: dict[str, Path]) -> dict:
    r = _upload(world, clips["main"])
    assert r.status_code in (200, 202), r.text
    return _finish(world, r.json())


def test_list_get_frames_and_file_range(world: World, clips: dict[str, Path]) -> None:
    video = _done_video(world, clips)
    search = world.keys["search"]
    listed = world.client.get(f"/v1/procedures/{world.procedure}/videos", headers=search).json()
    assert video["id"] in [v["id"] for v in listed]
    # the per-frame table, page by page, in time order
    seen: list[dict] = []
    after = None
    while True:
        q = {"limit": 3} | ({"after": after} if after is not None else {})
        page = world.client.get(f"{video['url']}/frames", params=q, headers=search).json()
        seen += page["items"]
        after = page["next_after"]
        if after is None:
            break
    assert len(seen) == video["progress"]["total"]
    assert [f["index"] for f in seen] == list(range(len(seen)))
    assert [f["t_ms"] for f in seen] == sorted(f["t_ms"] for f in seen)
    assert all(f["ok"] or f["reason"] for f in seen)
    # the original, whole and by range
    data = clips["main"].read_bytes()
    whole = world.client.get(video["file_url"], headers=search)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    part = world.client.get(video["file_url"], headers={**search, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]


def test_file_404_once_not_kept(world: World, clips: dict[str, Path]) -> None:
    video = _done_video(world, clips)
    rt = world.client.app.state.runtime
    with rt.sessions.begin() as s:
        row = s.get(Video, uuid.UUID(video["id"]))
        assert row is not None
        key, row.file_key = row.file_key, None
    try:
        r = world.client.get(video["file_url"], headers=world.keys["search"])
        assert (r.status_code, r.json()["code"]) == (404, "video_not_kept")
        assert world.client.get(video["url"], headers=world.keys["search"]).json()["kept"] is False
    finally:
        with rt.sessions.begin() as s:
            s.get(Video, uuid.UUID(video["id"])).file_key = key  # type: ignore[union-attr]


def test_cancel(world: World, clips: dict[str, Path]) -> None:
    r = _upload(world, clips["long"])
    assert r.status_code == 202, r.text
    video = r.json()
    assert (
        world.client.post(f"{video['url']}/cancel", headers=world.keys["search"]).status_code == 403
    )
    c = world.client.post(f"{video['url']}/cancel", headers=world.keys["ingest"])
    assert c.status_code == 200, c.text
    ended = _finish(world, video)
    assert ended["status"] == "cancelled"
    assert ended["progress"]["job_status"] == "cancelled"
    assert ended["progress"]["done"] < ended["progress"]["total"] or ended["progress"]["total"] == 0
    again = world.client.post(f"{video['url']}/cancel", headers=world.keys["ingest"])
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    done = _done_video(world, clips)
    r = world.client.post(f"{done['url']}/cancel", headers=world.keys["ingest"])
    assert (r.status_code, r.json()["code"]) == (409, "video_not_cancellable")


def test_review_scopes_and_image_video_ref(world: World, clips: dict[str, Path]) -> None:
    video = _done_video(world, clips)
    photo = jpeg_bytes(PILImage.new("RGB", (48, 48), (150, 70, 60)))
    up = world.client.post(
        f"/v1/procedures/{world.procedure}/images",
        files={"files": ("still.jpg", photo)},
        headers=world.keys["ingest"],
    )
    assert up.status_code == 201, up.text
    uid = up.json()["items"][0]["id"]
    rt = world.client.app.state.runtime
    with rt.sessions.begin() as s:  # the row the analysis writes with a picked still
        image_id = s.scalar(sa.select(Image.id).where(Image.uid == uuid.UUID(uid)))
        s.add(
            VideoImage(
                image_id=image_id,
                video_id=uuid.UUID(video["id"]),
                requirement="cecum",
                label="cecum",
                t_ms=1500,
                score=0.9,
                quality=0.8,
                rank=1,
            )
        )
    url = f"{video['url']}/picks/{uid}/review"
    for scope in ("ingest", "search"):
        r = world.client.post(url, json={"decision": "accept"}, headers=world.keys[scope])
        assert r.status_code == 403, scope
    ref = world.client.get(f"/v1/images/{uid}", headers=world.keys["search"]).json()["video"]
    assert ref == {
        "video_id": video["id"],
        "t_ms": 1500,
        "requirement": "cecum",
        "label": "cecum",
        "review": "needs_review",
    }
    r = world.client.post(url, json={"decision": "accept"}, headers=world.keys["label"])
    assert r.status_code == 200, r.text
    assert (r.json()["review"], r.json()["image_id"], r.json()["t_ms"]) == ("accepted", uid, 1500)
    r = world.client.post(url, json={"decision": "maybe"}, headers=world.keys["label"])
    assert r.status_code == 422
    r = world.client.post(url, json={"decision": "reject"}, headers=world.keys["admin"])
    assert r.status_code == 200 and r.json()["review"] == "rejected"
    picks = world.client.get(video["url"], headers=world.keys["search"]).json()["picks"]
    assert [(p["image_id"], p["review"]) for p in picks] == [(uid, "rejected")]
    nil = "00000000-0000-4000-8000-000000000000"
    r = world.client.post(
        f"{video['url']}/picks/{nil}/review",
        json={"decision": "accept"},
        headers=world.keys["label"],
    )
    assert (r.status_code, r.json()["code"]) == (404, "pick_not_found")
    with rt.sessions() as s:
        actions = list(s.scalars(sa.select(AuditEvent.action).where(AuditEvent.target == uid)))
    assert actions.count("video.review") == 2


def test_acknowledged_video_whose_job_never_started_runs_at_start(
    world: World, tmp_path: Path
) -> None:
    """A crash between the 202 (row and job committed) and the job's start: the next start
    (store.on_start, called by the app's lifespan) runs the pending job."""
    from app.video import store
    from app.video.probe import probe

    clip = factory.procedure_video(tmp_path / "r.mp4", [("plain", 2)], size=(160, 120), seed=3)
    rt = world.client.app.state.runtime
    sha, size = store._digest(clip.path)
    info = probe(clip.path, max_duration_s=60, max_pixels=10**7)
    key = store.file_key(sha, info.container)
    store._keep(rt, clip.path, key)
    submitted = store._create(rt, uuid.UUID(world.procedure), sha, size, info, key, "upload", None)
    assert submitted.job is not None
    store.on_start(rt)
    video = world.client.get(
        f"/v1/videos/{submitted.video.id}", headers=world.keys["search"]
    ).json()
    assert _finish(world, video)["status"] == "done"


def test_job_cancel_route(world: World) -> None:
    from app.services import jobs

    rt = world.client.app.state.runtime
    with rt.sessions.begin() as s:
        pending = jobs.create(s, "reindex", {}).id
        running = jobs.create(s, "video_analysis", {}).id
        busy_reindex = jobs.create(s, "reindex", {}).id
        finished = jobs.create(s, "reindex", {}).id
    lease = jobs.claim(rt.sessions, running)  # held by this (live) process
    jobs.claim(rt.sessions, busy_reindex)
    done_lease = jobs.claim(rt.sessions, finished)
    with rt.sessions.begin() as s:
        jobs.finish(s, done_lease, "completed")
    admin = world.keys["admin"]
    assert (
        world.client.post(f"/v1/jobs/{pending}/cancel", headers=world.keys["ingest"]).status_code
        == 403
    )
    r = world.client.post(f"/v1/jobs/{pending}/cancel", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    with rt.sessions() as s:
        assert not jobs.cancel_requested(s, lease)
    r = world.client.post(f"/v1/jobs/{running}/cancel", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "running"
    with rt.sessions() as s:
        assert jobs.cancel_requested(s, lease)
    # a running re-index never checks for a cancel: refused rather than flagged and ignored
    r = world.client.post(f"/v1/jobs/{busy_reindex}/cancel", headers=admin)
    assert (r.status_code, r.json()["code"]) == (409, "job_not_cancellable")
    with pytest.raises(jobs.JobBusyError):
        jobs.claim(rt.sessions, pending)  # a cancelled job never runs again
    r = world.client.post(f"/v1/jobs/{finished}/cancel", headers=admin)
    assert (r.status_code, r.json()["code"]) == (409, "job_not_cancellable")
    r = world.client.post(f"/v1/jobs/{pending}/resume", headers=admin)
    assert r.status_code == 409
    with rt.sessions.begin() as s:
        jobs.finish(s, lease, "cancelled")


def test_retention_keeps_a_shared_original_until_no_row_keeps_it(
    world: World, clips: dict[str, Path]
) -> None:
    from datetime import timedelta

    from app.db.types import utcnow
    from app.video import store

    first = _done_video(world, clips)
    r = world.client.post(
        "/v1/procedures",
        json={"source": "t", "external_id": f"v-{uuid.uuid4().hex[:6]}", "kind": "colonoscopy"},
        headers=world.keys["ingest"],
    )
    other = r.json()["id"]
    r = _upload(world, clips["main"], procedure=other)
    assert r.status_code == 202, r.text  # the same file in another procedure: a new video
    second = _finish(world, r.json())
    rt = world.client.app.state.runtime
    path = Path(world.settings.video_dir) / f"{first['sha256'][:2]}/{first['sha256']}.mp4"
    past, future = utcnow() - timedelta(days=1), utcnow() + timedelta(days=1)

    def retain(video: dict, when) -> None:  # noqa: ANN001
        with rt.sessions.begin() as s:
            s.get(Video, uuid.UUID(video["id"])).retain_until = when  # type: ignore[union-attr]

    retain(first, future)
    retain(second, past)
    assert store.purge_expired(rt) == 1
    assert path.is_file()  # the first video still keeps it
    search = world.keys["search"]
    assert world.client.get(f"{second['url']}/file", headers=search).status_code == 404
    assert world.client.get(f"{first['url']}/file", headers=search).status_code == 200
    # leftovers of a crash: an incoming part and a file no row names
    stray = Path(world.settings.video_dir) / "incoming" / "dead.part"
    stray.write_bytes(b"x")
    orphan = Path(world.settings.video_dir) / "ff" / ("f" * 64 + ".mp4")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"y")
    assert store.sweep_leftovers(rt, older_than_s=-60) == 2
    assert path.is_file() and not stray.exists() and not orphan.exists()
    retain(first, None)


def test_receive_an_upload_file_streams_it_with_the_byte_limit(
    world: World, clips: dict[str, Path]
) -> None:
    """The UI's form upload path: store.receive(rt, UploadFile) -> an fsynced incoming file."""
    import io

    import anyio
    from starlette.datastructures import UploadFile

    from app.services.errors import ProblemError
    from app.video import store

    rt = world.client.app.state.runtime
    data = clips["main"].read_bytes()
    path = anyio.run(store.receive, rt, UploadFile(io.BytesIO(data)))
    try:
        assert path.parent.name == "incoming" and path.read_bytes() == data
    finally:
        store.discard(path)
    assert not path.exists() and path not in store._hashed
    big = clips["bytes"].read_bytes()
    with pytest.raises(ProblemError) as exc:
        anyio.run(store.receive, rt, UploadFile(io.BytesIO(big)))
    assert (exc.value.status, exc.value.code) == (413, "video_too_large_bytes")
    assert not [p for p in _files(world) if p.parent.name == "incoming"]
