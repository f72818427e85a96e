"""Shared helpers for tests that run the real server as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.timing import scaled

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(tmp_path: Path, database_url: str, port: int, **extra: str) -> dict[str, str]:
    """Environment for `endoseek serve` on `database_url` with storage and index under tmp_path."""
    env = os.environ | {
        "ENDOSEEK_DATABASE_URL": database_url,
        "ENDOSEEK_STORAGE_DIR": str(tmp_path / "storage"),
        "ENDOSEEK_INDEX_DIR": str(tmp_path / "index"),
        "ENDOSEEK_DICOM_SPOOL_DIR": str(tmp_path / "dicom-spool"),
        "ENDOSEEK_PORT": str(port),
        "ENDOSEEK_INDEX_DEVICE": "cpu",
        "ENDOSEEK_LOG_LEVEL": "WARNING",
        "OMP_NUM_THREADS": "1",
    }
    env.update(extra)
    return env


def start_server(env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `endoseek serve` with `env`, appending stdout and stderr to `log`."""
    cmd = [sys.executable, "-m", "app.cli.main", "serve"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def wait_ready(base: str, proc: subprocess.Popen, deadline_s: float = 180) -> None:
    """Poll GET /ready until it answers 200 (fails if the process exits or the deadline passes).

    `deadline_s` is a base value: it is multiplied by ENDOSEEK_TEST_TIME_FACTOR (tests/timing.py).
    """
    deadline = time.monotonic() + scaled(deadline_s)
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited during start"
        try:
            if httpx.get(f"{base}/ready", timeout=scaled(5)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # poll interval, bounded by the deadline above
    raise AssertionError("server not ready in time")


def stop_server(proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Graceful stop (SIGTERM: the index snapshot is written); SIGKILL if it hangs.

    `timeout_s` is a base value, scaled by ENDOSEEK_TEST_TIME_FACTOR.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=scaled(timeout_s))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=scaled(30))
