"""Access battery: every OpenAPI operation refuses a missing, revoked and wrong-scope key;
keys are stored hashed; per-key rate limit; upload and pixel limits; CORS closed by default;
audit events; a DEBUG-level server log carries no key and no patient data."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image

from app.db import migrate
from app.db.models import AuditEvent
from app.main import create_app
from app.services import keys as key_svc
from tests.app.conftest import create_keys, jpeg_bytes, make_settings
from tests.app.server import free_port, server_env, start_server, stop_server, wait_ready
from tests.timing import scaled

NIL = "00000000-0000-4000-8000-000000000000"
PHOTO = jpeg_bytes(Image.new("RGB", (40, 40), (160, 60, 60)))


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict, Path]]:
    root = tmp_path_factory.mktemp("access")
    url = f"sqlite:///{root / 'a.db'}"
    migrate.upgrade(url)
    keys = create_keys(url)
    revoked = create_keys(url)["admin"]
    with TestClient(create_app(make_settings(root, url)), raise_server_exceptions=False) as c:
        with c.app.state.runtime.sessions() as s:
            key_svc.revoke_key(s, revoked["Authorization"].split()[1].split("_")[1])
            s.commit()
        keys["revoked"] = revoked
        yield c, keys, root


def _operations(client: TestClient) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    ops = []
    for path, item in spec["paths"].items():
        for method in item:
            url = path
            for name in ("procedure_id", "image_id", "job_id", "video_id", "id"):
                url = url.replace("{" + name + "}", NIL)
            ops.append((method.upper(), url.replace("{", "").replace("}", "")))
    return ops


# probes for load balancers and orchestrators (no data: status, checks, vector count)
OPEN = {("GET", "/health"), ("GET", "/ready")}


def test_every_operation_refuses_missing_revoked_and_wrong_scope_keys(env) -> None:
    client, keys, _ = env
    ops = _operations(client)
    assert len(ops) >= 15
    matrix = {"missing": 0, "revoked": 0, "wrong_scope": 0, "any_key": 0}
    for method, url in ops:
        if (method, url) in OPEN:
            continue
        assert _problem(client.request(method, url), 401)["code"] == "missing_key", url
        matrix["missing"] += 1
        r = client.request(method, url, headers=keys["revoked"])
        assert _problem(r, 401)["code"] == "invalid_key", url
        matrix["revoked"] += 1
        r = client.request(method, url, headers={"Authorization": "Bearer esk_nope_nope"})
        assert _problem(r, 401)["code"] == "invalid_key", url
        codes = [
            client.request(method, url, headers=keys[s]).status_code
            for s in ("ingest", "search", "label")
        ]
        if 403 in codes:
            matrix["wrong_scope"] += 1
            r = client.request(
                method, url, headers=keys[("ingest", "search", "label")[codes.index(403)]]
            )  # noqa: E501
            assert _problem(r, 403)["code"] == "insufficient_scope"
        else:
            matrix["any_key"] += 1  # read endpoints open to every valid key (e.g. /v1/models)
        assert client.request(method, url, headers=keys["admin"]).status_code not in (401, 403)
    assert matrix["wrong_scope"] >= 8, matrix


def test_keys_are_stored_hashed(env) -> None:
    _, keys, root = env
    blob = b"".join(p.read_bytes() for p in root.glob("a.db*"))
    for header in keys.values():
        token = header["Authorization"].split()[1]
        assert token.encode() not in blob
        assert token.split("_", 2)[2].encode() not in blob  # nor the secret part alone


def test_rate_limit_per_key_with_retry_after(tmp_path: Path, sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    keys = create_keys(sqlite_url)
    settings = make_settings(tmp_path, sqlite_url, rate_limit_per_minute=5)
    with TestClient(create_app(settings, with_ui=False), raise_server_exceptions=False) as c:
        for _ in range(5):
            assert c.get("/v1/models", headers=keys["search"]).status_code == 200
        r = c.get("/v1/models", headers=keys["search"])
        assert _problem(r, 429)["code"] == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert c.get("/v1/models", headers=keys["label"]).status_code == 200  # per key


def test_upload_and_pixel_limits(tmp_path: Path, sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    keys = create_keys(sqlite_url)
    settings = make_settings(tmp_path, sqlite_url, max_upload_bytes=4000, max_pixels=10_000)
    with TestClient(create_app(settings, with_ui=False), raise_server_exceptions=False) as c:
        pid = c.post(
            "/v1/procedures", json={"source": "l", "external_id": "1"}, headers=keys["ingest"]
        ).json()["id"]
        url = f"/v1/procedures/{pid}/images"
        big = jpeg_bytes(Image.effect_noise((120, 120), 90))
        assert len(big) > 4000
        r = c.post(url, files={"files": ("a.jpg", big)}, headers=keys["ingest"])
        assert _problem(r, 413)["code"] == "file_too_large"
        buf = io.BytesIO()
        Image.new("RGB", (200, 200), (9, 9, 9)).save(buf, format="PNG")  # 40k px, tiny file
        r = c.post(url, files={"files": ("b.png", buf.getvalue())}, headers=keys["ingest"])
        assert _problem(r, 422)["code"] == "too_many_pixels"
        r = c.post("/v1/search", files={"file": ("b.png", buf.getvalue())}, headers=keys["search"])
        assert _problem(r, 422)["code"] == "too_many_pixels"
        assert not [p for p in settings.storage_dir.rglob("*") if p.is_file()]


def test_cors_closed_by_default(env) -> None:
    client, keys, _ = env
    evil = {"Origin": "https://evil.example"}
    r = client.get("/v1/models", headers=keys["search"] | evil)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    pre = client.options(
        "/v1/search",
        headers=evil | {"Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": "authorization"},
    )  # fmt: skip
    assert "access-control-allow-origin" not in pre.headers
    assert "access-control-allow-credentials" not in pre.headers


def test_audit_events_for_search_view_label_delete(env) -> None:
    client, keys, _ = env
    pid = client.post(
        "/v1/procedures", json={"source": "audit", "external_id": "a1"}, headers=keys["ingest"]
    ).json()["id"]
    r = client.post(
        f"/v1/procedures/{pid}/images", files={"files": ("a.jpg", PHOTO)}, headers=keys["ingest"]
    )
    uid = r.json()["items"][0]["id"]
    assert client.get(f"/v1/images/{uid}", headers=keys["search"]).status_code == 200
    assert client.get(f"/v1/images/{uid}/file", headers=keys["search"]).status_code == 200
    assert client.post("/v1/search", json={"image_id": uid}, headers=keys["search"]).is_success
    r = client.post(f"/v1/images/{uid}/labels", json={"label": "cecum"}, headers=keys["label"])
    assert r.status_code == 201, r.text
    assert client.delete(f"/v1/images/{uid}", headers=keys["admin"]).status_code == 204
    with client.app.state.runtime.sessions() as s:
        rows = s.execute(sa.select(AuditEvent.action, AuditEvent.target, AuditEvent.key_id)).all()
    seen = {(a, t) for a, t, k in rows if k is not None}
    for action in ("image.view", "image.file", "image.delete"):
        assert (action, uid) in seen, (action, rows)
    assert any(a.startswith("image.label") and t == uid for a, t in seen), rows
    assert ("search", f"image:{uid}") in seen
    assert all(k is not None for _, _, k in rows)


def test_debug_log_has_no_keys_and_no_patient_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    migrate.upgrade(url)
    keys = create_keys(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    server = start_server(server_env(tmp_path, url, port, ENDOSEEK_LOG_LEVEL="DEBUG"), log)
    external, filename = "MRN-4711-SMITH-JOHN-19570412", "smith_john_19570412_colon.jpg"
    try:
        wait_ready(base, server)
        with httpx.Client(base_url=base, timeout=scaled(60)) as c:
            pid = c.post(
                "/v1/procedures",
                json={"source": "hospital", "external_id": external},
                headers=keys["ingest"],
            ).json()["id"]
            c.get("/v1/procedures", params={"external_id": external}, headers=keys["search"])
            up = c.post(
                f"/v1/procedures/{pid}/images",
                files={"files": (filename, PHOTO, "image/jpeg")},
                headers=keys["ingest"],
            )
            assert up.status_code == 201, up.text
            bad = c.post(
                f"/v1/procedures/{pid}/images",
                files={"files": (filename, b"not an image", "image/jpeg")},
                headers=keys["ingest"],
            )
            assert bad.status_code == 415
            c.post("/v1/search", files={"file": (filename, PHOTO)}, headers=keys["search"])
            c.get("/v1/models", headers={"Authorization": "Bearer esk_leak_SECRETSECRET"})
            c.get("/v1/models", headers=keys["revoked"] if "revoked" in keys else keys["label"])
    finally:
        stop_server(server)
    text = log.read_text(errors="replace")
    assert "DEBUG" in text or "INFO" in text, "the server logged nothing at DEBUG level"
    for header in keys.values():
        token = header["Authorization"].split()[1]
        assert token not in text and token.split("_", 2)[2] not in text
    for secret in ("SECRETSECRET", external, "SMITH", filename, "19570412"):
        assert secret not in text, (secret, [ln for ln in text.splitlines() if secret in ln][:3])
