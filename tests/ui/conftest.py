"""Fixtures for the UI tests: a seeded SYNTHETIC archive, a real server, headless Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.timing import scaled

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Archive:
    """A migrated DB seeded by `endoseek demo` code, and the env that points a server at it."""

    env: dict[str, str]
    database_url: str
    key: str
    root: Path


@dataclass
class Server:
    """A uvicorn subprocess; `log` collects every line it wrote (stdout and stderr)."""

    url: str
    proc: subprocess.Popen
    log: list[str] = field(default_factory=list)

    def log_text(self) -> str:
        return "\n".join(self.log)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Archive:
    """A fresh SQLite archive with the synthetic demo (as shipped) and a QA key."""
    from app.cli.demo import seed_demo
    from app.db.migrate import upgrade
    from app.settings import Settings

    url = f"sqlite:///{tmp_path / 'endoseek.db'}"
    env = {
        "ENDOSEEK_DATABASE_URL": url,
        "ENDOSEEK_STORAGE_DIR": str(tmp_path / "storage"),
        "ENDOSEEK_INDEX_DIR": str(tmp_path / "index"),
        "ENDOSEEK_CALIBRATION_PATH": str(tmp_path / "calibration.json"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # var/calibration.json of the UI's fallback lands here too
    settings = Settings()
    upgrade(url)
    result = seed_demo(settings)
    assert result.key
    return Archive(env, url, result.key, tmp_path)


@pytest.fixture
def server(archive: Archive) -> Iterator[Server]:
    """The real app with the UI on a free port, started in `archive.root`."""
    port = _free_port()
    env = {**os.environ, **archive.env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "ui" / "serve.py"), str(port)],
        cwd=archive.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    srv = Server(f"http://127.0.0.1:{port}", proc)
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            srv.log.append(line.rstrip("\n"))
            if "Application startup complete" in line:
                ready.set()
        ready.set()  # process ended: stop waiting

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(scaled(180)) or proc.poll() is not None:
        proc.kill()
        pytest.fail("UI server did not start:\n" + srv.log_text())
    yield srv
    proc.terminate()
    try:
        proc.wait(timeout=scaled(60))
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} missing: run scripts/ensure-test-tools.sh (installs chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(reason=message)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=scaled(15) * 1000)  # assertion retries: 5 s by default
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server: Server):  # type: ignore[no-untyped-def]
    """A fresh browser context at 1280 px; records every URL it requested."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    context.set_default_timeout(scaled(30) * 1000)
    pg = context.new_page()
    pg.requested_urls = []  # type: ignore[attr-defined]
    pg.on("request", lambda req: pg.requested_urls.append(req.url))  # type: ignore[attr-defined]
    yield pg
    context.close()
