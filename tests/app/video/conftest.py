"""Shared fixtures of the video service tests: a served runtime with a reference gallery.

The app runs on a tmp SQLite database with the shipped baseline model (make_settings), and a
reference gallery of SYNTHETIC photos is uploaded and labelled through the API, as
`endoseek demo` builds its gallery: photos generated for the demo's four landmark classes
(cecum and ileum play the colonoscopy landmarks, z-line and pylorus the upper-GI ones) and its
two findings, plus two views of each landmark interval of the test clip (`clip`) taken
between the analysis grid's frames (other camera poses than any analysed frame).

Why views of the clip: the baseline colour/texture descriptor recognises a generated view it
has a reference of, but generalises poorly across generated instances of a class (measured on
a factory clip: 12 generic photos per label vote a caecum interval 0.75 caecum, 8 photos vote
the same frames 0.78 polyp). The documentation tests use the same remedy ("a view the gallery
knows", tests/app/documentation/service_support.py). The generic photos stay as distractors:
landmark-free mucosa votes a finding, bad frames vote anything, so the gate and smoothing are
what keep picks right.

No calibration is fitted: the picks use the vote shares, and an accepted pick documents its
requirement without thresholds. Waiting for an analysis joins its job thread (bounded by
tests/timing.py scaled()), never sleeps.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.cli.demo import GALLERY
from app.db import migrate
from app.main import create_app
from app.services.job_threads import threads_of
from app.services.runtime import Runtime
from app.settings import Settings
from app.video.decode import frame_at
from tests.app.conftest import create_keys, make_settings
from tests.app.video.factory import SyntheticVideo, procedure_video
from tests.timing import scaled

PER_LABEL = 6  # generic reference photos per gallery label
PHOTO_SIDE = 240  # the picture size of a 320x240 factory frame
# the test clip: 28 s at 10 fps, 56 frames at the analysis rate of 2/s
SCRIPT = (
    ("plain", 2.0),
    ("cecum", 6.0),
    ("blur", 2.0),
    ("ileum", 6.0),
    ("dark", 2.0),
    ("glare", 2.0),
    ("cecum", 4.0),
    ("out_of_body", 2.0),
    ("plain", 2.0),
)
CLIP_SEED = 3
VIEW_OFFSETS = (0.3, 0.7)  # where in a landmark interval its reference views are taken
GALLERY_SEED = 7  # other seeds than the factory's stills
CHUNK_S = 4.0  # video seconds per committed chunk in tests (several chunks per clip)
WAIT_S = 300  # base seconds for one analysis to end (scaled)


def jpeg(rgb: np.ndarray | Image.Image, quality: int = 90) -> bytes:
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_clip(path: Path) -> SyntheticVideo:
    return procedure_video(path, SCRIPT, seed=CLIP_SEED)


def off_grid_ms(t_s: float) -> int:
    """A frame time near `t_s` that no 2/s analysis samples (the clip runs at 10 fps)."""
    ms = round(t_s * 10) * 100
    return ms + 100 if ms % 500 == 0 else ms


def clip_views(clip: SyntheticVideo) -> dict[str, list[bytes]]:
    """Label -> JPEG views of the clip's landmark intervals, between the analysed frames."""
    out: dict[str, list[bytes]] = {}
    for interval in clip.intervals:
        if interval.kind not in GALLERY.values():
            continue
        for offset in VIEW_OFFSETS:
            t = interval.start_s + offset * (interval.end_s - interval.start_s)
            out.setdefault(interval.kind, []).append(jpeg(frame_at(clip.path, off_grid_ms(t))))
    return out


@cache
def generic_photos() -> dict[str, tuple[bytes, ...]]:
    """Label -> generated JPEG reference photos (deterministic, built once per session)."""
    from training.synthetic import CLASS_NAMES, _image_rng, generate_image

    out: dict[str, tuple[bytes, ...]] = {}
    for name, label in GALLERY.items():
        ci = CLASS_NAMES.index(name)
        photos = []
        for i in range(PER_LABEL):
            photos.append(jpeg(generate_image(ci, _image_rng(GALLERY_SEED, ci, i), PHOTO_SIDE)))
        out[label] = tuple(photos)
    return out


@dataclass
class VideoService:
    """A running app with the gallery, one key per scope, helpers for the video API."""

    client: TestClient
    headers: dict[str, dict[str, str]]
    settings: Settings

    @property
    def rt(self) -> Runtime:
        return self.client.app.state.runtime  # type: ignore[attr-defined]

    def procedure(self, external_id: str, kind: str = "colonoscopy") -> str:
        body = {"source": "video-test", "external_id": external_id, "kind": kind}
        r = self.client.post("/v1/procedures", json=body, headers=self.headers["ingest"])
        assert r.status_code in (200, 201), r.text
        return r.json()["id"]

    def upload(self, procedure_id: str, path: Path) -> Any:
        with open(path, "rb") as fh:
            return self.client.post(
                f"/v1/procedures/{procedure_id}/videos",
                files={"file": ("clip.mp4", fh, "video/mp4")},
                headers=self.headers["ingest"],
            )

    def video(self, video_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/videos/{video_id}", headers=self.headers["search"])
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, video: dict[str, Any]) -> dict[str, Any]:
        """The video after its analysis job thread ended."""
        join_job(self.rt, uuid.UUID(str(video["progress"]["job_id"])))
        return self.video(video["id"])

    def analyse(self, procedure_id: str, path: Path) -> dict[str, Any]:
        r = self.upload(procedure_id, path)
        assert r.status_code == 202, r.text
        return self.wait(r.json())

    def documentation(self, procedure_id: str) -> dict[str, Any]:
        r = self.client.get(
            f"/v1/procedures/{procedure_id}/documentation", headers=self.headers["search"]
        )
        assert r.status_code == 200, r.text
        return r.json()

    def review(self, video_id: str, image_id: str, decision: str) -> Any:
        return self.client.post(
            f"/v1/videos/{video_id}/picks/{image_id}/review",
            json={"decision": decision},
            headers=self.headers["label"],
        )


