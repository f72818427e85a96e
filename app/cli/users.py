"""`endoseek users`: staff accounts for the web UI (create, list, disable, enable, reset,
role). Passwords are read from a hidden prompt or stdin, never from the command line (where
`ps` and shell history would keep them)."""

from __future__ import annotations

import sys

import typer

from app.accounts import users as svc
from app.accounts.passwords import WeakPassword
from app.accounts.roles import ROLES, UnknownRole
from app.db.session import create_db_engine, create_session_factory, session_scope
from app.settings import get_settings

app = typer.Typer(help="Manage staff accounts (web UI sign-in).", no_args_is_help=True)

STDIN_HELP = "Read the password from the first line of stdin (scripts) instead of a prompt."


def _sessions():  # noqa: ANN202
    return create_session_factory(create_db_engine(get_settings().database_url))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _run(action):  # noqa: ANN001, ANN202
    """Run `action(session)` in one transaction; account errors become usage errors."""
    try:
        with session_scope(_sessions()) as session:
            return action(session)
    except (svc.AccountError, WeakPassword, UnknownRole) as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command()
def create(
    username: str = typer.Argument(..., help="Login name (lower-cased)."),
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
    name: str = typer.Option("", "--name", help="Display name (default: the user name)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help=STDIN_HELP),
) -> None:
    """Create a local account."""
    password = _password(password_stdin)
    minimum = get_settings().password_min_length

    def action(session):  # noqa: ANN001, ANN202
        row = svc.create(session, username, role, password, display_name=name, min_length=minimum)
        return row.username, row.role

    created, granted = _run(action)
    typer.echo(f"created {created} ({granted})")


@app.command("list")
def list_() -> None:
    """List accounts: user name, role, source, state, last sign-in (never a hash)."""

    def action(session):  # noqa: ANN001, ANN202
        return [
            (u.username, u.role, u.source, "disabled" if u.disabled_at else "active",
             u.last_sign_in_at.isoformat() if u.last_sign_in_at else "never", u.display_name)
            for u in svc.list_all(session)
        ]  # fmt: skip

    for row in _run(action):
        typer.echo("\t".join(row))


@app.command()
def disable(username: str = typer.Argument(..., help="User name or id.")) -> None:
    """Disable an account and end its sessions at once (directory users too)."""
    done = _run(lambda s: svc.disable(s, username).username)
    typer.echo(f"disabled {done}; its sessions ended")


@app.command()
def enable(username: str = typer.Argument(..., help="User name or id.")) -> None:
    """Enable a disabled account again."""
    done = _run(lambda s: svc.enable(s, username).username)
    typer.echo(f"enabled {done}")


@app.command()
def reset(
    username: str = typer.Argument(..., help="User name or id."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help=STDIN_HELP),
) -> None:
    """Set a new password, lift a lockout and end every session of a local account."""
    password = _password(password_stdin)
    minimum = get_settings().password_min_length
    done = _run(lambda s: svc.reset_password(s, username, password, min_length=minimum).username)
    typer.echo(f"reset {done}; its sessions ended and any lockout lifted")


@app.command()
def role(
    username: str = typer.Argument(..., help="User name or id."),
    new_role: str = typer.Argument(..., metavar="ROLE", help=f"One of: {', '.join(ROLES)}."),
) -> None:
    """Change a local account's role (directory users take theirs from their groups)."""
    done = _run(lambda s: svc.set_role(s, username, new_role).role)
    typer.echo(f"{username}: {done}")
