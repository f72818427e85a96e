"""Drains the C-STORE spool into the ingest path, in a thread of the serving process.

The receiver (in this process, or `endoseek dicom-listen` in another) has already answered
Success for everything in the spool, so nothing here may lose an instance: a file leaves the
spool only once DicomIngest stored it (or it was stored before), or moves to failed/ when the
instance itself is refused. While the service cannot store (database down, storage full) the
file stays and the worker backs off, doubling the wait up to MAX_BACKOFF_S.

It wakes on `wake()` (the in-process receiver after each new file) and at least every
`dicom_spool_poll_s` (files from another process). Heavy modules (pydicom, the ingest service)
are imported on the first file, so an idle spool costs `serve` nothing at start-up.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import TYPE_CHECKING, Any

from app.dicom.spool import Spool, SpoolCorrupt, SpoolEntry

if TYPE_CHECKING:
    from app.services.runtime import Runtime

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0
MAX_ATTEMPTS = 3  # an unexpected error this often on one file: it goes to failed/
RETRY_STATUSES = {503, 507}  # ProblemError statuses that mean "the service, not the instance"


class Retry(Exception):
    """The service cannot store right now; keep the file and try again later."""


class SpoolWorker:
    """One thread: pending spool files -> DicomIngest.store -> done / failed / retry."""

    def __init__(self, rt: Runtime, spool: Spool | None = None) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.spool = spool or Spool(rt.settings.dicom_spool_dir)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ingest: Any = None
        self._attempts: dict[str, int] = {}
        self.stored = 0  # counters for logs and tests
        self.failed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dicom-spool", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A new file is in the spool (called from the receiver's threads)."""
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the instance in hand, then stop (the rest stays queued for the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            if self._thread.is_alive():
                log.warning("spool worker still busy after %.0f s; left running", timeout_s)

    def _run(self) -> None:
        poll = self.settings.dicom_spool_poll_s
        wait = poll
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.drain()
                wait = poll
            except Retry as exc:
                wait = min(max(wait * 2, poll), MAX_BACKOFF_S)
                log.warning("spool ingest paused for %.1f s: %s", wait, exc)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any bug
                wait = min(max(wait * 2, poll), MAX_BACKOFF_S)
                log.error("spool worker error: %s", type(exc).__name__)
            if wait > poll:
                self._stop.wait(wait)  # backing off: new files must not cut the pause short
            else:
                self._wake.wait(wait)

    def drain(self) -> int:
        """Ingest every pending file, oldest first; returns how many left the queue.
        Raises Retry (files kept) when the service cannot store."""
        handled = 0
        broken = 0
        for entry in self.spool.pending():
            if self._stop.is_set():
                break
            try:
                self.process(entry)
            except Retry:
                raise
            except Exception as exc:  # noqa: BLE001 - a bug must not stall the whole queue
                broken += 1
                self._unexpected(entry, exc)
                continue
            handled += 1
        if broken:
            raise Retry(f"{broken} file(s) hit an unexpected error")
        return handled

    def _unexpected(self, entry: SpoolEntry, exc: Exception) -> None:
        """Retry a file a few times, then park it in failed/ (kept for an operator)."""
        n = self._attempts.get(entry.sha256, 0) + 1
        log.error("spooled instance %s: %s (attempt %d)", entry.sha256[:12], type(exc).__name__, n)
        if n >= MAX_ATTEMPTS:
            self._attempts.pop(entry.sha256, None)
            self._fail(entry, "ingest_error", type(exc).__name__)
        else:
            self._attempts[entry.sha256] = n

    def process(self, entry: SpoolEntry) -> None:
        """One file: stored -> done; the instance refused -> failed/; service down -> Retry."""
        from sqlalchemy.exc import OperationalError

        from app.dicom.errors import DicomRejected
        from app.services.errors import ProblemError

        try:
            item = self.spool.read(entry)
        except FileNotFoundError:
            return  # drained by someone else
        except SpoolCorrupt as exc:
            self._fail(entry, "spool_corrupt", str(exc))
            return
        try:
            instance = self._instance(item.data, item.meta)
            self._ingest_service().store(instance, str(item.meta.get("source") or "dicom"))
        except DicomRejected as exc:
            self._fail(entry, exc.code, exc.message)
            return
        except ProblemError as exc:
            if exc.status in RETRY_STATUSES:
                raise Retry(f"{exc.status} {exc.code}") from None
            self._fail(entry, exc.code, f"{exc.status} {exc.code}")
            return
        except OperationalError as exc:
            raise Retry(f"database unavailable ({type(exc).__name__})") from None
        except OSError as exc:  # storage I/O: disk full or gone
            raise Retry(f"storage error ({type(exc).__name__})") from None
        self.spool.done(entry)
        self._attempts.pop(entry.sha256, None)
        self.stored += 1

    def _fail(self, entry: SpoolEntry, code: str, message: str) -> None:
        self.spool.fail(entry, code, message)
        self.failed += 1
        log.warning("spooled instance %s refused: %s", entry.sha256[:12], code)

    def _instance(self, data: bytes, meta: dict[str, Any]) -> Any:
        """The spooled bytes as a checked Instance, with the identity the receiver read from
        the original header (de-identification removed the descriptions and dates it used)."""
        from app.dicom.errors import DicomRejected
        from app.dicom.header import read_instance
        from app.dicom.identity import Identity

        instance = read_instance(data, self.settings)
        try:
            identity = Identity.from_json(meta["identity"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DicomRejected("spool_corrupt", "spool meta has no identity") from exc
        return dataclasses.replace(instance, identity=identity)

    def _ingest_service(self) -> Any:
        if self._ingest is None:
            from app.dicom.ingest import DicomIngest

            self._ingest = DicomIngest(self.rt)
        return self._ingest
