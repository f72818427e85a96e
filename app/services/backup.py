"""Online backup and restore: a consistent database snapshot plus the image files it names.

Order is what makes a backup taken while the service runs consistent: the database is
snapshotted first (SQLite's online backup API, or `pg_dump` inside an exported snapshot), then
exactly the files the snapshot's live images reference are copied (files are written before
their row, so each one exists; one deleted meanwhile is recorded and its image deleted on
restore). Uploads acknowledged before the snapshot are in it; later ones are not needed.

A manifest (sha256 per file, counts, schema revision, model ids) is written last and verified:
a directory without one is an unfinished backup. Restore verifies every hash before it writes
anything. The FAISS index is not backed up: the service rebuilds it from the database's
vectors when it starts without a snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from app.db.models import Base
from app.db.types import utcnow
from app.services.storage import THUMBS, Storage, atomic_write
from app.settings import Settings

MANIFEST = "manifest.json"
FORMAT = 1
FILES_DIR = "storage"
SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"
CALIBRATION_FILE = "calibration.json"
CHUNK = 1 << 20
# what a storage key looks like (storage.storage_key): a manifest cannot name another path
KEY_RE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{2}/([0-9a-f]{64})\.[a-z]{3,4}$")

Advance = Callable[[int], None]
# progress(description, total bytes) -> a context that yields "advance by n bytes"
Progress = Callable[[str, int], AbstractContextManager[Advance]]


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


@contextlib.contextmanager
def no_progress(description: str, total: int) -> Iterator[Advance]:
    """The default: report nothing."""
    yield lambda n: None


@dataclass(frozen=True)
class FileEntry:
    """One image file of the backup: its storage key, hash and size."""

    key: str
    sha256: str
    bytes: int


# --------------------------------------------------------------------------- database access


def dialect_of(url: str) -> str:
    """'sqlite' or 'postgresql' (anything else is refused)."""
    name = sa.engine.make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"backups support SQLite and PostgreSQL databases, not {name!r}")
    return name


def _sqlite_path(url: str) -> Path:
    db = sa.engine.make_url(url).database
    if not db or db == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(db)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI for pg_dump/pg_restore and the environment carrying the password (a
    password in argv would show in the process list)."""
    u = sa.engine.make_url(url)
    env = os.environ.copy()
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    plain = u.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run_pg_tool(args: list[str], env: dict[str, str]) -> None:
    tool = args[0]
    if shutil.which(tool) is None:
        raise BackupError(
            f"{tool} not found: install the PostgreSQL client tools (Debian: postgresql-client) "
            "of the server's major version or newer"
        )
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{tool} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _facts(conn: sa.Connection) -> dict[str, Any]:
    """Revision, models, row counts and the live images' files, all from one snapshot."""
    try:
        revision = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
    except sa.exc.DBAPIError as exc:
        raise BackupError("the database has no schema yet: run `endoseek migrate`") from exc
    tables = sa.inspect(conn).get_table_names()
    counts = {
        t.name: int(conn.scalar(sa.select(sa.func.count()).select_from(sa.table(t.name))) or 0)
        for t in Base.metadata.sorted_tables
        if t.name in tables
    }
    models = [
        {"id": r[0], "name": r[1], "active": bool(r[2])}
        for r in conn.execute(sa.text("SELECT id, name, active FROM models ORDER BY id"))
    ]
    rows = conn.execute(
        sa.text(
            "SELECT storage_key, sha256, MAX(bytes) FROM images WHERE deleted_at IS NULL "
            "GROUP BY storage_key, sha256 ORDER BY storage_key"
        )
    )
    files = [FileEntry(r[0], r[1], int(r[2])) for r in rows]
    live = conn.scalar(sa.text("SELECT count(*) FROM images WHERE deleted_at IS NULL"))
    counts["live_images"] = int(live or 0)
    return {"revision": revision, "models": models, "counts": counts, "files": files}


def _snapshot_sqlite(url: str, out: Path) -> dict[str, Any]:
    """Online backup API: a consistent copy while the service writes; one self-contained file."""
    src_path = _sqlite_path(url)
    if not src_path.exists():
        raise BackupError(f"no SQLite database at {src_path}")
    src = sqlite3.connect(src_path, timeout=30)
    dst = sqlite3.connect(out)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # no -wal/-shm beside the copy
    finally:
        dst.close()
        src.close()
    engine = sa.create_engine(f"sqlite:///{out}")
    try:
        with engine.connect() as conn:
            return _facts(conn)
    finally:
        engine.dispose()


