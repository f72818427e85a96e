"""The UI session store in the database (SQLite and PostgreSQL): two stores on one database
stand for two server processes; a fresh store after "restart" still knows every session."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.db.models import ApiKey, UiSessionRow, User
from app.db.types import utcnow
from app.services import keys
from app.ui.sessions import MAX_SESSIONS_PER_PRINCIPAL, SessionStore, StoreNotBound
from tests.app.accounts.flows import make_user


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _user_id(factory, url: str, name: str = "vera") -> uuid.UUID:  # type: ignore[no-untyped-def]
    make_user(url, name, "viewer", f"{name}-password-123")
    with factory() as db:
        return db.scalar(sa.select(User.id).where(User.username == name))


def test_two_stores_share_sessions_and_a_new_one_keeps_them(factory, db_url) -> None:
    uid = _user_id(factory, db_url)
    a, b = SessionStore(db=factory), SessionStore(db=factory)
    sid, made = a.create(None, "Vera", frozenset({"search"}), user_id=uid)
    seen = b.get(sid)
    assert seen is not None and seen.user_id == uid and seen.csrf == made.csrf
    assert seen.scopes == {"search"} and seen.key_id is None
    assert SessionStore(db=factory).get(sid) is not None  # a restarted process
    b.drop(sid)
    assert a.get(sid) is None
    with factory() as db:
        stored = db.scalars(sa.select(UiSessionRow.id_hash)).all()
    assert sid not in stored  # only its hash is kept


def test_idle_and_absolute_expiry_on_the_shared_clock(factory, db_url) -> None:
    uid = _user_id(factory, db_url)
    clock = Clock()
    store = SessionStore(idle_s=600, absolute_s=3600, db=factory, clock=clock)
    sid, _ = store.create(None, "Vera", frozenset({"search"}), user_id=uid)
    clock.advance(599)
    assert store.get(sid) is not None
    clock.advance(601)
    assert store.get(sid) is None
    sid, _ = store.create(None, "Vera", frozenset({"search"}), user_id=uid)
    for _ in range(11):  # active every 5 minutes: 55 minutes
        clock.advance(300)
        assert store.get(sid) is not None
    clock.advance(301)
    assert store.get(sid) is None  # the absolute limit, however active


def test_touch_is_written_at_most_every_touch_interval(factory, db_url) -> None:
    uid = _user_id(factory, db_url)
    clock = Clock()
    store = SessionStore(idle_s=600, absolute_s=3600, db=factory, clock=clock)
    sid, _ = store.create(None, "Vera", frozenset({"search"}), user_id=uid)
    first = store.get(sid).seen  # type: ignore[union-attr]
    clock.advance(store.touch_s / 2)
    assert store.get(sid).seen == first  # type: ignore[union-attr]
    clock.advance(store.touch_s)
    assert store.get(sid).seen == clock.now  # type: ignore[union-attr]


def test_sign_out_everywhere_and_per_principal_bound(factory, db_url) -> None:
    uid, other = _user_id(factory, db_url), _user_id(factory, db_url, "olga")
    with factory() as db:
        row, _ = keys.create_key(db, "kiosk", ["search"])
        key_id = row.id
        db.commit()
    store = SessionStore(db=factory)
    mine = [store.create(None, "Vera", frozenset({"search"}), user_id=uid)[0] for _ in range(3)]
    theirs = store.create(None, "Olga", frozenset({"search"}), user_id=other)[0]
    kiosk = store.create(key_id, "kiosk", frozenset({"search"}))[0]
    assert store.drop_user(uid) == 3 and not any(store.get(s) for s in mine)
    assert store.get(theirs) is not None and store.get(kiosk) is not None
    assert store.drop_key(key_id) == 1 and store.get(kiosk) is None
    many = [store.create(None, "Olga", frozenset(), user_id=other)[0]
            for _ in range(MAX_SESSIONS_PER_PRINCIPAL + 2)]  # fmt: skip
    assert store.get(theirs) is None and store.get(many[0]) is None  # the oldest went
    assert store.get(many[-1]) is not None
    assert len(store) == MAX_SESSIONS_PER_PRINCIPAL
    with factory() as db:  # a key's sessions go with its row (FK cascade)
        assert db.get(ApiKey, key_id) is not None


def test_a_session_names_exactly_one_key_or_user(factory) -> None:
    store = SessionStore(db=factory)
    with pytest.raises(ValueError):
        store.create(None, "nobody", frozenset())
    with pytest.raises(StoreNotBound):
        SessionStore().get("x" * 43)
    assert store.get("") is None and store.get("x" * 500) is None
