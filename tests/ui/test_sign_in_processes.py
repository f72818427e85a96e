"""UI sessions live in the database: two real server processes (uvicorn, `endoseek serve`)
on one database accept each other's sessions, a restart keeps them, sign-out everywhere
reaches both; and their DEBUG logs hold no password, key or session id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.db import migrate
from app.ui.security import COOKIE
from tests.app.accounts.flows import make_user, page_csrf, sign_in, signed_in
from tests.app.conftest import create_keys
from tests.app.server import free_port, server_env, start_server, stop_server, wait_ready
from tests.ldap_server import PEOPLE, Slapd, start_slapd
from tests.timing import scaled

LOCAL_PW = "vera-two-process-pw-1"
TYPO_PW = "vera-typo-password-9"
PW_AS_NAME = "vera-pw-in-the-name-field-7"


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    server = start_slapd(tmp_path / "slapd", PEOPLE)
    yield server
    server.stop()


def _ldap_env(slapd: Slapd) -> dict[str, str]:
    env = {}
    for name, value in slapd.settings().items():
        text = json.dumps(value) if isinstance(value, dict) else str(value)
        env[f"ENDOSEEK_{name.upper()}"] = "true" if value is True else text
    return env


class Node:
    """One `endoseek serve` process on its own port and index, sharing the database."""

    def __init__(self, root: Path, url: str, extra: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        root.mkdir(parents=True, exist_ok=True)
        self.env = server_env(root, url, self.port, ENDOSEEK_LOG_LEVEL="DEBUG", **extra)
        self.proc = None

    def start(self) -> Node:
        self.proc = start_server(self.env, self.log)
        wait_ready(self.base, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_server(self.proc)

    def browser(self, sid: str | None = None) -> httpx.Client:
        cookies = {COOKIE: sid} if sid else None
        return httpx.Client(base_url=self.base, cookies=cookies, timeout=scaled(60))


@pytest.mark.slow
def test_two_processes_share_sessions_survive_a_restart_and_log_no_secret(
    tmp_path: Path, slapd: Slapd
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    migrate.upgrade(url)
    make_user(url, "vera", "viewer", LOCAL_PW)
    key = create_keys(url)["search"]["Authorization"].split()[1]
    extra = _ldap_env(slapd)
    a = Node(tmp_path / "a", url, extra)
    b = Node(tmp_path / "b", url, extra)
    sids: list[str] = []
    try:
        a.start()
        b.start()
        with a.browser() as first:  # a wrong password first, then the right one
            assert sign_in(first, username="vera", password=TYPO_PW).status_code == 401
            # a password typed into the user name field must not reach a log either
            assert sign_in(first, username=PW_AS_NAME, password="x").status_code == 401
            assert sign_in(first, username="vera", password=LOCAL_PW).status_code == 303
            sids.append(first.cookies[COOKIE])
        with b.browser(sids[0]) as other:
            assert signed_in(other), "a session made on A is refused by B"
        alice = next(p for p in PEOPLE if p.uid == "alice")
        with b.browser() as directory_user:
            assert (
                sign_in(directory_user, username="alice", password=alice.password).status_code
                == 303
            )
            sids.append(directory_user.cookies[COOKIE])
        with a.browser() as machine:
            assert sign_in(machine, api_key=key).status_code == 303
            sids.append(machine.cookies[COOKIE])

        a.stop()
        a.start()  # a restart keeps every session
        for sid in sids:
            with a.browser(sid) as again:
                assert signed_in(again)

        with b.browser(sids[0]) as vera_b:  # sign-out everywhere on B ends vera's A session
            token = page_csrf(vera_b, "/ui/account")
            vera_b.post("/ui/sign-out-everywhere", data={"csrf_token": token})
        with a.browser(sids[0]) as vera_a:
            assert not signed_in(vera_a)
        with a.browser(sids[1]) as alice_a:
            assert signed_in(alice_a)  # others stay signed in
    finally:
        a.stop()
        b.stop()
    logs = a.log.read_bytes() + b.log.read_bytes()
    assert b"/ui/sign-in" in logs  # the DEBUG access log was written
    typed = [LOCAL_PW, TYPO_PW, PW_AS_NAME, alice.password, slapd.reader_password]
    secrets = [*typed, key, key.split("_")[2], *sids]
    leaked = [s[:6] + "..." for s in secrets if s.encode() in logs]
    assert not leaked, f"secrets in the server log: {leaked}"
