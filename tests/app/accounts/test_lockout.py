"""Sign-in throttle rows shared by processes: locks after N failures within the window,
forgets old failures, and loses no count when two connections fail at once."""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa

from app.accounts import lockout
from app.db.models import LoginThrottle
from app.db.types import utcnow

RULE = lockout.Rule(max_failures=3, window_s=900, lock_s=900)


def test_locks_after_max_failures_and_clear_lifts(factory) -> None:
    key = lockout.account_key("Vera")
    assert key == lockout.account_key(" vera ") and "vera" not in key  # hashed name
    now = utcnow()
    with factory() as db:
        assert [lockout.fail(db, key, RULE, now) for _ in range(3)] == [False, False, True]
        assert 899 <= lockout.locked_for(db, key, now) <= 900
        assert lockout.locked_for(db, key, now + timedelta(seconds=901)) == 0
        lockout.clear(db, key)
        assert lockout.locked_for(db, key, now) == 0


def test_failures_outside_the_window_are_forgotten(factory) -> None:
    key = lockout.address_key("10.1.2.3")
    now = utcnow()
    with factory() as db:
        lockout.fail(db, key, RULE, now)
        lockout.fail(db, key, RULE, now + timedelta(seconds=10))
        later = now + timedelta(seconds=1000)  # the window restarts: 1, 2, then locked at 3
        assert not lockout.fail(db, key, RULE, later)
        assert not lockout.fail(db, key, RULE, later)
        assert lockout.fail(db, key, RULE, later)


def test_concurrent_failures_are_all_counted(factory) -> None:
    key = lockout.account_key("busy")
    many = lockout.Rule(max_failures=10_000, window_s=900, lock_s=900)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            with factory() as db:
                for _ in range(15):
                    lockout.fail(db, key, many)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with factory() as db:
        assert db.scalar(sa.select(LoginThrottle.failures).where(LoginThrottle.key == key)) == 60
