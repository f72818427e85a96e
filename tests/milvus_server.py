"""A real Milvus server on loopback for tests: Milvus 2.3.5 standalone from the `milvus` wheel.

The wheel ("embedded Milvus") carries the standalone server binary (C++ engine: knowhere,
segcore, rocksdb; embedded etcd, local storage) and a stdlib-only launcher, so it needs no
Docker and no venv of its own: it is pip-installed with ``--no-deps`` into
var/test-tools/milvus-2.3.5 and launched by this interpreter with that folder on PYTHONPATH.
The main venv's pymilvus talks to it over gRPC (pymilvus 3 against server 2.3.5 is covered by
tests/indexer/contract).

Use the session fixture ``milvus_server_uri`` (import it into a conftest). It yields
``http://127.0.0.1:<port>``; with ENDOSEEK_TEST_MILVUS_URI set it yields that server instead
of starting one. When no server can be had, it fails under CI=true and skips locally.

By hand: ``.venv/bin/python -m tests.milvus_server install`` (or ``run [PORT]``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.timing import scaled

VERSION = "2.3.5"
ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "var" / "test-tools" / f"milvus-{VERSION}"
# The launcher's own main() would let the server's embedded etcd take its defaults, ports
# 2379/2380, whatever port it was told: a second server on the machine (another test session)
# then dies at start. So every port is pinned to a free one, including etcd's peer port through
# an embedded-etcd config file, and the launcher stays alive as long as the server runs.
_LAUNCH = r"""
import socket, sys, milvus

def free():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

data, port = sys.argv[1], int(sys.argv[2])
server = milvus.MilvusServer(wait_for_started=False)
cfg = server.config
etcd = free()
ports = {k: free() for k in cfg.configurable_items if k.endswith("_port")}
cfg.update(**{**ports, "proxy_port": port, "etcd_port": etcd})
conf = f"{data}/embed-etcd.yaml"
cfg.template_text = cfg.template_text.replace(
    "etcd:\n", f"etcd:\n  config:\n    path: {conf}\n", 1
)
peer = free()
with open(conf, "w") as fh:
    fh.write(
        f"listen-client-urls: http://127.0.0.1:{etcd}\n"
        f"advertise-client-urls: http://127.0.0.1:{etcd}\n"
        f"listen-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-cluster: default=http://127.0.0.1:{peer}\n"
    )
server.webservice_port = free()
server.set_base_dir(data)
server.start()
sys.exit(server.server_proc.wait())
"""


def install() -> Path:
    """The launcher's folder, pip-installing the wheel there first if needed (offline-capable:
    pip uses this machine's configured indexes)."""
    if (TOOLS / "milvus" / "__init__.py").is_file():
        return TOOLS
    tmp = TOOLS.with_name(TOOLS.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp)]
    subprocess.run([*cmd, f"milvus=={VERSION}"], check=True, timeout=scaled(600))
    tmp.rename(TOOLS)  # only a complete install gets the real name
    return TOOLS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MilvusServer:
    """One standalone server process group with its own data folder."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        self.uri = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data / "launcher.log"

    def start(self, timeout_s: float = 180.0) -> None:
        """Start it and wait until it answers over gRPC; RuntimeError with the log otherwise."""
        tools = install()
        env = {**os.environ, "PYTHONPATH": str(tools)}
        (self.data / "milvus").mkdir(parents=True, exist_ok=True)
        args = [str(self.data / "milvus"), str(self.port)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCH, *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends launcher + server
            )
        deadline = time.monotonic() + scaled(timeout_s)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Milvus exited ({self.proc.returncode}): {self._tail()}")
            if self._answers():
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Milvus did not answer within {timeout_s:.0f}s: {self._tail()}")

    def _answers(self) -> bool:
        from pymilvus import MilvusClient

        try:
            client = MilvusClient(uri=self.uri, timeout=2)
        except Exception:
            return False
        try:
            client.list_collections()
            return True
        except Exception:
            return False
        finally:
            client.close()

    def _tail(self) -> str:
        logs = [self.log, self.data / "milvus" / "logs" / "milvus-stderr.log"]
        return " | ".join(p.read_text(errors="replace")[-1500:] for p in logs if p.exists())

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL what is left after a short grace (its shutdown lingers)."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig, grace in ((signal.SIGTERM, scaled(3)), (signal.SIGKILL, scaled(10))):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + grace
            while time.monotonic() < end and _group_alive(pgid):
                self.proc.poll()  # reap the launcher, or it stays in the group as a zombie
                time.sleep(0.2)
            if not _group_alive(pgid):
                break
        self.proc.wait(timeout=scaled(10))
        self.proc = None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"a Milvus server is required in CI: {reason}")
    pytest.skip(reason=f"no Milvus server: {reason}")


@pytest.fixture(scope="session")
def milvus_server_uri() -> Iterator[str]:
    """A running Milvus server's URI (started here on loopback, stopped at session end)."""
    external = os.environ.get("ENDOSEEK_TEST_MILVUS_URI", "")
    if external:
        yield external
        return
    root = Path(tempfile.mkdtemp(prefix="endoseek-milvus-"))
    server = MilvusServer(root, free_port())
    try:
        server.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(str(exc)[-2000:])
    try:
        yield server.uri
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    """`install`, or `run [PORT]`: start a server in the foreground until Ctrl+C."""
    if len(sys.argv) < 2 or sys.argv[1] not in {"install", "run"}:
        sys.exit("usage: python -m tests.milvus_server install | run [PORT]")
    print(install())
    if sys.argv[1] == "run":
        port = int(sys.argv[2]) if len(sys.argv) > 2 else 19530
        server = MilvusServer(Path(tempfile.mkdtemp(prefix="endoseek-milvus-")), port)
        server.start()
        print(f"Milvus {VERSION} at {server.uri} (data {server.data}); Ctrl+C stops it")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()


if __name__ == "__main__":
    main()
