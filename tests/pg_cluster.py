"""A test-owned PostgreSQL cluster (own initdb, own loopback port) that a test may stop and start.

The shared server at 127.0.0.1:5432 must never be stopped; outage tests use this instead.
PostgreSQL refuses to run as root, so as root the binaries run as the `postgres` user in a
directory that user owns. Use the `pg_cluster` fixture (import it into a test module).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.server import free_port
from tests.timing import scaled

BIN_DIRS = (Path("/usr/local/bin"), Path("/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"


def _binary(name: str) -> Path | None:
    for d in BIN_DIRS:
        if (d / name).exists():
            return d / name
    found = shutil.which(name)
    return Path(found) if found else None


class PgCluster:
    """initdb once; `start()` / `stop()` as often as a test likes, always on the same port."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = port
        self.initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        self._as_user = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str | Path, timeout_s: float = 60) -> None:
        args = [*self._as_user, *map(str, cmd)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=scaled(timeout_s))
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{args} failed:\n{done.stdout}\n{done.stderr}\n{log}")

    def init(self) -> None:
        """A fresh cluster with trust auth for the `postgres` role."""
        self._run(
            self.initdb, "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        """Start on 127.0.0.1:<port> (socket in the cluster's directory); waits until up."""
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
        )
        opts += " -c fsync=off -c max_connections=100"
        self._run(self.pg_ctl, "-D", self.data, "-l", self.log, "-o", opts, "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (`immediate`: like a crash, every connection cut at once)."""
        self._run(self.pg_ctl, "-D", self.data, "-m", mode, "-w", "stop")

    def running(self) -> bool:
        args = [*self._as_user, str(self.pg_ctl), "-D", str(self.data), "status"]
        return subprocess.run(args, capture_output=True, timeout=scaled(30)).returncode == 0


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A started cluster of this test's own; stopped and deleted afterwards."""
    cluster_bins = (_binary("initdb"), _binary("pg_ctl"))
    if None in cluster_bins:
        if os.environ.get("CI") == "true":
            pytest.fail("initdb/pg_ctl (PostgreSQL server binaries) are required in CI")
        pytest.skip(reason="initdb/pg_ctl not installed")
    # not under pytest's tmp_path: its parents are private to root, unreachable for `postgres`
    root = Path(tempfile.mkdtemp(prefix="endoseek-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user=OS_USER, group=OS_USER)
    cluster = PgCluster(root, free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        try:
            if cluster.running():
                cluster.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)
