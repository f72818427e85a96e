"""Fixtures of the service tests: a real app on a tmp SQLite DB, tmp storage, real bundle."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.db import migrate
from app.db.session import create_db_engine, create_session_factory, session_scope
from app.main import create_app
from app.services import keys
from app.settings import Settings


def make_settings(tmp_path: Path, database_url: str, **kw: object) -> Settings:
    """Settings isolated from the environment and .env, everything under tmp_path."""
    base = {
        "database_url": database_url,
        "storage_dir": tmp_path / "storage",
        "index_dir": tmp_path / "index",
        "dicom_spool_dir": tmp_path / "dicom-spool",
        "batch_max_wait_ms": 2.0,
        "snapshot_interval_s": 3600.0,
        "index_device": "cpu",
    }
    base.update(kw)
    return Settings(_env_file=None, **base)  # type: ignore[arg-type]


def create_keys(database_url: str) -> dict[str, dict[str, str]]:
    """One key per scope: name -> Authorization header."""
    factory = create_session_factory(create_db_engine(database_url))
    out = {}
    with session_scope(factory) as session:
        for scope in keys.SCOPES:
            _, key = keys.create_key(session, f"test-{scope}", [scope])
            out[scope] = {"Authorization": f"Bearer {key}"}
    return out


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    migrate.upgrade(sqlite_url)
    return make_settings(tmp_path, sqlite_url)


@pytest.fixture
def headers(settings: Settings) -> dict[str, dict[str, str]]:
    return create_keys(settings.database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, with_ui=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def procedure(client: TestClient, headers: dict) -> str:
    r = client.post(
        "/v1/procedures",
        json={"source": "test", "external_id": "p1", "kind": "colonoscopy"},
        headers=headers["ingest"],
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="session")
def synthetic_images() -> list[Image.Image]:
    """A few generated endoscopy-like images (3 classes x 2)."""
    from training.synthetic import generate_dataset

    return [img for img, _ in generate_dataset(3, 2, 160, 7)]
