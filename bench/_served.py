"""`endoseek serve` in a subprocess for the benchmarks: a fresh SQLite database under a work
folder, an API key, GET /ready 200 before the first figure, SIGTERM at the end.

Unlike tests/app/server.py it leaves the thread settings (OMP_NUM_THREADS) and the time limits
as they are: the benchmarks time the server the way it runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx
import sqlalchemy as sa

from app.db import migrate
from app.db.session import create_db_engine
from app.services import keys as key_svc

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "app.cli.main"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_key(url: str, scopes: list[str]) -> str:
    """A new API key ("bench") with `scopes` in the database at `url`."""
    engine = create_db_engine(url)
    with sa.orm.Session(engine) as s:
        _, key = key_svc.create_key(s, "bench", scopes)
        s.commit()
    engine.dispose()
    return key


def service_env(work: Path, bundle: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment of an `endoseek` process with its database, storage, index and DICOM spool
    under `work` (CPU index, warnings only); `bundle` None: the shipped baseline."""
    env = os.environ | {
        "ENDOSEEK_DATABASE_URL": f"sqlite:///{work / 'service.db'}",
        "ENDOSEEK_STORAGE_DIR": str(work / "storage"),
        "ENDOSEEK_INDEX_DIR": str(work / "index"),
        "ENDOSEEK_DICOM_SPOOL_DIR": str(work / "spool"),
        "ENDOSEEK_INDEX_DEVICE": "cpu",
        "ENDOSEEK_LOG_LEVEL": "WARNING",
    }
    if bundle is None:
        env.pop("ENDOSEEK_BUNDLE", None)
    else:
        env["ENDOSEEK_BUNDLE"] = str(bundle)
    return env | extra


def stop(proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """SIGTERM (a server writes its index snapshot), SIGKILL if it is not gone in `timeout_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Served:
    """`endoseek serve` on a fresh SQLite database under `work` (service_env, plus `env`), with
    one API key of `scopes` in `headers`; answering GET /ready with 200 once constructed.

    `log`: where its stdout and stderr go (default: this process's). Use as a context manager,
    or call stop().
    """

    def __init__(
        self,
        work: Path,
        scopes: list[str],
        *,
        bundle: Path | None = None,
        ready_s: float = 180.0,
        client_timeout_s: float = 300.0,
        stop_s: float = 120.0,
        log: IO[bytes] | None = None,
        **env: str,
    ) -> None:
        port = free_port()
        self.env = service_env(work, bundle, ENDOSEEK_PORT=str(port), **env)
        self.url = self.env["ENDOSEEK_DATABASE_URL"]
        migrate.upgrade(self.url)
        self.headers = {"Authorization": f"Bearer {api_key(self.url, scopes)}"}
        self.base = f"http://127.0.0.1:{port}"
        self.client_timeout_s, self.stop_s = client_timeout_s, stop_s
        self.proc = subprocess.Popen(
            [*CLI, "serve"], cwd=REPO, env=self.env, stdout=log, stderr=log
        )
        try:
            self._wait_ready(ready_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"endoseek serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"endoseek serve not ready within {limit_s:.0f} s")

    def client(self) -> httpx.Client:
        """An HTTP client on the server, with the API key."""
        return httpx.Client(base_url=self.base, headers=self.headers, timeout=self.client_timeout_s)

    def stop(self) -> None:
        stop(self.proc, self.stop_s)

    def __enter__(self) -> Served:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
