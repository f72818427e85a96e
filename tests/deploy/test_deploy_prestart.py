"""scripts/prestart.sh (the container entrypoint) against the real PostgreSQL, then /ready.

The script runs as in the image: `prestart.sh` alone prepares the database, and
`prestart.sh endoseek serve` prepares it and execs the server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.timing import scaled

REPO_ROOT = Path(__file__).resolve().parents[2]
PRESTART = REPO_ROOT / "scripts" / "prestart.sh"
READY_DEADLINE_S = 300.0  # base (x ENDOSEEK_TEST_TIME_FACTOR): migrate, model load, index build


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path, database_url: str, port: int | None = None) -> dict[str, str]:
    """The environment the image sets, pointed at tmp_path; the caller's ENDOSEEK_* left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENDOSEEK_", "PRESTART_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHON"] = sys.executable
    env["ENDOSEEK_DATABASE_URL"] = database_url
    env["ENDOSEEK_STORAGE_DIR"] = str(tmp_path / "storage")
    env["ENDOSEEK_INDEX_DIR"] = str(tmp_path / "index")
    env["ENDOSEEK_HOST"] = "127.0.0.1"
    env["ENDOSEEK_PORT"] = str(port or _free_port())
    return env


def _prestart(
    tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    # cwd=tmp_path: no developer .env in the repository root can leak into the settings.
    return subprocess.run(
        [str(PRESTART), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
        check=False,
    )


def test_prestart_fails_clearly_when_the_database_is_unreachable(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://endoseek:s3cret@127.0.0.1:{_free_port()}/endoseek"
    env = _env(tmp_path, url) | {"PRESTART_DB_TIMEOUT": "1", "PRESTART_DB_INTERVAL": "0.2"}
    result = _prestart(tmp_path, env, "echo", "must-not-run", timeout=120)
    assert result.returncode != 0
    assert "not reachable after" in result.stderr
    assert "ENDOSEEK_DATABASE_URL" in result.stderr
    assert "s3cret" not in result.stderr, "the password must not reach the log"
    assert "must-not-run" not in result.stdout


@pytest.mark.postgres
def test_prestart_migrates_and_creates_one_admin_key(tmp_path: Path, fresh_pg_url: str) -> None:
    env = _env(tmp_path, fresh_pg_url)
    first = _prestart(tmp_path, env)
    assert first.returncode == 0, first.stdout + first.stderr
    second = _prestart(tmp_path, env)
    assert second.returncode == 0, second.stdout + second.stderr

    engine = sa.create_engine(fresh_pg_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
            keys = conn.execute(sa.text("SELECT prefix FROM api_keys")).scalars().all()
    finally:
        engine.dispose()
    assert len(versions) == 1
    assert len(keys) == 1, "ensure-admin must create a key only when none exists"
    # Printed once, on the run that created it; the log of a restart does not repeat it.
    assert keys[0] in first.stdout
    assert keys[0] not in second.stdout


@pytest.mark.postgres
def test_prestart_then_serve_becomes_ready(tmp_path: Path, fresh_pg_url: str) -> None:
    port = _free_port()
    env = _env(tmp_path, fresh_pg_url, port)
    log_path = tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(PRESTART), "endoseek", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + scaled(READY_DEADLINE_S)
        status = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"server exited ({proc.returncode}):\n{log_path.read_text()}"
            )
            try:
                status = httpx.get(f"{base}/ready", timeout=scaled(10)).status_code
            except httpx.TransportError:
                status = None
            if status == 200:
                break
            time.sleep(0.25)  # poll interval, bounded by the deadline above
        assert status == 200, f"/ready answered {status}:\n{log_path.read_text()}"
        assert httpx.get(f"{base}/health", timeout=scaled(30)).status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=scaled(60))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=scaled(30))
    assert "[prestart] starting: endoseek serve" in log_path.read_text()
