"""Disk full on a real filesystem: a small tmpfs volume filled by a filler file.

Uploads get 507 `insufficient_storage` problem+json and leave nothing half-stored (no row,
no file, no temporary file), /ready says which volume is full, an index snapshot that cannot
be written leaves no partial snapshot, and once the filler is deleted the very next upload
succeeds and is found by search - no restart, nothing cached.

Three volumes are exercised: the image storage (the file write fails), the SQLite database
(the commit fails after the file was written: the file must go), and the low-space guard
(ENDOSEEK_MIN_FREE_BYTES: refused before any write).
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.db import migrate
from app.db.models import Image
from app.db.session import create_db_engine, create_session_factory, session_scope
from app.main import create_app
from app.services import faults, keys
from app.services.storage import TMP_PREFIX
from app.services.stored_photo import stored_photo
from indexer.snapshot import PREFIX as SNAPSHOT_PREFIX
from indexer.snapshot import TMP_PREFIX as SNAPSHOT_TMP_PREFIX
from indexer.snapshot import load_snapshot
from tests.app.conftest import make_settings
from tests.timing import scaled

VOLUME_BYTES = 16 * 1024 * 1024
DEADLINE_S = 30
PROBLEM = "application/problem+json"


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for this test (root only), always unmounted afterwards."""
    mnt = tmp_path / "vol"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={VOLUME_BYTES}", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(reason=f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)  # still busy: detach


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(volume: Path, leave: int = 0) -> Path:
    """Fill `volume` with a filler file until `leave` bytes are free (0: until ENOSPC)."""
    filler = volume / "filler.bin"
    chunk = b"\0" * (1 << 20)
    with filler.open("ab", buffering=0) as fh:  # unbuffered: no bytes left to fail at close
        while (room := _free(volume) - leave) > 0:
            try:
                fh.write(chunk[: min(room, len(chunk))])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    assert _free(volume) <= leave
    return filler


def _keys(url: str) -> dict[str, dict[str, str]]:
    """An ingest and a search key (engine disposed: no open file keeps the volume busy)."""
    engine = create_db_engine(url)
    out = {}
    try:
        with session_scope(create_session_factory(engine)) as session:
            for scope in ("ingest", "search"):
                _, key = keys.create_key(session, f"disk-{scope}", [scope])
                out[scope] = {"Authorization": f"Bearer {key}"}
    finally:
        engine.dispose()
    return out


class Service:
    """The in-process app on `settings`, with the few calls these tests make."""

    def __init__(self, client: TestClient, url: str, storage: Path) -> None:
        self.client, self.url, self.storage = client, url, storage
        self.keys = _keys(url)
        r = client.post(
            "/v1/procedures",
            json={"source": "disk", "external_id": "full", "kind": "colonoscopy"},
            headers=self.keys["ingest"],
        )
        assert r.status_code == 201, r.text
        self.pid = r.json()["id"]

    @property
    def runtime(self):  # noqa: ANN201 - the app's Runtime
        return self.client.app.state.runtime

    def upload(self, data: bytes):  # noqa: ANN201 - httpx.Response
        return self.client.post(
            f"/v1/procedures/{self.pid}/images",
            files=[("files", ("photo.jpg", data, "image/jpeg"))],
            headers=self.keys["ingest"],
        )

    def found(self, uid: str, data: bytes) -> bool:
        r = self.client.post(
            "/v1/search",
            files={"file": ("q.jpg", data, "image/jpeg")},
            data={"k": "5"},
            headers=self.keys["search"],
        )
        assert r.status_code == 200, r.text
        return any(h["image"]["id"] == uid and h["score"] > 0.999 for h in r.json()["results"])

    def rows(self) -> set[str]:
        """sha256 of every image row (live or not)."""
        engine = self.runtime.engine
        with engine.connect() as conn:
            return set(conn.scalars(sa.select(Image.sha256)))

    def files(self) -> tuple[set[str], list[Path]]:
        """sha256 of stored originals, and temporary leftovers."""
        shas, tmps = set(), []
        for p in self.storage.rglob("*"):
            if p.is_file() and "thumbs" not in p.relative_to(self.storage).parts:
                (tmps.append(p) if p.name.startswith(TMP_PREFIX) else shas.add(p.stem))
        return shas, tmps


def _start(tmp_path: Path, url: str, storage: Path, index: Path, **kw: object) -> TestClient:
    migrate.upgrade(url)
    settings = make_settings(tmp_path, url, storage_dir=storage, index_dir=index, **kw)
    return TestClient(create_app(settings, with_ui=False), raise_server_exceptions=False)


def _assert_507(r) -> None:  # noqa: ANN001 - httpx.Response
    assert r.status_code == 507, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "insufficient_storage"


def _assert_not_ready(client: TestClient, volume_role: str) -> str:
    r = client.get("/ready")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["checks"]["storage"] is False and body["checks"]["database"] is True
    reason = body["reasons"]["storage"]
    assert volume_role in reason, reason
    return reason


def _kept(data: bytes) -> str:
    """The hash of what the service stores for `data` (its field of view masked)."""
    return stored_photo(data, max_pixels=10**8, fov_mask=True, prepare=lambda _: None).sha256


def _recovers(svc: Service, filler: Path, data: bytes) -> None:
    """Space returns: ready again and the next upload is stored and found (no restart)."""
    filler.unlink()
    assert svc.client.get("/ready").status_code == 200
    r = svc.upload(data)
    assert r.status_code == 201, r.text
    item = r.json()["items"][0]
    assert not item["duplicate"]
    assert svc.found(item["id"], data)
    assert _kept(data) in svc.rows() and _kept(data) in svc.files()[0]


