"""Electing the one worker that runs the service's singletons, with an OS file lock.

With `endoseek serve --workers N` every worker serves requests, but some things must run once
per installation: the DICOM receiver (one port), the spool ingest, resuming interrupted jobs,
video retention. The worker holding an exclusive `flock` on `<index_dir>/leader.lock` runs
them. The kernel drops the lock when its holder dies (even by SIGKILL), so another worker
takes over on its next try: the others retry every `retry_s` seconds. A file lock covers the
workers of one machine, which is what `--workers` starts; docs/deploy.md says how to run
several machines (one of them with the singletons switched on).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class Leadership:
    """Try to take the lock now; if another process has it, keep trying in a thread."""

    def __init__(self, lock_path: Path, retry_s: float = 2.0) -> None:
        self.lock_path = Path(lock_path)
        self.retry_s = retry_s
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free (never blocks); True when this process holds it."""
        if self._fd is not None:
            return True
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for an operator: who runs the singletons
        self._fd = fd
        return True

    def wait_in_background(self, on_elected: Callable[[], None]) -> None:
        """Retry every `retry_s` until elected, then call `on_elected` once (in the thread)."""

        def loop() -> None:
            while not self._stop.wait(self.retry_s):
                if self.try_acquire():
                    log.info("this worker (pid %d) now runs the singletons", os.getpid())
                    try:
                        on_elected()
                    except Exception:  # noqa: BLE001 - keep serving requests without them
                        log.exception("starting the singletons failed")
                    return

        self._thread = threading.Thread(target=loop, name="leader-election", daemon=True)
        self._thread.start()

    def stop_trying(self) -> None:
        """Stop the retry thread (waits for a start it is running to finish)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)

    def release(self) -> None:
        """Give the lock up (another worker takes over); stop the singletons first."""
        self.stop_trying()
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