def _snapshot_postgres(url: str, out: Path) -> dict[str, Any]:
    """pg_dump inside an exported snapshot: the dump and the file list see the same rows."""
    uri, env = _libpq(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            snapshot = conn.scalar(sa.text("SELECT pg_export_snapshot()"))
            _run_pg_tool(
                ["pg_dump", "-Fc", f"--snapshot={snapshot}", "-f", str(out), "-d", uri], env
            )
            facts = _facts(conn)
            conn.rollback()
            return facts
    except sa.exc.OperationalError as exc:
        raise BackupError(f"cannot reach the database: {exc.orig}") from exc
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- files and hashes


def _sha256_file(path: Path, advance: Advance) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
            advance(len(chunk))
    return h.hexdigest(), size


def _copy_verified(src: Path, dst: Path, sha256: str, advance: Advance) -> None:
    """Copy `src` to `dst` (temp name, fsync, rename) and check it hashes to `sha256`."""
    data = src.read_bytes()
    advance(len(data))
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise BackupError(f"{src}: hash mismatch (expected {sha256}, found {found})")
    atomic_write(dst, data)


def _still_live(url: str, key: str) -> bool:
    """Whether the live database still has a live image using this file."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            q = sa.text("SELECT count(*) FROM images WHERE storage_key = :k AND deleted_at IS NULL")
            return bool(conn.scalar(q, {"k": key}))
    finally:
        engine.dispose()


def _is_empty_dir(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


# --------------------------------------------------------------------------- backup


def backup(settings: Settings, target: Path, progress: Progress = no_progress) -> dict[str, Any]:
    """Back up the configured database and storage into the new or empty directory `target`;
    returns the manifest (also written to target/manifest.json and verified)."""
    target = Path(target)
    if not _is_empty_dir(target):
        raise BackupError(f"{target} is not empty: back up into a new or empty directory")
    dialect = dialect_of(settings.database_url)
    target.mkdir(parents=True, exist_ok=True)
    db_file = target / (SQLITE_FILE if dialect == "sqlite" else PG_FILE)
    if dialect == "sqlite":
        facts = _snapshot_sqlite(settings.database_url, db_file)
    else:
        facts = _snapshot_postgres(settings.database_url, db_file)

    files: list[FileEntry] = facts["files"]
    vanished: list[str] = []
    with progress("copying image files", sum(f.bytes for f in files)) as advance:
        for entry in files:
            src = settings.storage_dir / entry.key
            if not src.exists():
                if _still_live(settings.database_url, entry.key):
                    raise BackupError(f"{src} is missing but a live image uses it")
                vanished.append(entry.key)  # deleted after the snapshot: deleted on restore
                continue
            _copy_verified(src, target / FILES_DIR / entry.key, entry.sha256, advance)

    gone = set(vanished)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_at": utcnow().isoformat(),
        "database": {
            "dialect": dialect,
            "file": db_file.name,
            "sha256": _sha256_file(db_file, lambda n: None)[0],
            "revision": facts["revision"],
        },
        "models": facts["models"],
        "counts": facts["counts"] | {"files": len(files) - len(vanished)},
        "files": [vars(f) for f in files if f.key not in gone],
        "deleted_during_backup": vanished,
    }
    if settings.calibration_path.exists():
        shutil.copyfile(settings.calibration_path, target / CALIBRATION_FILE)
        manifest["calibration"] = _sha256_file(target / CALIBRATION_FILE, lambda n: None)[0]
    _write_json(target / MANIFEST, manifest)
    return verify(target, progress)


# --------------------------------------------------------------------------- verify


def read_manifest(source: Path) -> dict[str, Any]:
    """The manifest of a backup directory, checked for shape (BackupError if unusable)."""
    path = Path(source) / MANIFEST
    if not path.exists():
        raise BackupError(f"no {MANIFEST} in {source}: not a backup, or one that did not finish")
    try:
        manifest = json.loads(path.read_text())
        if manifest["format"] != FORMAT:
            raise BackupError(f"backup format {manifest['format']} is not supported")
        for f in manifest["files"]:
            m = KEY_RE.match(f["key"])
            if m is None or m.group(1) != f["sha256"]:
                raise BackupError(f"{MANIFEST} names an invalid file {f['key']!r}")
        if manifest["database"]["file"] not in (SQLITE_FILE, PG_FILE):
            raise BackupError(f"{MANIFEST} names an unknown database file")
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{path} is damaged: {exc!r}") from exc
    return manifest


def verify(source: Path, progress: Progress = no_progress) -> dict[str, Any]:
    """Check the database file and every image file against the manifest; returns it."""
    source = Path(source)
    manifest = read_manifest(source)
    wanted = [(source / manifest["database"]["file"], manifest["database"]["sha256"], None)]
    wanted += [(source / FILES_DIR / f["key"], f["sha256"], f["bytes"]) for f in manifest["files"]]
    if "calibration" in manifest:
        wanted.append((source / CALIBRATION_FILE, manifest["calibration"], None))
    total = sum(p.stat().st_size for p, _, _ in wanted if p.exists())
    problems = []
    with progress("verifying backup", total) as advance:
        for path, sha, size in wanted:
            if not path.exists():
                problems.append(f"{path.relative_to(source)}: missing")
                continue
            found, found_size = _sha256_file(path, advance)
            if found != sha or (size is not None and found_size != size):
                problems.append(
                    f"{path.relative_to(source)}: hash mismatch (expected {sha}, found {found})"
                )
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BackupError(f"backup {source} is damaged: " + "; ".join(problems[:5]) + more)
    return manifest


# --------------------------------------------------------------------------- restore


def _db_is_empty(url: str, dialect: str) -> bool:
    if dialect == "sqlite":
        path = _sqlite_path(url)
        if not path.exists() or path.stat().st_size == 0:
            return True
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return not sa.inspect(conn).get_table_names()
    except sa.exc.OperationalError as exc:
        raise BackupError(f"cannot reach the target database: {exc.orig}") from exc
    finally:
        engine.dispose()


def _check_targets(settings: Settings, dialect: str, force: bool) -> None:
    busy = []
    if not _db_is_empty(settings.database_url, dialect):
        busy.append("the database has tables")
    if any(True for _ in Storage(settings.storage_dir).iter_files()):
        busy.append(f"{settings.storage_dir} holds image files")
    if not _is_empty_dir(settings.index_dir):
        busy.append(f"{settings.index_dir} is not empty")
    if busy and not force:
        raise BackupError(
            "restore needs an empty target (" + "; ".join(busy) + "); stop the service and "
            "pass --force to replace what is there"
        )


def _restore_sqlite(url: str, db_file: Path) -> None:
    path = _sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(db_file)
    dst = sqlite3.connect(path, timeout=30)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=WAL")  # as the service runs it
    finally:
        dst.close()
        src.close()


def _restore_postgres(url: str, db_file: Path, force: bool) -> None:
    uri, env = _libpq(url)
    args = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "-d", uri]
    if force:
        args[1:1] = ["--clean", "--if-exists"]
    _run_pg_tool([*args, "--single-transaction", str(db_file)], env)


def _delete_vanished(url: str, keys: list[str]) -> None:
    """Images whose file was deleted while the backup ran are deleted here too, as the
    live service deleted them (their vectors and labels go; the row stays, soft-deleted)."""
    if not keys:
        return
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for key in keys:
                ids = [r[0] for r in conn.execute(
                    sa.text("SELECT id FROM images WHERE storage_key = :k AND deleted_at IS NULL"),
                    {"k": key},
                )]  # fmt: skip
                for image_id in ids:
                    for table in ("embeddings", "labels"):
                        conn.execute(
                            sa.text(f"DELETE FROM {table} WHERE image_id = :i"), {"i": image_id}
                        )
                images = Base.metadata.tables["images"]
                conn.execute(
                    images.update().where(images.c.id.in_(ids)).values(deleted_at=utcnow())
                )
    finally:
        engine.dispose()


def _clear_dir(path: Path) -> None:
    for child in path.iterdir() if path.exists() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def restore(
    settings: Settings, source: Path, force: bool = False, progress: Progress = no_progress
) -> dict[str, Any]:
    """Restore a verified backup into the configured database and storage directory (empty,
    or replaced with `force`); the index directory is emptied so the service rebuilds it."""
    source = Path(source)
    manifest = verify(source, progress)
    dialect = dialect_of(settings.database_url)
    if manifest["database"]["dialect"] != dialect:
        raise BackupError(
            f"this backup is of a {manifest['database']['dialect']} database; the configured "
            f"database is {dialect}"
        )
    _check_targets(settings, dialect, force)
    db_file = source / manifest["database"]["file"]
    if dialect == "sqlite":
        _restore_sqlite(settings.database_url, db_file)
    else:
        _restore_postgres(settings.database_url, db_file, force)
    _delete_vanished(settings.database_url, manifest.get("deleted_during_backup", []))

    storage = Storage(settings.storage_dir, settings.thumbnail_size)
    if force:
        shutil.rmtree(storage.root / THUMBS, ignore_errors=True)
    files = manifest["files"]
    with progress("restoring image files", sum(f["bytes"] for f in files)) as advance:
        for f in files:
            _copy_verified(
                source / FILES_DIR / f["key"], storage.path(f["key"]), f["sha256"], advance
            )
    if "calibration" in manifest and (force or not settings.calibration_path.exists()):
        settings.calibration_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / CALIBRATION_FILE, settings.calibration_path)
    _clear_dir(settings.index_dir)  # derived from the old database: rebuilt at start
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    return manifest
