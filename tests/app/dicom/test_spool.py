"""The C-STORE spool (durable, content-addressed) and the worker that drains it into ingest."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.uid import JPEGBaseline8Bit
from sqlalchemy.exc import OperationalError

from app.dicom import spool as spool_mod
from app.dicom.errors import DicomRejected
from app.dicom.identity import Identity
from app.dicom.spool import MAGIC, Spool, SpoolCorrupt, spool_meta
from app.dicom.spool_worker import MAX_ATTEMPTS, Retry, SpoolWorker
from app.services.errors import ProblemError
from app.settings import Settings
from tests.app.dicom import factory
from tests.timing import scaled

IDENTITY = {
    "study_uid": "1.2.3",
    "series_uid": "1.2.3.4",
    "sop_instance_uid": "1.2.3.4.5",
    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.77.1.1",
    "modality": "ES",
    "kind": "colonoscopy",
    "captured_at": "2026-11-30T09:22:33.250000+00:00",
    "frames": 1,
}


def _meta() -> dict[str, Any]:
    return spool_meta("SCU", IDENTITY)


def test_put_writes_meta_and_bytes_and_is_content_addressed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    entry, created = spool.put(b"DICM-bytes", _meta())
    assert created and entry.path.exists()
    raw = entry.path.read_bytes()
    assert raw.startswith(MAGIC) and raw.endswith(b"\nDICM-bytes")
    item = spool.read(entry)
    assert item.data == b"DICM-bytes"
    assert item.meta["source"] == "SCU" and item.meta["identity"] == IDENTITY
    assert "received_at" in item.meta
    assert oct(entry.path.stat().st_mode & 0o777) == "0o600"
    again, created = spool.put(b"DICM-bytes", _meta())
    assert not created and again == entry
    assert spool.pending() == [entry]
    assert list(spool.tmp.iterdir()) == []


def test_put_fsyncs_file_then_renames_then_fsyncs_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "spool")
    calls: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
        calls.append(f"fsync-{kind}")
        real_fsync(fd)

    def rename(src: Any, dst: Any) -> None:
        calls.append("rename")
        real_rename(src, dst)

    monkeypatch.setattr(spool_mod.os, "fsync", fsync)
    monkeypatch.setattr(spool_mod.os, "rename", rename)
    spool.put(b"x" * 10_000, _meta())
    assert calls == ["fsync-file", "rename", "fsync-dir"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_raises_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    spool = Spool(tmp_path / "spool")

    def full(fd: int, data: Any) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(spool_mod.os, "write", full)
    with pytest.raises(OSError) as info:
        spool.put(b"abc", _meta())
    assert info.value.errno == code
    assert spool.pending() == [] and list(spool.tmp.iterdir()) == []


def test_pending_is_oldest_first_and_done_and_fail(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    entries = [spool.put(bytes([i]) * 10, _meta())[0] for i in range(3)]
    now = time.time()
    for age, entry in zip((10, 30, 20), entries, strict=True):  # written out of order
        os.utime(entry.path, (now - age, now - age))
    assert spool.pending() == [entries[1], entries[2], entries[0]]
    spool.done(entries[1])
    spool.done(entries[1])  # twice: no error
    moved = spool.fail(entries[2], "corrupt_pixel_data", "frame 1 does not decode")
    assert moved.parent == spool.failed and moved.exists()
    reason = json.loads((spool.failed / f"{entries[2].sha256}.reason.json").read_text())
    assert reason["code"] == "corrupt_pixel_data" and reason["message"]
    assert spool.pending() == [entries[0]]
    assert [e.sha256 for e in spool.failed_entries()] == [entries[2].sha256]


def test_foreign_or_truncated_files_are_corrupt(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    (spool.root / ("a" * 64 + ".spool")).write_bytes(b"not a spool file")
    (spool.root / ("b" * 64 + ".spool")).write_bytes(MAGIC + b'{"source": "x"')
    (spool.root / ("c" * 64 + ".spool")).write_bytes(MAGIC + b"[1]\nbytes")
    for entry in spool.pending():
        with pytest.raises(SpoolCorrupt):
            spool.read(entry)


def test_sweep_removes_only_stale_temp_files(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    old, young = spool.tmp / "old", spool.tmp / "young"
    old.write_bytes(b"1")
    young.write_bytes(b"2")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert spool.sweep_tmp() == 1
    assert not old.exists() and young.exists()


# --- the worker ----------------------------------------------------------------------------


class FakeIngest:
    """DicomIngest.store stand-in: records calls, or raises what the test asks for."""

    def __init__(self, raises: list[BaseException] | None = None) -> None:
        self.raises = list(raises or [])
        self.calls: list[tuple[Any, str]] = []
        self.called = threading.Event()

    def store(self, instance: Any, source: str) -> None:
        self.calls.append((instance, source))
        self.called.set()
        if self.raises:
            raise self.raises.pop(0)


def _worker(tmp_path: Path, ingest: FakeIngest, poll_s: float = 60.0) -> SpoolWorker:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path / 'unused.db'}",
        dicom_spool_dir=tmp_path / "spool",
        dicom_spool_poll_s=poll_s,
    )
    worker = SpoolWorker(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    worker._ingest = ingest
    return worker


def _spooled(worker: SpoolWorker, seed: int = 0) -> Any:
    ds = factory.vl_endoscopic(factory.synthetic_photo(seed), transfer_syntax=JPEGBaseline8Bit)
    ident = dict(IDENTITY, sop_instance_uid=str(ds.SOPInstanceUID), study_uid=ds.StudyInstanceUID)
    return worker.spool.put(factory.to_bytes(ds), spool_meta("ENDO1", ident))[0], ds


def test_worker_stores_with_the_spooled_identity_then_drops_the_file(tmp_path: Path) -> None:
    ingest = FakeIngest()
    worker = _worker(tmp_path, ingest)
    entry, ds = _spooled(worker)
    assert worker.drain() == 1
    ((instance, source),) = ingest.calls
    assert source == "ENDO1"
    # the identity comes from the spool meta (the receiver's reading of the original header),
    # not from the spooled bytes: the header says "Gastroscopy" (upper_gi), the meta colonoscopy
    assert instance.identity == Identity.from_json(
        dict(IDENTITY, sop_instance_uid=str(ds.SOPInstanceUID), study_uid=ds.StudyInstanceUID)
    )
    assert instance.identity.kind == "colonoscopy"
    assert instance.rows == ds.Rows and instance.transfer_syntax == JPEGBaseline8Bit
    assert not entry.path.exists() and worker.stored == 1


def test_worker_moves_refused_instances_to_failed(tmp_path: Path) -> None:
    ingest = FakeIngest([DicomRejected("corrupt_pixel_data", "frame 1 does not decode")])
    worker = _worker(tmp_path, ingest)
    entry, _ = _spooled(worker)
    worker.drain()
    assert worker.spool.pending() == [] and worker.failed == 1
    reason = json.loads((worker.spool.failed / f"{entry.sha256}.reason.json").read_text())
    assert reason["code"] == "corrupt_pixel_data"


def test_worker_refuses_bytes_that_are_not_an_instance(tmp_path: Path) -> None:
    worker = _worker(tmp_path, FakeIngest())
    entry, _ = worker.spool.put(b"garbage" * 50, _meta())
    worker.drain()
    assert [e.sha256 for e in worker.spool.failed_entries()] == [entry.sha256]


@pytest.mark.parametrize(
    "fault",
    [
        ProblemError(503, "database_unavailable", "down"),
        ProblemError(507, "storage_full", "full"),
        OperationalError("select 1", {}, Exception("gone")),
    ],
    ids=["503", "507", "operational"],
)
def test_worker_keeps_the_file_when_the_service_cannot_store(
    tmp_path: Path, fault: BaseException
) -> None:
    ingest = FakeIngest([fault])
    worker = _worker(tmp_path, ingest)
    first, _ = _spooled(worker, 0)
    time.sleep(0.01)  # distinct mtimes: `first` is the oldest
    second, _ = _spooled(worker, 1)
    with pytest.raises(Retry):
        worker.drain()
    assert worker.spool.pending() == [first, second]  # nothing lost, order kept
    assert worker.drain() == 2  # the service is back
    assert worker.spool.pending() == [] and worker.stored == 2


def test_worker_parks_a_file_after_repeated_unexpected_errors(tmp_path: Path) -> None:
    ingest = FakeIngest([RuntimeError("bug")] * MAX_ATTEMPTS)
    worker = _worker(tmp_path, ingest)
    entry, _ = _spooled(worker)
    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(Retry):
            worker.drain()
        assert worker.spool.pending() == [entry]
    with pytest.raises(Retry):
        worker.drain()
    assert worker.spool.pending() == []
    reason = json.loads((worker.spool.failed / f"{entry.sha256}.reason.json").read_text())
    assert reason == reason | {"code": "ingest_error", "message": "RuntimeError"}


def test_worker_thread_wakes_on_wake_and_on_its_poll(tmp_path: Path) -> None:
    ingest = FakeIngest()
    worker = _worker(tmp_path, ingest, poll_s=60.0)
    worker.start()
    try:
        _spooled(worker, 0)
        worker.wake()
        assert ingest.called.wait(scaled(10))
    finally:
        worker.stop()
    polling = FakeIngest()
    worker = _worker(tmp_path, polling, poll_s=0.05)  # another process wrote the file
    worker.start()
    try:
        _spooled(worker, 1)
        assert polling.called.wait(scaled(10))
    finally:
        worker.stop()
    assert worker.spool.pending() == []


def test_ready_and_metrics_count_pending_and_failed_instances(
    settings: Settings, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.app.conftest import create_keys

    spool = Spool(settings.dicom_spool_dir)
    refused, _ = spool.put(b"not an instance", {"source": "X"})
    spool.fail(refused, "cannot_understand", "test")
    admin = create_keys(settings.database_url)["admin"]
    with TestClient(create_app(settings, with_ui=False)) as client:
        r = client.get("/ready")
        assert r.status_code == 200, r.text
        assert r.json()["dicom_spool"] == {"pending": 0, "failed": 1}
        text = client.get("/metrics", headers=admin).text
    assert 'endoseek_dicom_spool_instances{state="failed"} 1.0' in text
    assert 'endoseek_dicom_spool_instances{state="pending"} 0.0' in text
