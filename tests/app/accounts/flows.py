"""Sign-in steps shared by the account tests (TestClient or httpx against a real server)."""

from __future__ import annotations

import re

import httpx
import sqlalchemy as sa

from app.accounts import users
from app.db.models import AuditEvent
from app.db.session import create_db_engine, create_session_factory, session_scope

PRE_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
PAGE_TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"')


def sign_in(client: httpx.Client, **form: str) -> httpx.Response:
    """Post the sign-in form (username/password or api_key) as a browser would."""
    page = client.get("/ui/sign-in")
    token = PRE_TOKEN.search(page.text).group(1)  # type: ignore[union-attr]
    return client.post("/ui/sign-in", data={"csrf_token": token, **form}, follow_redirects=False)


def page_csrf(client: httpx.Client, path: str = "/ui/models") -> str:
    """The CSRF token of a signed-in page."""
    return PAGE_TOKEN.search(client.get(path).text).group(1)  # type: ignore[union-attr]


def signed_in(client: httpx.Client) -> bool:
    """True when the browser's cookie opens a page (not redirected to sign-in)."""
    return client.get("/ui/procedures", follow_redirects=False).status_code == 200


def make_user(url: str, username: str, role: str, password: str) -> None:
    """A local account, made the way `endoseek users create` does."""
    factory = create_session_factory(create_db_engine(url))
    with session_scope(factory) as db:
        users.create(db, username, role, password)


def audit_rows(url: str) -> list[tuple[str, str | None, object, object]]:
    """(action, target, key_id, user_id) of every audit event, oldest first."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            cols = (AuditEvent.action, AuditEvent.target, AuditEvent.key_id, AuditEvent.user_id)
            return [tuple(r) for r in conn.execute(sa.select(*cols).order_by(AuditEvent.id))]
    finally:
        engine.dispose()
