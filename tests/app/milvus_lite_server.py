"""A Milvus Lite gRPC server on a free loopback port, shared by the service tests that need
several processes on one vector store (two workers, a CLI re-index beside a server).

A Milvus Lite *file* is opened by one process only; `milvus-lite server` serves the same
engine over gRPC, so every process reaches it by URL exactly as it would a Milvus server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.app.server import free_port
from tests.timing import scaled


def _milvus_lite_cli() -> list[str] | None:
    exe = Path(sys.executable).with_name("milvus-lite")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("milvus-lite")
    return [found] if found else None


@contextmanager
def milvus_lite_server(data_dir: Path, log: Path) -> Iterator[str]:
    """Start the server on 127.0.0.1; yield its URI; stop it (SIGTERM, then SIGKILL)."""
    cli = _milvus_lite_cli()
    if cli is None:
        message = "milvus-lite is not installed (pip install milvus-lite)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(reason=message)
    port = free_port()
    cmd = [*cli, "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + scaled(60)
        while True:
            assert proc.poll() is None, f"milvus-lite server exited: {log.read_text()[-2000:]}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("milvus-lite server did not listen in time") from None
                time.sleep(0.1)  # poll interval, bounded by the deadline
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=scaled(30))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=scaled(30))
