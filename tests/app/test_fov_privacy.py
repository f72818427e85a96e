"""Issue 15, privacy: patient text burned into the black surround of the field of view is gone
from what a REST upload stores (the file and its thumbnail), and the photo's vector is the
clean photo's; with the field-of-view mask switched off the text stays (the test can fail).
"""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image

from app.db import migrate
from app.db.models import Embedding
from app.db.models import Image as ImageRow
from app.main import create_app
from embedder.fov import THRESHOLD, apply_fov_mask
from tests.app.conftest import create_keys, jpeg_bytes, make_settings
from tests.embedder.test_fov import burn_text, endoscopy_photo

Box = tuple[int, ...]


def _photos() -> tuple[bytes, bytes, list[Box]]:
    """(clean JPEG, the same photo with patient text in two corners, the text boxes)."""
    clean, _ = endoscopy_photo((640, 512), "octagon", seed=4)
    text, boxes = burn_text(clean, "tl,br")
    return jpeg_bytes(clean), jpeg_bytes(text), boxes


def _upload(client: TestClient, pid: str, headers: dict, name: str, data: bytes) -> str:
    r = client.post(
        f"/v1/procedures/{pid}/images",
        files={"files": (name, data, "image/jpeg")},
        headers=headers["ingest"],
    )
    assert r.status_code == 201, r.text
    return r.json()["items"][0]["id"]


def _get_image(client: TestClient, path: str, headers: dict) -> Image.Image:
    r = client.get(path, headers=headers["search"])
    assert r.status_code == 200, r.text
    return Image.open(io.BytesIO(r.content)).convert("RGB")


def _text_brightness(img: Image.Image, boxes: list[Box], scale: float, pad: int = 3) -> int:
    """The brightest channel over the text boxes (scaled to `img`, padded)."""
    arr = np.asarray(img)
    out = 0
    for x0, y0, x1, y1 in boxes:
        sx0, sy0 = max(0, int(x0 * scale) - pad), max(0, int(y0 * scale) - pad)
        sx1, sy1 = int(np.ceil(x1 * scale)) + pad, int(np.ceil(y1 * scale)) + pad
        out = max(out, int(arr[sy0:sy1, sx0:sx1].max()))
    return out


def _vectors(client: TestClient, uids: list[str]) -> list[np.ndarray]:
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    out = []
    with rt.sessions() as session:
        for uid in uids:
            image = session.scalar(sa.select(ImageRow).where(ImageRow.uid == uuid.UUID(uid)))
            raw = session.scalar(
                sa.select(Embedding.vector).where(
                    Embedding.image_id == image.id, Embedding.model_id == rt.index.model_id
                )
            )
            assert raw is not None
            out.append(np.frombuffer(raw, dtype="<f4").astype(np.float64))
    return out


def test_burned_in_text_is_gone_from_file_and_thumbnail(
    client: TestClient, headers: dict, procedure: str
) -> None:
    clean, text, boxes = _photos()
    assert _text_brightness(Image.open(io.BytesIO(text)), boxes, 1.0) > 200
    clean_id = _upload(client, procedure, headers, "clean.jpg", clean)
    text_id = _upload(client, procedure, headers, "text.jpg", text)

    # the clean photo (its surround already black) is stored byte for byte
    r = client.get(f"/v1/images/{clean_id}/file", headers=headers["search"])
    assert r.status_code == 200 and r.content == clean

    stored = _get_image(client, f"/v1/images/{text_id}/file", headers)
    assert stored.size == (640, 512)
    assert _text_brightness(stored, boxes, 1.0) <= THRESHOLD
    # the picture itself is the clean photo's (up to JPEG re-encoding)
    diff = np.abs(
        np.asarray(stored, dtype=np.int16)
        - np.asarray(Image.open(io.BytesIO(clean)).convert("RGB"), dtype=np.int16)
    )
    assert diff.mean() < 2.0

    thumb = _get_image(client, f"/v1/images/{text_id}/thumbnail", headers)
    assert _text_brightness(thumb, boxes, thumb.width / stored.width, pad=2) <= THRESHOLD

    clean_vec, text_vec = _vectors(client, [clean_id, text_id])
    cosine = clean_vec @ text_vec / (np.linalg.norm(clean_vec) * np.linalg.norm(text_vec))
    assert cosine >= 0.99, cosine


def test_with_the_mask_off_the_text_stays(tmp_path: Path, sqlite_url: str) -> None:
    """The control: without the mask, the same upload keeps its text (file and thumbnail)."""
    migrate.upgrade(sqlite_url)
    headers = create_keys(sqlite_url)
    settings = make_settings(tmp_path, sqlite_url, fov_mask=False)
    _, text, boxes = _photos()
    with TestClient(create_app(settings, with_ui=False)) as client:
        r = client.post(
            "/v1/procedures",
            json={"source": "test", "external_id": "nomask"},
            headers=headers["ingest"],
        )
        assert r.status_code == 201, r.text
        text_id = _upload(client, r.json()["id"], headers, "text.jpg", text)
        r = client.get(f"/v1/images/{text_id}/file", headers=headers["search"])
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(text).digest()
        stored = Image.open(io.BytesIO(r.content)).convert("RGB")
        assert _text_brightness(stored, boxes, 1.0) > 200
        thumb = _get_image(client, f"/v1/images/{text_id}/thumbnail", headers)
        assert _text_brightness(thumb, boxes, thumb.width / stored.width, pad=2) > 2 * THRESHOLD


def test_png_upload_is_masked_and_stays_lossless(
    client: TestClient, headers: dict, procedure: str
) -> None:
    """A lossless upload is masked and stored lossless: exactly the masked pixels."""
    clean, _ = endoscopy_photo((480, 384), "disc", seed=6)
    text, boxes = burn_text(clean, "tr")
    buf = io.BytesIO()
    text.save(buf, format="PNG")
    r = client.post(
        f"/v1/procedures/{procedure}/images",
        files={"files": ("text.png", buf.getvalue(), "image/png")},
        headers=headers["ingest"],
    )
    assert r.status_code == 201, r.text
    uid = r.json()["items"][0]["id"]
    stored = _get_image(client, f"/v1/images/{uid}/file", headers)
    assert _text_brightness(stored, boxes, 1.0) == 0
    assert np.array_equal(np.asarray(stored), np.asarray(apply_fov_mask(text)[0]))
