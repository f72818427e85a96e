"""The durable C-STORE queue: one file per received instance, written before Success is sent.

A receiver answers Success only once `put` returned, i.e. once the bytes and the rename are on
disk (file fsync, then directory fsync), so a SIGKILL or power loss after the answer never loses
an instance. Files are named by the SHA-256 of the de-identified Part 10 bytes: the same bytes
again are a no-op. Each file is `MAGIC`, one line of JSON meta (source, identity, received_at;
never a patient attribute: the identity holds UIDs, kind, time and frame count only), a
newline, then the Part 10 bytes. The serving process drains the queue (spool_worker.py); the
receiver may be another process (`endoseek dicom-listen`), so the directory is the interface.

Layout under the spool directory: `<sha256>.spool` (pending), `tmp/` (being written),
`failed/<sha256>.spool` + `failed/<sha256>.reason.json` (refused by ingest; an operator may
move a file back to retry it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MAGIC = b"ENDOSEEK-SPOOL 1\n"
SUFFIX = ".spool"
# temp files older than this are leftovers of a crashed writer (a live writer takes < 1 s)
STALE_TMP_S = 3600.0


@dataclass(frozen=True)
class SpoolEntry:
    """A pending instance: its file and content hash (the queue's key)."""

    path: Path
    sha256: str


@dataclass(frozen=True)
class SpoolItem:
    """A pending instance read back: the meta written with it and its Part 10 bytes."""

    entry: SpoolEntry
    meta: dict[str, Any]
    data: bytes


class SpoolCorrupt(ValueError):
    """A spool file that is not what `put` writes (truncated by hand, foreign file)."""


def _fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable (POSIX: the directory entry is data too)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The queue directory; safe for one writer process and one reader process at a time
    (and any number of writer threads): files appear only by atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.failed = self.root / "failed"
        for d in (self.root, self.tmp, self.failed):
            d.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        return self.root / f"{sha256}{SUFFIX}"

    def put(self, data: bytes, meta: dict[str, Any]) -> tuple[SpoolEntry, bool]:
        """Durably queue `data` (Part 10 bytes) with `meta`; returns (entry, created).

        Returns only after file and directory are fsynced. Same bytes already pending: no
        write, created=False. Out of space (ENOSPC, EDQUOT) or any other I/O failure raises
        OSError and leaves no partial file behind.
        """
        sha = hashlib.sha256(data).hexdigest()
        final = self.path_of(sha)
        entry = SpoolEntry(final, sha)
        if final.exists():
            return entry, False
        head = json.dumps(meta, separators=(",", ":"), ensure_ascii=True).encode()
        tmp = self.tmp / f"{sha}.{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(MAGIC + head + b"\n" + data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, final)  # same bytes raced in from another thread: same content
            _fsync_dir(self.root)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return entry, True

    def pending(self) -> list[SpoolEntry]:
        """Queued instances, oldest first (by the time their file was written)."""
        found: list[tuple[int, str, Path]] = []
        with os.scandir(self.root) as it:
            for e in it:
                if not e.name.endswith(SUFFIX) or not e.is_file(follow_symlinks=False):
                    continue
                try:
                    found.append((e.stat(follow_symlinks=False).st_mtime_ns, e.name, Path(e.path)))
                except FileNotFoundError:  # drained meanwhile
                    continue
        found.sort()
        return [SpoolEntry(p, name.removesuffix(SUFFIX)) for _, name, p in found]

    def read(self, entry: SpoolEntry) -> SpoolItem:
        """The meta and bytes of a pending entry (FileNotFoundError if it is gone)."""
        raw = entry.path.read_bytes()
        if not raw.startswith(MAGIC):
            raise SpoolCorrupt("not a spool file")
        head, sep, data = raw[len(MAGIC) :].partition(b"\n")
        if not sep:
            raise SpoolCorrupt("spool file truncated")
        try:
            meta = json.loads(head)
        except ValueError as exc:
            raise SpoolCorrupt("spool meta unreadable") from exc
        if not isinstance(meta, dict):
            raise SpoolCorrupt("spool meta is not an object")
        return SpoolItem(entry, meta, data)

    def done(self, entry: SpoolEntry) -> None:
        """Drop an ingested entry. Not fsynced: if the unlink is lost in a crash the instance is
        ingested again, which stores nothing new (ingest is idempotent on SOP Instance UID)."""
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()

    def fail(self, entry: SpoolEntry, code: str, message: str) -> Path:
        """Move a refused entry to failed/ with a reason file (code, message, time); returns the
        new path. `message` must carry no patient attribute (DicomRejected messages do not)."""
        target = self.failed / entry.path.name
        reason = {"code": code, "message": message, "failed_at": _now()}
        (self.failed / f"{entry.sha256}.reason.json").write_text(json.dumps(reason) + "\n")
        with contextlib.suppress(FileNotFoundError):
            os.replace(entry.path, target)
        return target

    def failed_entries(self) -> list[SpoolEntry]:
        """Entries in failed/ (for operators and tests)."""
        return [SpoolEntry(p, p.name.removesuffix(SUFFIX)) for p in self.failed.glob(f"*{SUFFIX}")]

    def counts(self) -> dict[str, int]:
        """Instances waiting for ingest and instances refused (for /ready and /metrics)."""
        return {
            "pending": sum(1 for p in self.root.glob(f"*{SUFFIX}")),
            "failed": sum(1 for p in self.failed.glob(f"*{SUFFIX}")),
        }

    def sweep_tmp(self, older_than_s: float = STALE_TMP_S) -> int:
        """Remove temp files a crashed writer left (never a live writer's: those are young)."""
        limit = time.time() - older_than_s
        removed = 0
        for p in self.tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if p.stat().st_mtime < limit:
                    p.unlink()
                    removed += 1
        return removed


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def spool_meta(source: str, identity: dict[str, Any]) -> dict[str, Any]:
    """The meta stored with an instance: who sent it, its identity, when it arrived."""
    return {"source": source, "identity": identity, "received_at": _now()}
