"""Through the service: votes within the procedure's reach, unexpected photos, explained states."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.db.models import Image, Label
from tests.app.documentation.service_support import (
    LANDMARKS,
    OUTSIDE,
    Photos,
    Service,
    add_gallery,
    calibrate,
    jpeg,
    running_service,
    statuses,
)

COLON = set(LANDMARKS.values())  # the service gallery's landmarks are the colon ones


def _predicted(svc: Service, ids: list[str]) -> list[str]:
    with svc.rt.sessions() as s:
        q = (
            sa.select(Label.label)
            .join(Image)
            .where(Label.source == "predicted", Image.uid.in_([uuid.UUID(i) for i in ids]))
        )
        return list(s.scalars(q))


def test_procedures_never_get_the_other_kinds_landmarks_and_flag_them(
    svc: Service, photos: Photos
) -> None:
    # an upper-GI landmark in the gallery: the look-alike class plays the pylorus
    refs = svc.procedure("pylorus-refs", kind="other")
    pylorus = [jpeg(img) for img in photos.heldout[OUTSIDE][:8]]
    for item in svc.upload(refs, pylorus):
        assert svc.label(item["id"], "pylorus").status_code == 200

    upper = svc.procedure("upper", kind="upper_gi")
    colon_photos = [photos.procedure_photo(label, 1) for label in sorted(COLON)]
    items = svc.upload(upper, colon_photos)
    ids = [i["id"] for i in items]
    # whole-gallery votes would say cecum/ileum/retroflex-rectum; within reach: pylorus only
    assert set(_predicted(svc, ids)) == {"pylorus"}
    doc = svc.documentation(upper)
    assert set(statuses(doc).values()) <= {"uncertain", "missing"}
    flagged = {u["image_id"]: u["label"] for u in doc["unexpected"]}
    assert flagged == {item["id"]: label for item, label in zip(items, sorted(COLON), strict=True)}

    colon = svc.procedure("colon", kind="colonoscopy")
    lookalike = [jpeg(img) for img in photos.heldout[OUTSIDE][10:14]]
    items = svc.upload(colon, lookalike)
    predicted = _predicted(svc, [i["id"] for i in items])
    assert predicted and set(predicted) <= COLON  # never the pylorus
    doc = svc.documentation(colon)
    assert {u["label"] for u in doc["unexpected"]} <= {"pylorus"}
    assert len(doc["unexpected"]) >= 1  # these photos look most like the pylorus references


def test_a_photo_below_threshold_is_uncertain_with_candidate_and_reason(
    svc: Service, photos: Photos
) -> None:
    data = json.loads(svc.calibration_path.read_text())
    model_id = svc.rt.index.model_id
    data[model_id]["labels"]["ileum"]["documented"] = 1.01  # out of any vote's reach
    svc.calibration_path.write_text(json.dumps(data))

    proc = svc.procedure("below")
    (item,) = svc.upload(proc, [photos.procedure_photo("ileum", 2)])
    assert item["fulfils"] == []
    doc = svc.documentation(proc)
    assert statuses(doc) == {
        "cecum": "missing",
        "ileum": "uncertain",
        "retroflex-rectum": "missing",
    }
    by_id = {r["id"]: r for r in doc["requirements"]}
    ileum = by_id["ileum"]
    assert ileum["best"]["image_id"] == item["id"] and ileum["best"]["label"] == "ileum"
    assert ileum["best"]["threshold"] == pytest.approx(1.01)
    assert ileum["reason"]["code"] in {"close_second", "low_similarity"}
    assert "1.01" in ileum["reason"]["detail"]
    assert by_id["cecum"]["best"] is None and by_id["cecum"]["reason"]["code"] == "no_candidate"
    assert doc["unexpected"] == []


def test_the_ui_checklist_shows_candidate_threshold_reason_and_unexpected(
    tmp_path: Path, sqlite_url: str, photos: Photos
) -> None:
    with running_service(tmp_path, sqlite_url, with_ui=True) as svc:
        add_gallery(svc, photos)
        calibrate(svc, photos, svc.rt.embedder)
        upper = svc.procedure("upper-ui", kind="upper_gi")
        (flag,) = svc.upload(upper, [photos.procedure_photo("ileum", 3)])
        colon = svc.procedure("colon-ui")
        svc.upload(colon, [jpeg(photos.heldout["cecum"][0])])
        client = svc.client
        page = client.get("/ui/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        key = svc.headers["search"]["Authorization"].removeprefix("Bearer ")
        client.post("/ui/sign-in", data={"api_key": key, "csrf_token": token})
        doc = svc.documentation(colon)
        html = client.get(f"/ui/procedures/{colon}").text
        for r in doc["requirements"]:
            item = re.search(rf'data-requirement="{r["id"]}".*?</li>', html, re.S).group(0)
            assert f'data-status="{r["status"]}"' in item
            if r["reason"]:
                assert f'data-reason="{r["reason"]["code"]}"' in item
            if r["status"] == "uncertain":
                assert "candidate " + r["best"]["label"] in item
        assert 'data-reason="no_candidate"' in html  # one cecum photo leaves two items missing
        html = client.get(f"/ui/procedures/{upper}").text
        assert 'id="unexpected"' in html and f'data-image="{flag["id"]}"' in html
