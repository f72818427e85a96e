"""Bad input and missing/wrong keys: always a 4xx problem+json, never a 500, nothing left behind."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image

from app.db.models import Embedding
from app.db.models import Image as ImageRow
from tests.app.conftest import jpeg_bytes


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _bomb_png(side: int = 30000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (decompression bomb)."""
    raw = zlib.compress(b"\x00" * (side // 8 + 1) * 16)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _gif_animated() -> bytes:
    frames = [Image.new("RGB", (32, 32), (i * 80, 40, 200 - i * 60)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


BASE = Image.new("RGB", (64, 48), (180, 60, 50))
GOOD_JPEG = jpeg_bytes(BASE)
BAD_UPLOADS = {
    "zero_bytes": (b"", "empty_file"),
    "text_named_jpg": (b"hello, this is not a photo\n", "unsupported_type"),
    "truncated_jpeg": (GOOD_JPEG[: len(GOOD_JPEG) // 2], "corrupt_image"),
    "corrupt_jpeg": (GOOD_JPEG[:20] + b"\x00" * 200 + GOOD_JPEG[-50:], "corrupt_image"),
    "truncated_png": (_png(BASE)[:60], "corrupt_image"),
    "bomb_png": (_bomb_png(), "too_many_pixels"),
    "pdf": (b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n", "unsupported_type"),
    "animated_gif": (_gif_animated(), "animated_image"),
}


def _state(client: TestClient, settings) -> tuple[int, int, int, int]:
    rt = client.app.state.runtime
    with rt.sessions() as s:
        rows = s.scalar(sa.select(sa.func.count()).select_from(ImageRow))
        vecs = s.scalar(sa.select(sa.func.count()).select_from(Embedding))
    files = [p for p in settings.storage_dir.rglob("*") if p.is_file()]
    return rows, vecs, len(files), len(rt.index)


def _problem(r, status: int | None = None, code: str | None = None) -> dict:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    assert body["status"] == r.status_code
    if status is not None:
        assert r.status_code == status, body
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.mark.parametrize("name", sorted(BAD_UPLOADS))
def test_bad_upload_rejected_and_leaves_nothing(
    name: str, client: TestClient, headers: dict, procedure: str, settings
) -> None:
    data, code = BAD_UPLOADS[name]
    before = _state(client, settings)
    files = [("files", ("ok.jpg", jpeg_bytes(Image.new("RGB", (40, 40), (9, 9, 9))), "image/jpeg"))]
    files.append(("files", (f"{name}.jpg", data, "image/jpeg")))
    r = client.post(f"/v1/procedures/{procedure}/images", files=files, headers=headers["ingest"])
    body = _problem(r, code=code)
    assert body["file_index"] == 1
    assert _state(client, settings) == before
    q = client.post("/v1/search", files={"file": ("q.jpg", data)}, headers=headers["search"])
    _problem(q, code=code)


@pytest.mark.parametrize(
    "img",
    [
        Image.new("L", (50, 40), 120),
        Image.new("CMYK", (50, 40), (10, 200, 30, 5)),
        Image.new("I;16", (50, 40), 40000),
        Image.new("RGBA", (50, 40), (200, 10, 10, 128)),
        Image.new("P", (50, 40), 7),
    ],
    ids=["gray", "cmyk", "16bit", "rgba", "palette"],
)
def test_colour_modes_are_normalised(img, client: TestClient, headers: dict, procedure) -> None:
    fmt = "JPEG" if img.mode == "CMYK" else "PNG"
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    r = client.post(
        f"/v1/procedures/{procedure}/images",
        files={"files": ("x", buf.getvalue())},
        headers=headers["ingest"],
    )
    assert r.status_code == 201, r.text


def test_oversize_upload(tmp_path, sqlite_url) -> None:
    from app.db import migrate
    from app.main import create_app
    from tests.app.conftest import create_keys, make_settings

    migrate.upgrade(sqlite_url)
    small = make_settings(tmp_path, sqlite_url, max_upload_bytes=1000, max_request_bytes=5000)
    keys = create_keys(sqlite_url)
    with TestClient(create_app(small, with_ui=False), raise_server_exceptions=False) as c:
        pid = c.post(
            "/v1/procedures", json={"source": "s", "external_id": "e"}, headers=keys["ingest"]
        ).json()["id"]
        big = jpeg_bytes(Image.effect_noise((48, 48), 80))
        assert 1000 < len(big) < 5000
        r = c.post(
            f"/v1/procedures/{pid}/images", files={"files": ("a", big)}, headers=keys["ingest"]
        )
        _problem(r, 413, "file_too_large")
        huge = b"\xff\xd8\xff" + b"0" * 20_000
        r = c.post(
            f"/v1/procedures/{pid}/images", files={"files": ("a", huge)}, headers=keys["ingest"]
        )
        _problem(r, 413, "payload_too_large")
        assert not [p for p in small.storage_dir.rglob("*") if p.is_file()]


def test_request_errors(client: TestClient, headers: dict, procedure: str) -> None:
    s = headers["search"]
    _problem(
        client.post(
            "/v1/search", content=b"{not json", headers=s | {"content-type": "application/json"}
        ),
        400,
        "malformed_json",
    )
    unknown = "00000000-0000-4000-8000-000000000000"
    _problem(
        client.post("/v1/search", json={"image_id": unknown}, headers=s), 404, "image_not_found"
    )
    _problem(client.post("/v1/search", json={"image_id": unknown, "k": 0}, headers=s), 422)
    _problem(
        client.post("/v1/search", json={"image_id": unknown, "k": 10**9}, headers=s),
        422,
        "k_too_large",
    )
    _problem(client.post("/v1/search", json={"image_id": "nope"}, headers=s), 422)
    _problem(
        client.post("/v1/search", content=b"x", headers=s | {"content-type": "text/plain"}), 415
    )
    _problem(client.get(f"/v1/images/{unknown}", headers=s), 404, "image_not_found")
    _problem(client.get("/v1/images/not-a-uuid", headers=s), 422, "validation_error")
    _problem(client.get(f"/v1/procedures/{unknown}", headers=s), 404, "procedure_not_found")
    _problem(client.get("/v1/nothing-here", headers=s), 404, "not_found")
    _problem(client.put("/v1/procedures", headers=s), 405, "method_not_allowed")
    ing = headers["ingest"]
    _problem(client.post("/v1/procedures", json={"source": ""}, headers=ing), 422)
    _problem(
        client.post(
            f"/v1/procedures/{unknown}/images", files={"files": ("a", GOOD_JPEG)}, headers=ing
        ),
        404,
    )
    _problem(client.post(f"/v1/procedures/{procedure}/images", headers=ing), 422)


def test_missing_wrong_and_revoked_keys(client: TestClient, headers: dict, settings) -> None:
    body = {"source": "k", "external_id": "1"}
    _problem(client.post("/v1/procedures", json=body), 401, "missing_key")
    _problem(
        client.post("/v1/procedures", json=body, headers={"Authorization": "Bearer esk_x_y"}),
        401,
        "invalid_key",
    )
    _problem(
        client.post("/v1/procedures", json=body, headers=headers["search"]),
        403,
        "insufficient_scope",
    )
    assert client.post("/v1/procedures", json=body, headers=headers["admin"]).status_code == 201
    _problem(client.get("/metrics", headers=headers["ingest"]), 403)
    from app.services import keys

    token = headers["label"]["Authorization"].split()[1]
    with client.app.state.runtime.sessions() as s:
        keys.revoke_key(s, token.split("_")[1])
        s.commit()
    _problem(client.get("/v1/models", headers=headers["label"]), 401, "invalid_key")


def test_unexpected_error_does_not_leak(client: TestClient, headers: dict, monkeypatch) -> None:
    from app.services import model_registry

    def boom(_session):
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(model_registry, "list_models", boom)
    r = client.get("/v1/models", headers=headers["search"])
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert "secret" not in r.text and r.headers["content-type"].startswith(
        "application/problem+json"
    )


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_time_outside_utc_years_is_a_422(when: str, client: TestClient, headers: dict) -> None:
    """Valid ISO 8601 with an offset, but before year 1 / after 9999 once in UTC: the database
    drivers convert to UTC, which raised OverflowError (a 500 found by the API fuzzer)."""
    r = client.get("/v1/procedures", params={"performed_from": when}, headers=headers["search"])
    _problem(r, 422)
    r = client.post(
        "/v1/procedures",
        json={"source": "t", "external_id": "utc", "performed_at": when},
        headers=headers["ingest"],
    )
    _problem(r, 422)
