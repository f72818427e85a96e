"""Fixtures of the service tests: a real app on a tmp SQLite DB, tmp storage, real bundle."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.db import migrate
from app.db.session import create_db_engine, create_session_factory, session_scope
from app.main import create_app
from app.services import keys
from app.settings import Settings
from tests.timing import scaled


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
def client(settings: Settings, vector_backend: str, tmp_path: Path) -> Iterator[TestClient]:
    if vector_backend == "milvus-2w":  # the real `serve --workers 2`, one connection a request
        yield from _served_client(settings, tmp_path)
        return
    app = create_app(settings, with_ui=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


# -- issue 18: these service tests also run with the Milvus backend and with two workers ------
# faiss: as configured; milvus-lite: a Milvus Lite file beside the index; milvus-server: a
# Milvus Lite server on loopback (several processes: a server and a CLI job); milvus-2w: that
# server behind `endoseek serve --workers 2`.
BACKEND_MATRIX = {  # test file, relative to tests/app -> modes
    "test_end_to_end.py": ("faiss", "milvus-lite", "milvus-2w"),
    "test_kill_restart.py": ("faiss", "milvus-lite", "milvus-2w"),
    "jobs/test_reindex.py": ("faiss", "milvus-server"),
    "test_milvus_backend.py": ("faiss", "milvus-lite"),
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    test_file = Path(metafunc.module.__file__).resolve().relative_to(Path(__file__).parent)
    modes = BACKEND_MATRIX.get(test_file.as_posix())
    if modes and "vector_backend" in metafunc.fixturenames:
        metafunc.parametrize("vector_backend", modes, indirect=True)


@pytest.fixture(scope="session")
def milvus_lite_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Milvus Lite server on loopback for the session (tests use their own prefix)."""
    from tests.app.milvus_lite_server import milvus_lite_server

    root = tmp_path_factory.mktemp("milvus-lite-server")
    with milvus_lite_server(root / "data", root / "server.log") as uri:
        yield uri


@pytest.fixture(autouse=True)
def vector_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend mode of this test, set through the environment so that in-process Settings
    and every subprocess (servers, CLI jobs) see it."""
    mode = getattr(request, "param", "faiss")
    if mode == "faiss":
        return mode
    monkeypatch.setenv("ENDOSEEK_VECTOR_BACKEND", "milvus")
    if mode in ("milvus-server", "milvus-2w"):
        monkeypatch.setenv("ENDOSEEK_MILVUS_URI", request.getfixturevalue("milvus_lite_uri"))
        monkeypatch.setenv("ENDOSEEK_MILVUS_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    else:
        monkeypatch.delenv("ENDOSEEK_MILVUS_URI", raising=False)  # default: <index_dir>/milvus.db
    if mode == "milvus-2w":
        monkeypatch.setenv("ENDOSEEK_WORKERS", "2")
    return mode


def _served_client(settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    from tests.app.server import free_port, server_env, start_server, stop_server, wait_ready

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(server_env(tmp_path, settings.database_url, port), tmp_path / "serve.log")
    try:
        wait_ready(base, proc)
        no_reuse = httpx.Limits(max_keepalive_connections=0)  # each request: any worker
        with httpx.Client(base_url=base, timeout=scaled(60), limits=no_reuse) as c:
            yield c
    finally:
        stop_server(proc)


def index_ids(index_dir: Path, model_id: str, dim: int | None = None) -> np.ndarray:
    """The ids the configured backend holds for `model_id` (FAISS: its newest snapshot)."""
    settings = make_settings(index_dir.parent, "sqlite://", index_dir=index_dir)
    if settings.vector_backend == "milvus":
        from app.services.index_service import milvus_generations, milvus_options

        return milvus_generations(**milvus_options(settings)).open(model_id, dim).ids()
    from indexer import load_snapshot

    snap = load_snapshot(index_dir, model_id=model_id, device="cpu")
    assert snap is not None, "no index snapshot"
    return snap[0].ids()


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