def join_job(rt: Runtime, job_id: uuid.UUID, timeout_s: float = WAIT_S) -> None:
    """Wait for the job's thread in this process to end (scaled deadline)."""
    assert threads_of(rt).join(job_id, scaled(timeout_s)), f"job {job_id} still running"


def queue_video(rt: Runtime, procedure_id: str, path: Path) -> tuple[uuid.UUID, uuid.UUID]:
    """A kept video and its pending analysis job, NOT started (the test runs the job itself
    in its own thread, with a progress callback that can stop or cancel it between chunks)."""
    from app.db.models import Video
    from app.services import jobs
    from app.services.job_threads import VIDEO_ANALYSIS
    from app.video.probe import probe
    from app.video.store import file_key

    s = rt.settings
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    info = probe(path, max_duration_s=s.video_max_duration_s, max_pixels=s.video_max_pixels)
    key = file_key(sha, info.container)
    target = Path(s.video_dir) / key
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    with rt.sessions.begin() as session:
        video = Video(
            procedure_id=uuid.UUID(procedure_id),
            sha256=sha,
            container=info.container,
            codec=info.codec,
            width=info.width,
            height=info.height,
            fps=info.fps,
            duration_s=info.duration_s,
            rotation=info.rotation,
            bytes=len(data),
            file_key=key,
            status="queued",
        )
        session.add(video)
        session.flush()
        job = jobs.create(session, VIDEO_ANALYSIS, {"video_id": str(video.id)})
        video.job_id = job.id
        return video.id, job.id


def add_gallery(
    client: TestClient, headers: dict[str, dict[str, str]], clip: SyntheticVideo
) -> int:
    """Upload the reference photos into a gallery procedure and label them (the API)."""
    body = {"source": "video-test", "external_id": "gallery", "kind": "other"}
    r = client.post("/v1/procedures", json=body, headers=headers["ingest"])
    assert r.status_code in (200, 201), r.text
    gallery = r.json()["id"]
    count = 0
    views = clip_views(clip)
    for label, generic in generic_photos().items():
        photos = [*generic, *views.get(label, [])]
        files = [("files", (f"r{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
        r = client.post(f"/v1/procedures/{gallery}/images", files=files, headers=headers["ingest"])
        assert r.status_code == 201, r.text
        for item in r.json()["items"]:
            put = client.put(
                f"/v1/images/{item['id']}/label",
                json={"label": label, "reference": True},
                headers=headers["label"],
            )
            assert put.status_code == 200, put.text
            count += 1
    return count


def video_settings(root: Path, database_url: str, **kw: object) -> Settings:
    """Test settings: everything under `root`, small chunks."""
    base: dict[str, object] = {"video_dir": root / "videos", "video_chunk_s": CHUNK_S}
    base.update(kw)
    return make_settings(root, database_url, **base)


@contextmanager
def video_service(
    root: Path, clip: SyntheticVideo, database_url: str | None = None, **kw: object
) -> Iterator[VideoService]:
    """The app on `database_url` (default: a fresh SQLite file under `root`), folders under
    `root`, the gallery uploaded."""
    url = database_url or f"sqlite:///{root / 'endoseek.db'}"
    migrate.upgrade(url)
    headers = create_keys(url)
    settings = video_settings(root, url, **kw)
    with TestClient(create_app(settings, with_ui=False), raise_server_exceptions=False) as c:
        add_gallery(c, headers, clip)
        yield VideoService(c, headers, settings)


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVideo:
    """The test clip (SCRIPT), rendered once per session."""
    return make_clip(tmp_path_factory.mktemp("clip") / "procedure.mp4")


@pytest.fixture(scope="session")
def served(
    tmp_path_factory: pytest.TempPathFactory, clip: SyntheticVideo
) -> Iterator[VideoService]:
    """One running service with the reference gallery for the video tests (each test makes
    its own procedures; a test that needs other settings starts its own `video_service`)."""
    with video_service(tmp_path_factory.mktemp("video-service"), clip) as svc:
        yield svc


@pytest.fixture(scope="session")
def analysed(served: VideoService, clip: SyntheticVideo) -> dict[str, Any]:
    """The clip analysed once through the API (upload -> 202 -> job thread), as VideoOut;
    "_seconds" is the wall time from upload to the end of the analysis."""
    started = time.perf_counter()
    video = served.analyse(served.procedure("analysed"), clip.path)
    video["_seconds"] = time.perf_counter() - started
    return video
