"""Fixtures for the UI tests: a seeded SYNTHETIC archive, a real server, headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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
    return seed_archive(tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """The demo seeded once per test process (about a minute on 2 cores); module archives
    are copies of it. Nothing may write to it."""
    mp = pytest.MonkeyPatch()
    try:
        return seed_archive(tmp_path_factory.mktemp("ui-demo-template"), mp)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def module_archive(
    demo_template: Archive, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Archive]:
    """`archive` for the tests of one module: a copy of the seeded demo (same QA key), its
    own DB, photos, index and calibration."""
    root = tmp_path_factory.mktemp("ui-archive")
    shutil.copytree(demo_template.root, root, dirs_exist_ok=True)
    old = str(demo_template.root)
    env = {name: value.replace(old, str(root)) for name, value in demo_template.env.items()}
    mp = pytest.MonkeyPatch()
    for name, value in env.items():
        mp.setenv(name, value)
    mp.chdir(root)
    try:
        yield Archive(env, env["ENDOSEEK_DATABASE_URL"], demo_template.key, root)
    finally:
        mp.undo()


def seed_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Archive:
    """Migrate a SQLite archive under `tmp_path` and seed the demo into it; `monkeypatch`
    points this process's settings (and working directory) at it."""
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
    with run_server(archive) as srv:
        yield srv


@pytest.fixture(scope="module")
def module_server(module_archive: Archive) -> Iterator[Server]:
    """`server` on `module_archive`, shared by the tests of one module."""
    with run_server(module_archive) as srv:
        yield srv


@contextmanager
def run_server(archive: Archive) -> Iterator[Server]:
    """Start the real app on `archive` (serve.py on a free port); stop it on exit."""
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
    try:
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=scaled(60))
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    """Debian's Chromium driven by Playwright (never a downloaded browser).

    Module scope, not session: Playwright's sync API keeps an event loop running in the main
    thread while it is open, so every later test in the same xdist worker that calls
    asyncio.run() would fail ("cannot be called from a running event loop")."""
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
    with open_page(browser, server) as pg:
        yield pg


@contextmanager
def open_page(browser, server: Server, **options):  # type: ignore[no-untyped-def]  # noqa: ANN003, ANN201
    """A fresh browser context (1280 px unless `options` say otherwise) on `server` and its
    page; the page records every URL it requested. Closed on exit."""
    options = {"viewport": {"width": 1280, "height": 900}, **options}
    context = browser.new_context(base_url=server.url, **options)
    context.set_default_timeout(scaled(30) * 1000)
    pg = context.new_page()
    pg.requested_urls = []  # type: ignore[attr-defined]
    pg.on("request", lambda req: pg.requested_urls.append(req.url))  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()


def sign_in_with_key(page, key: str) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
    """Sign in on the sign-in page (already open) with an API key: the key form may sit in
    a closed disclosure under the account form."""
    field = page.get_by_label("API key", exact=True)
    if not field.is_visible():
        page.locator("summary", has_text="API key").click()
    field.fill(key)
    field.press("Enter")


DOCS_IMG = REPO / "docs" / "img"


def screenshot(page, name: str, *, height: int | None = None) -> Path:  # type: ignore[no-untyped-def]  # noqa: ANN001
    """Save `ui-<name>.png` of the whole page (or its top `height` px): into docs/img only on
    request (ENDOSEEK_UPDATE_SCREENSHOTS=1), so a test run never rewrites tracked files."""
    if os.environ.get("ENDOSEEK_UPDATE_SCREENSHOTS") == "1":
        folder = DOCS_IMG
    else:
        folder = Path(tempfile.mkdtemp(prefix="endoseek-ui-shots-"))
    path = folder / f"ui-{name}.png"
    clip = None
    if height is not None:
        width = page.evaluate("() => document.documentElement.scrollWidth")
        full = page.evaluate("() => document.documentElement.scrollHeight")
        clip = {"x": 0, "y": 0, "width": width, "height": min(height, full)}
    page.screenshot(path=str(path), full_page=True, clip=clip)
    return path
