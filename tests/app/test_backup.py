"""Backup and restore: the drill (back up during a live upload stream, restore to a new place,
start, find every acknowledged photo) on SQLite and PostgreSQL, and the refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image

from app.db import migrate
from app.main import create_app
from app.services import backup as svc
from app.settings import Settings
from tests.app.conftest import create_keys, jpeg_bytes, make_settings
from tests.app.server import REPO, free_port, server_env, start_server, stop_server, wait_ready
from tests.conftest import _fresh_pg_database
from tests.timing import scaled


def _photo(i: int) -> bytes:
    return jpeg_bytes(Image.new("RGB", (40, 40), (10 + 7 * i % 240, 90, 200 - 3 * i % 200)))


@pytest.fixture
def filled(tmp_path: Path, sqlite_url: str) -> tuple[Settings, list[str]]:
    """A migrated SQLite archive with three photos (one deleted) in two procedures."""
    migrate.upgrade(sqlite_url)
    keys = create_keys(sqlite_url)
    settings = make_settings(tmp_path / "live", sqlite_url)
    with TestClient(create_app(settings, with_ui=False)) as c:
        ids = []
        for n, external in enumerate(("a", "b")):
            pid = c.post(
                "/v1/procedures", json={"source": "s", "external_id": external},
                headers=keys["ingest"],
            ).json()["id"]  # fmt: skip
            r = c.post(
                f"/v1/procedures/{pid}/images",
                files=[("files", (f"{i}.jpg", _photo(n * 2 + i), "image/jpeg")) for i in range(2)],
                headers=keys["ingest"],
            )
            assert r.status_code == 201, r.text
            ids += [item["id"] for item in r.json()["items"]]
        assert c.delete(f"/v1/images/{ids[-1]}", headers=keys["admin"]).status_code == 204
    return settings, ids[:-1]


def _target(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "new", f"sqlite:///{tmp_path / 'new' / 'restored.db'}")


def test_backup_writes_a_verified_manifest_and_restore_copies_it(
    tmp_path: Path, filled: tuple[Settings, list[str]]
) -> None:
    settings, _ = filled
    manifest = svc.backup(settings, tmp_path / "bk")
    assert manifest["counts"]["live_images"] == 3 and manifest["counts"]["files"] == 3
    assert manifest["counts"]["images"] == 4 and manifest["counts"]["procedures"] == 2
    assert manifest["database"]["revision"] and manifest["database"]["dialect"] == "sqlite"
    assert [m["active"] for m in manifest["models"]] == [True]
    on_disk = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    assert on_disk == manifest
    live = {p.stem for p in settings.storage_dir.glob("??/??/*")}
    assert {f["sha256"] for f in manifest["files"]} == live  # the deleted photo's file is gone

    target = _target(tmp_path)
    svc.restore(target, tmp_path / "bk")
    restored = {p.stem: p.read_bytes() for p in target.storage_dir.glob("??/??/*")}
    assert restored == {p.stem: p.read_bytes() for p in settings.storage_dir.glob("??/??/*")}
    engine = sa.create_engine(target.database_url)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM images")) == 4
        assert conn.scalar(sa.text("SELECT count(*) FROM embeddings")) == 3
    engine.dispose()


def test_a_tampered_file_is_refused_before_anything_is_written(
    tmp_path: Path, filled: tuple[Settings, list[str]]
) -> None:
    settings, _ = filled
    manifest = svc.backup(settings, tmp_path / "bk")
    victim = tmp_path / "bk" / "storage" / manifest["files"][1]["key"]
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    with pytest.raises(svc.BackupError, match="hash mismatch") as err:
        svc.verify(tmp_path / "bk")
    assert manifest["files"][1]["key"] in str(err.value)
    target = _target(tmp_path)
    with pytest.raises(svc.BackupError, match="damaged.*hash mismatch"):
        svc.restore(target, tmp_path / "bk")
    assert not Path(target.database_url.removeprefix("sqlite:///")).exists()
    assert not list(target.storage_dir.glob("??/??/*"))


def test_refusals_say_what_to_do(tmp_path: Path, filled: tuple[Settings, list[str]]) -> None:
    settings, _ = filled
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(svc.BackupError, match="not empty: back up into a new or empty"):
        svc.backup(settings, tmp_path / "full")
    with pytest.raises(svc.BackupError, match="no manifest.json in .*did not finish"):
        svc.restore(_target(tmp_path), tmp_path / "full")
    svc.backup(settings, tmp_path / "bk")
    # the live place is not empty: restoring over it needs --force
    with pytest.raises(svc.BackupError, match="empty target.*--force"):
        svc.restore(settings, tmp_path / "bk")
    svc.restore(settings, tmp_path / "bk", force=True)
    # a SQLite backup does not go into PostgreSQL
    pg_target = make_settings(tmp_path / "pg", "postgresql+psycopg://u@127.0.0.1:1/x")
    with pytest.raises(svc.BackupError, match="backup is of a sqlite database"):
        svc.restore(pg_target, tmp_path / "bk")
    # a manifest naming a path outside the storage layout is refused
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    manifest["files"][0]["key"] = "../../etc/passwd"
    (tmp_path / "bk" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(svc.BackupError, match="invalid file"):
        svc.verify(tmp_path / "bk")


def test_a_photo_deleted_while_files_are_copied_is_deleted_on_restore(
    tmp_path: Path, filled: tuple[Settings, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, ids = filled
    snapshot = svc._snapshot_sqlite
    engine = sa.create_engine(settings.database_url)
    victim = ids[0].replace("-", "")

    def snapshot_then_delete(url: str, out: Path) -> dict:
        facts = snapshot(url, out)  # the snapshot still has the photo; the live service then
        with engine.begin() as conn:  # deletes it (row soft-deleted, file removed)
            key = conn.scalar(
                sa.text("SELECT storage_key FROM images WHERE uid = :u"), {"u": victim}
            )
            conn.execute(
                sa.text("UPDATE images SET deleted_at = '2026-12-01 00:00:00' WHERE uid = :u"),
                {"u": victim},
            )
        (settings.storage_dir / key).unlink()
        return facts

    monkeypatch.setattr(svc, "_snapshot_sqlite", snapshot_then_delete)
    manifest = svc.backup(settings, tmp_path / "bk")
    assert len(manifest["deleted_during_backup"]) == 1 and manifest["counts"]["files"] == 2
    target = _target(tmp_path)
    svc.restore(target, tmp_path / "bk")
    restored = sa.create_engine(target.database_url)
    with restored.connect() as conn:
        row = conn.execute(
            sa.text("SELECT id, deleted_at FROM images WHERE uid = :u"), {"u": victim}
        ).one()
        assert row.deleted_at is not None
        q = "SELECT count(*) FROM embeddings WHERE image_id = :i"
        assert conn.scalar(sa.text(q), {"i": row.id}) == 0
        live = "SELECT count(*) FROM images WHERE deleted_at IS NULL"
        assert conn.scalar(sa.text(live)) == 2
    restored.dispose()
    # a file missing while its image is still live is an error, not a silent gap
    with engine.begin() as conn:
        key = conn.scalar(sa.text("SELECT storage_key FROM images WHERE deleted_at IS NULL"))
    engine.dispose()
    (settings.storage_dir / key).unlink()
    monkeypatch.setattr(svc, "_snapshot_sqlite", snapshot)
    with pytest.raises(svc.BackupError, match="missing but a live image uses it"):
        svc.backup(settings, tmp_path / "bk2")


def test_cli_verbs_report_errors_without_a_traceback(tmp_path: Path) -> None:
    env = {"ENDOSEEK_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "restore", str(tmp_path)],
        cwd=REPO,
        env=server_env(tmp_path, env["ENDOSEEK_DATABASE_URL"], 1),
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    assert done.returncode == 1
    assert "restore failed" in done.stderr and "no manifest.json" in done.stderr
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------------- the drill


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(source, empty target) database URLs of one dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst' / 'dst.db'}"
        return
    with _fresh_pg_database() as src, _fresh_pg_database() as dst:
        yield src, dst


def _cli(verb: str, directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", verb, str(directory)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(300),
    )


@pytest.mark.slow
def test_drill_backup_during_uploads_restore_elsewhere_and_find_every_photo(
    tmp_path: Path, urls: tuple[str, str]
) -> None:
    src_url, dst_url = urls
    migrate.upgrade(src_url)
    keys = create_keys(src_url)  # the keys travel with the database
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(tmp_path / "live", src_url, port)
    log = tmp_path / "server.log"
    server = start_server(env, log)
    acked: dict[str, tuple[float, bytes]] = {}  # image id -> (acknowledged at, bytes)
    stop = threading.Event()
    try:
        wait_ready(base, server)
        pid = httpx.post(
            f"{base}/v1/procedures",
            json={"source": "drill", "external_id": "1"},
            headers=keys["ingest"],
            timeout=scaled(30),
        ).json()["id"]

        def stream() -> None:
            with httpx.Client(base_url=base, headers=keys["ingest"], timeout=scaled(60)) as c:
                for i in range(10_000):
                    if stop.is_set():
                        return
                    data = _photo(i)
                    r = c.post(
                        f"/v1/procedures/{pid}/images",
                        files={"files": (f"{i}.jpg", data, "image/jpeg")},
                    )
                    if r.status_code == 201:
                        acked[r.json()["items"][0]["id"]] = (time.monotonic(), data)

        uploader = threading.Thread(target=stream)
        uploader.start()
        deadline = time.monotonic() + scaled(120)
        while len(acked) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)  # poll, bounded by the deadline
        began = time.monotonic()
        done = _cli("backup", tmp_path / "bk", env)
        ended = time.monotonic()
        after = len(acked)
        while len(acked) < after + 2 and time.monotonic() < deadline + scaled(60):
            time.sleep(0.05)  # a few more uploads after the backup: they are not in it
        stop.set()
        uploader.join(timeout=scaled(120))
        assert done.returncode == 0, done.stdout + done.stderr + log.read_text()[-2000:]
    finally:
        stop.set()
        stop_server(server)
    before = {uid: data for uid, (t, data) in acked.items() if t < began}
    during = [uid for uid, (t, _) in acked.items() if began <= t <= ended]
    later = {uid for uid, (t, _) in acked.items() if t > ended}
    assert len(before) >= 8 and later, (len(before), len(during), len(later))
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    assert manifest["counts"]["live_images"] >= len(before)

    # restore into a new database and new directories, start there
    dst_port = free_port()
    dst_env = server_env(tmp_path / "restored", dst_url, dst_port)
    done = _cli("restore", tmp_path / "bk", dst_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rebuilds the search index" in done.stdout
    assert not any((tmp_path / "restored" / "index").iterdir())  # no index copied
    engine = sa.create_engine(dst_url)
    with engine.connect() as conn:
        q = "SELECT storage_key FROM images WHERE deleted_at IS NULL"
        keys_in_db = set(conn.scalars(sa.text(q)))
    engine.dispose()
    restored_files = tmp_path / "restored" / "storage"
    assert len(keys_in_db) == manifest["counts"]["live_images"]
    assert all((restored_files / key).is_file() for key in keys_in_db)  # every image has its file
    base = f"http://127.0.0.1:{dst_port}"
    server = start_server(dst_env, log)
    try:
        wait_ready(base, server)
        with httpx.Client(base_url=base, headers=keys["search"], timeout=scaled(60)) as c:
            # the index was rebuilt from the restored database: one vector per live image
            assert c.get("/ready").json()["vectors"] == manifest["counts"]["live_images"]
            for uid, data in before.items():
                assert c.get(f"/v1/images/{uid}/file").content == data, uid
                r = c.post("/v1/search", json={"image_id": uid, "k": 100})
                assert r.status_code == 200, r.text
                found = {hit["image"]["id"] for hit in r.json()["results"]} | {uid}
                # the rebuilt index holds every photo acknowledged before the backup began
                assert set(before) <= found, (uid, set(before) - found)
            for uid in later:  # uploaded after the backup finished: not in it
                assert c.get(f"/v1/images/{uid}").status_code == 404
    finally:
        stop_server(server)


@pytest.mark.postgres
def test_postgres_backup_restore_and_force(tmp_path: Path) -> None:
    with _fresh_pg_database() as src, _fresh_pg_database() as dst:
        migrate.upgrade(src)
        keys = create_keys(src)
        source = make_settings(tmp_path / "src", src)
        manifest = svc.backup(source, tmp_path / "bk")
        assert manifest["database"]["file"] == "database.pgdump"
        assert manifest["counts"]["api_keys"] == len(keys)
        target = make_settings(tmp_path / "dst", dst)
        svc.restore(target, tmp_path / "bk")
        with pytest.raises(svc.BackupError, match="the database has tables"):
            svc.restore(target, tmp_path / "bk")
        engine = sa.create_engine(dst)
        with engine.begin() as conn:  # a change the forced restore must undo
            conn.execute(sa.text("DELETE FROM api_keys"))
        svc.restore(target, tmp_path / "bk", force=True)
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM api_keys")) == len(keys)
            rev = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        engine.dispose()
        assert rev == manifest["database"]["revision"]
