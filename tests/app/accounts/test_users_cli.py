"""`endoseek users create|list|disable|enable|reset|role` on a real database, and the
account service rules behind it (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from app.accounts import lockout, users
from app.cli.main import app as cli
from app.db.models import AuditEvent, UiSessionRow, User
from app.settings import get_settings
from app.ui.sessions import SessionStore


@pytest.fixture
def run(db_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ENDOSEEK_DATABASE_URL", db_url)
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), input=stdin)

    yield invoke
    get_settings.cache_clear()


def test_create_list_disable_enable_reset_role(run, factory) -> None:
    r = run("users", "create", "Vera.K", "--role", "viewer", "--name", "Vera K",
            "--password-stdin", stdin="vera-cli-password-1\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "created vera.k (viewer)" in r.output and "vera-cli-password" not in r.output
    listed = run("users", "list")
    assert listed.exit_code == 0 and "vera.k\tviewer\tlocal\tactive\tnever\tVera K" in listed.output
    with factory() as db:
        row = db.scalar(sa.select(User).where(User.username == "vera.k"))
        assert row.password_hash.startswith("$argon2id$")
        uid = row.id
    store = SessionStore(db=factory)
    sid, _ = store.create(None, "Vera", frozenset({"search"}), user_id=uid)

    assert run("users", "disable", "vera.k").exit_code == 0
    assert store.get(sid) is None  # disabling ends the sessions at once
    assert "disabled" in run("users", "list").output
    assert run("users", "enable", "VERA.K").exit_code == 0

    with factory() as db:  # a lockout, then a reset lifts it
        for _ in range(5):
            lockout.fail(db, lockout.account_key("vera.k"), lockout.Rule(5, 900, 900))
        assert lockout.locked_for(db, lockout.account_key("vera.k"))
    sid, _ = store.create(None, "Vera", frozenset({"search"}), user_id=uid)
    r = run("users", "reset", "vera.k", "--password-stdin", stdin="vera-new-password-2\n")
    assert r.exit_code == 0, r.output
    with factory() as db:
        assert lockout.locked_for(db, lockout.account_key("vera.k")) == 0
        assert users.check_local(db, "vera.k", "vera-new-password-2") is not None
        assert users.check_local(db, "vera.k", "vera-cli-password-1") is None
    assert store.get(sid) is None

    assert run("users", "role", "vera.k", "reviewer").exit_code == 0
    with factory() as db:
        events = db.execute(sa.select(AuditEvent.action, AuditEvent.user_id)).all()
        assert db.scalar(sa.select(sa.func.count()).select_from(UiSessionRow)) == 0
    assert {a for a, u in events if u == uid} >= {
        "user.create",
        "user.disable",
        "user.enable",
        "user.reset",
        "user.role",
    }


def test_refusals_are_usage_errors_without_echoing_the_password(run) -> None:
    r = run("users", "create", "x", "--role", "viewer", "--password-stdin", stdin="short1\n")
    assert r.exit_code == 2 and "at least 12" in r.output and "short1" not in r.output
    r = run(
        "users", "create", "y", "--role", "owner", "--password-stdin", stdin="long-enough-pw-1\n"
    )
    assert r.exit_code == 2 and "unknown role" in r.output
    r = run("users", "create", "bad name", "--role", "viewer", "--password-stdin",
            stdin="long-enough-pw-1\n")  # fmt: skip
    assert r.exit_code == 2
    assert run("users", "create", "z", "--role", "viewer", "--password-stdin",
               stdin="long-enough-pw-1\n").exit_code == 0  # fmt: skip
    r = run(
        "users", "create", "Z", "--role", "viewer", "--password-stdin", stdin="long-enough-pw-2\n"
    )
    assert r.exit_code == 2 and "exists" in r.output
    assert run("users", "disable", "nobody").exit_code == 2


def test_directory_users_cannot_get_a_local_password(factory) -> None:
    with factory() as db:
        users.upsert_directory_user(db, "alice", "Alice", "admin")
        db.commit()
        with pytest.raises(users.AccountError):
            users.reset_password(db, "alice", "a-local-password-1")
        with pytest.raises(users.AccountError):
            users.create(db, "alice", "viewer", "a-local-password-1")
        with pytest.raises(users.AccountError):  # the directory's groups decide
            users.set_role(db, "alice", "viewer")
        assert users.check_local(db, "alice", "") is None
