"""Checklist rules for stills picked from a video: a still counts only through its pick
(accepted -> documented, source "video"; pending or rejected -> nothing, whatever labels the
image has), and photos come before video. On plain data, then through the API on SQLite and
PostgreSQL (the single report and the completeness listing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from app.db import migrate
from app.db.models import Image, Video, VideoImage
from app.documentation import (
    Calibration,
    ImageLabel,
    LabelThreshold,
    ProcedureImage,
    VideoPick,
    VoteConfig,
    documentation_report,
    load_standards,
)
from app.main import create_app
from tests.app.conftest import create_keys, jpeg_bytes, make_settings

MODEL = "m" * 64
STANDARD = load_standards()["landmarks-colonoscopy"]
POLICY = Calibration(
    MODEL,
    0.95,
    0.5,
    VoteConfig(),
    {lab: LabelThreshold(lab, 0.8, 0.5, 0.96, 0.7, 10, 9) for lab in ("cecum", "ileum")},
)


def _pick(label: str, review: str, score: float = 0.9, t_ms: int = 1000) -> VideoPick:
    return VideoPick(label, review, t_ms, score, "v1", label)  # type: ignore[arg-type]


def _result(images: list[ProcedureImage], requirement: str):
    report = documentation_report(STANDARD, images, POLICY)
    return next(r for r in report.results if r.requirement.id == requirement)


def test_a_pending_or_rejected_still_is_no_evidence_whatever_its_labels() -> None:
    confident = [ImageLabel("cecum", "predicted", 0.99, MODEL), ImageLabel("cecum", "manual")]
    for review in ("needs_review", "rejected"):
        still = ProcedureImage("s", confident, picks=[_pick("cecum", review)])
        assert _result([still], "cecum").status == "missing"
    # the same labels on a photo document the requirement (the rule is the pick's, not a bug)
    assert _result([ProcedureImage("p", confident)], "cecum").status == "documented"


def test_an_accepted_still_documents_its_pick_label_with_source_video() -> None:
    # the ingest hook's prediction says "ileum"; the accepted pick says cecum: the pick counts
    still = ProcedureImage(
        "s",
        [ImageLabel("ileum", "predicted", 0.99, MODEL)],
        picks=[_pick("cecum", "accepted", t_ms=4200)],
    )
    cecum = _result([still], "cecum")
    assert cecum.status == "documented"
    assert cecum.best is not None and cecum.best.source == "video"
    assert cecum.best.pick is not None and cecum.best.pick.t_ms == 4200
    assert _result([still], "ileum").status == "missing"


def test_photos_come_before_video_stills() -> None:
    still = ProcedureImage("s", [], picks=[_pick("cecum", "accepted", score=1.0)])
    manual = ProcedureImage("m", [ImageLabel("cecum", "manual")])
    predicted = ProcedureImage("p", [ImageLabel("cecum", "predicted", 0.85, MODEL)])
    uncertain = ProcedureImage("u", [ImageLabel("cecum", "predicted", 0.6, MODEL)])
    for photo in (manual, predicted):
        for order in ([still, photo], [photo, still]):
            best = _result(order, "cecum").best
            assert best is not None and best.image_id == photo.image_id
    # an uncertain photo does not beat a documented still
    best = _result([uncertain, still], "cecum").best
    assert best is not None and (best.image_id, best.status) == ("s", "documented")


# ---- through the API -----------------------------------------------------------------------


@dataclass
class World:
    client: TestClient
    keys: dict[str, dict[str, str]]
    procedure: str
    video_id: uuid.UUID


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    root = tmp_path_factory.mktemp(f"video-report-{request.param}")
    url = (
        request.getfixturevalue("pg_module_url")
        if request.param == "postgres"
        else f"sqlite:///{root / 'r.db'}"
    )
    migrate.upgrade(url)
    keys = create_keys(url)
    with TestClient(
        create_app(make_settings(root, url), with_ui=False), raise_server_exceptions=False
    ) as c:
        r = c.post(
            "/v1/procedures",
            json={"source": "t", "external_id": "r1", "kind": "colonoscopy"},
            headers=keys["ingest"],
        )
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        with c.app.state.runtime.sessions.begin() as s:  # a video row as the analysis leaves it
            video = Video(
                procedure_id=uuid.UUID(pid),
                sha256="0" * 64,
                container="mp4",
                codec="h264",
                width=320,
                height=240,
                fps=10.0,
                duration_s=20.0,
                bytes=1,
                status="done",
            )
            s.add(video)
            s.flush()
            video_id = video.id
        yield World(c, keys, pid, video_id)


def _photo(w: World, rgb: tuple[int, int, int]) -> str:
    data = jpeg_bytes(PILImage.new("RGB", (48, 48), rgb))
    r = w.client.post(
        f"/v1/procedures/{w.procedure}/images",
        files={"files": ("x.jpg", data)},
        headers=w.keys["ingest"],
    )
    assert r.status_code == 201, r.text
    return r.json()["items"][0]["id"]


def _still(w: World, rgb: tuple[int, int, int], label: str, t_ms: int) -> str:
    uid = _photo(w, rgb)
    with w.client.app.state.runtime.sessions.begin() as s:
        image_id = s.scalar(sa.select(Image.id).where(Image.uid == uuid.UUID(uid)))
        s.add(
            VideoImage(
                image_id=image_id,
                video_id=w.video_id,
                requirement=label,
                label=label,
                t_ms=t_ms,
                score=0.8,
                quality=0.9,
                rank=1,
            )
        )
    return uid


def _report(w: World) -> dict[str, dict]:
    r = w.client.get(f"/v1/procedures/{w.procedure}/documentation", headers=w.keys["search"])
    assert r.status_code == 200, r.text
    return {req["id"]: req for req in r.json()["requirements"]}


def _listed(w: World) -> dict:
    r = w.client.get("/v1/documentation", params={"limit": 200}, headers=w.keys["search"])
    assert r.status_code == 200, r.text
    return next(i for i in r.json()["items"] if i["procedure"]["id"] == w.procedure)


def _review(w: World, uid: str, decision: str) -> None:
    r = w.client.post(
        f"/v1/videos/{w.video_id}/picks/{uid}/review",
        json={"decision": decision},
        headers=w.keys["label"],
    )
    assert r.status_code == 200, r.text


def _label(w: World, uid: str, label: str) -> None:
    r = w.client.put(f"/v1/images/{uid}/label", json={"label": label}, headers=w.keys["label"])
    assert r.status_code == 200, r.text


def test_checklist_counts_accepted_video_evidence_and_photos_win(world: World) -> None:
    w = world
    ileum = _still(w, (160, 60, 50), "ileum", 4000)
    _label(w, ileum, "ileum")  # even a manual label on a still does not count by itself
    cecum = _still(w, (90, 120, 60), "cecum", 9000)
    report = _report(w)
    assert (report["ileum"]["status"], report["cecum"]["status"]) == ("missing", "missing")
    assert {"ileum", "cecum"} <= set(_listed(w)["missing"])

    _review(w, ileum, "accept")
    best = _report(w)["ileum"]["best"]
    assert _report(w)["ileum"]["status"] == "documented"
    assert (best["image_id"], best["source"]) == (ileum, "video")
    assert best["video"] == {"video_id": str(w.video_id), "t_ms": 4000}
    assert "ileum" in _listed(w)["documented"]

    _review(w, cecum, "accept")
    assert _report(w)["cecum"]["best"]["source"] == "video"
    photo = _photo(w, (200, 150, 140))
    _label(w, photo, "cecum")
    best = _report(w)["cecum"]["best"]
    assert (best["image_id"], best["source"], best["video"]) == (photo, "manual", None)

    _review(w, ileum, "reject")
    assert _report(w)["ileum"]["status"] == "missing"
    listed = _listed(w)
    assert "ileum" in listed["missing"] and "cecum" in listed["documented"]
