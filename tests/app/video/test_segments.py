"""Similar moments: POST /v1/search/segments by photo, stored image or segment."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.video.segments import segment_index_of
from app.video.timeline import segments
from tests.app.video.conftest import VideoService, jpeg, off_grid_ms
from tests.app.video.factory import SyntheticVideo


def search(svc: VideoService, key: str = "search", **form: Any) -> Any:
    files = {"file": ("q.jpg", form.pop("file"), "image/jpeg")} if "file" in form else None
    data = {k: str(v) for k, v in form.items()}
    return svc.client.post(
        "/v1/search/segments", files=files, data=data or None, headers=svc.headers[key]
    )


def interval(clip: SyntheticVideo, label: str):  # noqa: ANN201 - a factory Interval
    return next(i for i in clip.intervals if i.kind == label)


def midpoint_kind(clip: SyntheticVideo, hit: dict[str, Any]) -> str | None:
    return clip.kind_at((hit["start_ms"] + hit["end_ms"]) / 2000)


@pytest.mark.parametrize("label", ["ileum", "cecum"])
def test_a_landmark_photo_finds_a_moment_of_that_landmark_first(
    served: VideoService, clip: SyntheticVideo, analysed: dict[str, Any], label: str
) -> None:
    from app.video.decode import frame_at

    where = interval(clip, label)
    t_ms = off_grid_ms((where.start_s + where.end_s) / 2)  # a view no reference or frame is
    r = search(served, file=jpeg(frame_at(clip.path, t_ms)), k=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == served.rt.index.model_id and body["k"] == 5
    hits = body["results"]
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:], strict=False))
    top = hits[0]
    assert midpoint_kind(clip, top) == label, hits[:3]
    assert top["procedure_id"] and top["video_id"]
    assert top["end_ms"] - top["start_ms"] == served.settings.video_segment_s * 1000


def test_search_by_stored_image_and_by_segment(
    served: VideoService, clip: SyntheticVideo, analysed: dict[str, Any]
) -> None:
    pick = next(p for p in analysed["picks"] if p["requirement"] == "ileum" and p["rank"] == 1)
    r = search(served, image_id=pick["image_id"], k=3)
    assert r.status_code == 200, r.text
    by_image = r.json()["results"]
    assert midpoint_kind(clip, by_image[0]) == "ileum"

    seed = by_image[0]["segment_id"]
    r = served.client.post(
        "/v1/search/segments", json={"segment_id": seed, "k": 3}, headers=served.headers["search"]
    )
    assert r.status_code == 200, r.text
    by_segment = r.json()["results"]
    assert seed not in [h["segment_id"] for h in by_segment]  # not itself
    assert midpoint_kind(clip, by_segment[0]) == "ileum"


def test_bad_segment_queries(served: VideoService, analysed: dict[str, Any]) -> None:
    assert search(served, k=5).json()["code"] == "no_query"
    assert search(served, segment_id=10**9).json()["code"] == "segment_not_found"
    both = search(served, segment_id=1, image_id=analysed["picks"][0]["image_id"])
    assert both.status_code == 422
    assert search(served, segment_id=1, k=10**6).json()["code"] == "k_too_large"
    assert search(served, key="ingest", segment_id=1).status_code == 403
    r = served.client.post(
        "/v1/search/segments", content=b"x", headers={**served.headers["search"]}
    )
    assert r.status_code == 415


def test_the_segment_index_catches_up_with_rows_committed_elsewhere(
    served: VideoService, analysed: dict[str, Any]
) -> None:
    """Rows are the truth: the index follows inserts (another process) and deletes."""
    import uuid

    import sqlalchemy as sa

    from app.db.models import VideoSegment
    from app.services import vectors

    rt = served.rt
    model_id, dim = rt.index.model_id, rt.index.dim
    index = segment_index_of(rt)
    before = index.add(model_id, dim)
    vec = np.zeros(dim, np.float32)
    vec[0] = 1.0
    with rt.sessions.begin() as s:
        row = VideoSegment(
            video_id=uuid.UUID(analysed["id"]),
            model_id=model_id,
            start_ms=10**9,
            end_ms=10**9 + 4000,
            vector=vectors.to_bytes(vec),
        )
        s.add(row)
        s.flush()
        new_id = row.id
    assert index.search(model_id, vec, 1)[0] == (new_id, pytest.approx(1.0))
    with rt.sessions.begin() as s:
        s.execute(sa.delete(VideoSegment).where(VideoSegment.id == new_id))
    assert new_id not in [i for i, _ in index.search(model_id, vec, 5)]
    assert index.add(model_id, dim) == before


def test_segments_of_a_clip_cover_it_with_unit_vectors() -> None:
    t = np.arange(0, 28000, 500)
    vecs = np.random.default_rng(0).normal(size=(len(t), 8)).astype(np.float32)
    out = segments(t, vecs, window_s=4, hop_s=2)
    assert [s.start_ms for s in out] == list(range(0, 28000, 2000))
    assert all(abs(float(np.linalg.norm(s.vector)) - 1) < 1e-5 for s in out)