def test_storage_volume_full_gives_507_and_recovers(
    tmp_path: Path, volume: Path, hyperkvasir_paths: list[Path]
) -> None:
    """Storage and index on the full volume, the guard off: the file write itself fails."""
    first, second = (p.read_bytes() for p in hyperkvasir_paths[:2])
    url = f"sqlite:///{tmp_path / 'endoseek.db'}"
    storage, index = volume / "storage", volume / "index"
    with _start(tmp_path, url, storage, index, min_free_bytes=0) as client:
        svc = Service(client, url, storage)
        assert svc.upload(first).status_code == 201
        filler = fill(volume)

        _assert_507(svc.upload(second))
        assert svc.rows() == {_kept(first)}
        assert svc.files() == ({_kept(first)}, [])
        assert "no free space" in _assert_not_ready(client, "storage")

        # the index snapshot cannot be written either: it raises (the periodic thread logs
        # and retries), leaves no partial snapshot, and works once there is space
        with pytest.raises(Exception) as raised:  # noqa: PT011 - FAISS raises RuntimeError
            svc.runtime.index.snapshot()
        assert faults.is_disk_full(raised.value), raised.value
        assert not [p for p in index.iterdir() if p.name.startswith(SNAPSHOT_TMP_PREFIX)]

        _recovers(svc, filler, second)
        assert svc.runtime.index.snapshot() is not None


def test_sqlite_volume_full_gives_507_and_removes_the_written_file(
    tmp_path: Path, volume: Path, hyperkvasir_paths: list[Path]
) -> None:
    """SQLite and index on the full volume, storage elsewhere: the file is written, the commit
    fails with "database or disk is full", and the file is removed again."""
    first, second = (p.read_bytes() for p in hyperkvasir_paths[:2])
    url = f"sqlite:///{volume / 'endoseek.db'}"
    storage = tmp_path / "storage"
    with _start(tmp_path, url, storage, volume / "index", min_free_bytes=0) as client:
        svc = Service(client, url, storage)
        assert svc.upload(first).status_code == 201
        filler = fill(volume)

        _assert_507(svc.upload(second))
        assert svc.rows() == {_kept(first)}
        assert svc.files() == ({_kept(first)}, [])
        _assert_not_ready(client, "database")

        _recovers(svc, filler, second)


def test_low_space_guard_refuses_uploads_before_writing(
    tmp_path: Path, volume: Path, hyperkvasir_paths: list[Path]
) -> None:
    """Everything on the volume, ENDOSEEK_MIN_FREE_BYTES = 2 MiB and 1 MiB left: refused
    early, /ready names the threshold, and nothing on the volume changes."""
    first, second = (p.read_bytes() for p in hyperkvasir_paths[:2])
    url = f"sqlite:///{volume / 'endoseek.db'}"
    storage = volume / "storage"
    guard = 2 * 1024 * 1024
    with _start(tmp_path, url, storage, volume / "index", min_free_bytes=guard) as client:
        svc = Service(client, url, storage)
        assert svc.upload(first).status_code == 201
        filler = fill(volume, leave=guard // 2)
        before = _free(volume)

        r = svc.upload(second)
        _assert_507(r)
        assert "ENDOSEEK_MIN_FREE_BYTES" in r.json()["detail"]
        reason = _assert_not_ready(client, "storage+index+database")
        assert f"ENDOSEEK_MIN_FREE_BYTES={guard}" in reason, reason
        assert svc.rows() == {_kept(first)}
        assert svc.files() == ({_kept(first)}, [])
        assert _free(volume) == before

        _recovers(svc, filler, second)


def _until(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + scaled(DEADLINE_S)
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # poll interval, bounded by the deadline above


def test_index_volume_full_keeps_serving_and_snapshots_when_space_returns(
    tmp_path: Path, volume: Path, hyperkvasir_paths: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Only the index directory is full: the index is derived and lives in memory, so
    uploads and searches go on; the periodic snapshot fails, keeps the change pending and
    writes it once space returns."""
    data = hyperkvasir_paths[0].read_bytes()
    url = f"sqlite:///{tmp_path / 'endoseek.db'}"
    storage, index = tmp_path / "storage", volume / "index"
    kw = {"min_free_bytes": 0, "snapshot_interval_s": 0.1}
    with _start(tmp_path, url, storage, index, **kw) as client:
        svc = Service(client, url, storage)
        filler = fill(volume)
        r = svc.upload(data)
        assert r.status_code == 201, r.text
        uid = r.json()["items"][0]["id"]
        assert svc.found(uid, data)
        _assert_not_ready(client, "index")

        _until(
            "a failed periodic snapshot",
            lambda: any("index snapshot skipped" in rec.getMessage() for rec in caplog.records),
        )
        # nothing partial left behind (the workers' leader lock file is not index data)
        assert [p.name for p in index.iterdir() if p.name != "leader.lock"] == []

        filler.unlink()
        _until("the retried snapshot", lambda: any(index.glob(f"{SNAPSHOT_PREFIX}*")))
        assert client.get("/ready").status_code == 200
        model_id = svc.runtime.index.model_id
    snap = load_snapshot(index, model_id=model_id, device="cpu")
    assert snap is not None and len(snap[0]) == 1
