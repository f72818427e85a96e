"""Sign-in decisions for the UI: password (local account or directory) or API key.

Order: the client address's throttle, the account's lockout, then the credentials. Every
refusal says as little as it must (no hint whether a user name exists); every outcome that
concerns a known account or key is audited under it; the typed secrets are never logged.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.accounts import lockout, users
from app.accounts.directory import Directory, DirectoryUnavailable
from app.accounts.roles import scopes_for
from app.db.models import User
from app.db.types import utcnow
from app.services import audit, keys
from app.settings import Settings

log = logging.getLogger(__name__)

WRONG_PASSWORD = "Wrong user name or password."
WRONG_KEY = "That key is not valid or was revoked."


@dataclass(frozen=True)
class Verdict:
    """The outcome: who signed in, or the status and message of the refusal."""

    ok: bool
    status: int = 200
    error: str = ""
    retry_after: int = 0
    key_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    name: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)


def _refuse(status: int, error: str, retry_after: int = 0) -> Verdict:
    return Verdict(False, status, error, retry_after)


class SignIn:
    """Sign-in rules of one service (settings, optional directory)."""

    def __init__(self, settings: Settings, directory: Directory | None = None) -> None:
        self.settings = settings
        self.directory = directory
        if directory is None and settings.ldap_url:
            from app.accounts.ldap import LdapDirectory  # ldap3 only where a directory is set

            self.directory = LdapDirectory(settings)
        s = settings
        self.account_rule = lockout.Rule(s.login_max_failures, s.login_lockout_s, s.login_lockout_s)
        self.address_rule = lockout.Rule(s.login_ip_failures_per_minute, 60.0, 60.0)

    def _address_wait(self, db: Session, address: str) -> Verdict | None:
        wait = lockout.locked_for(db, lockout.address_key(address))
        if wait:
            log.warning("ui sign-in throttled for a client address")
            return _refuse(429, "Too many failed sign-ins from here; wait a minute.", wait)
        return None

    def with_password(self, db: Session, username: str, password: str, address: str) -> Verdict:
        """Check a user name and password (local account first, else the directory)."""
        throttled = self._address_wait(db, address)
        if throttled:
            return throttled
        account_key = lockout.account_key(username)
        wait = lockout.locked_for(db, account_key)
        if wait:
            minutes = max(1, round(wait / 60))
            return _refuse(
                429,
                f"Too many failed sign-ins for this account; try again in {minutes} min or "
                "ask an administrator to reset it.",
                wait,
            )
        row = users.find(db, username)
        source = "local"
        if row is None or row.source == "ldap":
            if self.directory is None:
                if row is None:
                    users.check_local(db, username, password)  # same time as a wrong password
                return self._failed(db, row, account_key, address)
            source = "ldap"
            try:
                person = self.directory.authenticate(username.strip().lower(), password)
            except DirectoryUnavailable as exc:
                log.error("directory unreachable during sign-in: %s", exc)
                return _refuse(503, "The staff directory cannot be reached; try again later.")
            if person is None:
                return self._failed(db, row, account_key, address)
            if person.role is None:
                log.info("directory sign-in refused: no mapped group")
                return _refuse(403, "Your directory account is in no EndoSeek group.")
            try:
                row = users.upsert_directory_user(db, username, person.display_name, person.role)
            except users.AccountError:
                return _refuse(403, "This user name cannot be used here.")
        else:
            if users.check_local(db, username, password) is None:
                return self._failed(db, row, account_key, address)
        if row.disabled_at is not None:
            audit.record(db, None, "ui.sign_in.disabled", row.username, user_id=row.id)
            db.commit()
            return _refuse(403, "This account is disabled.")
        lockout.clear(db, account_key)
        row.last_sign_in_at = utcnow()
        audit.record(db, None, "ui.sign_in", row.username, {"source": source, "role": row.role},
                     user_id=row.id)  # fmt: skip
        db.commit()
        return Verdict(True, user_id=row.id, name=row.display_name or row.username,
                       scopes=scopes_for(row.role))  # fmt: skip

    def _failed(self, db: Session, row: User | None, account_key: str, address: str) -> Verdict:
        """Count the failure against the account and the address; audit it for a known
        account (an unknown name is only counted: nobody to name)."""
        locked = lockout.fail(db, account_key, self.account_rule)
        lockout.fail(db, lockout.address_key(address), self.address_rule)
        if row is not None:
            audit.record(db, None, "ui.sign_in.failed", row.username, user_id=row.id)
            if locked:
                audit.record(db, None, "account.locked", row.username, user_id=row.id)
            db.commit()
        log.info("ui sign-in refused%s", " (account now locked)" if locked else "")
        return _refuse(401, WRONG_PASSWORD)

    def with_key(self, db: Session, key: str, address: str) -> Verdict:
        """Check an API key (machines, admin bootstrap)."""
        throttled = self._address_wait(db, address)
        if throttled:
            return throttled
        principal = keys.authenticate(db, key.strip())
        if principal is None:
            lockout.fail(db, lockout.address_key(address), self.address_rule)
            log.info("ui sign-in refused")  # never log what was typed
            return _refuse(401, WRONG_KEY)
        audit.record(db, principal.key_id, "ui.sign_in", None, {"source": "key"})
        db.commit()
        return Verdict(True, key_id=principal.key_id, name=principal.name,
                       scopes=principal.scopes)  # fmt: skip

    def change_password(
        self, db: Session, user_id: uuid.UUID, current: str, new: str, address: str
    ) -> Verdict:
        """A signed-in local user's own change: the current password is checked (and
        throttled like a sign-in)."""
        row = db.get(User, user_id)
        if row is None or row.source != "local":
            return _refuse(400, "Directory accounts change their password in the directory.")
        throttled = self._address_wait(db, address)
        if throttled:
            return throttled
        account_key = lockout.account_key(row.username)
        if users.check_local(db, row.username, current) is None:
            return self._failed(db, row, account_key, address)
        try:
            users.reset_password(
                db,
                str(row.id),
                new,
                min_length=self.settings.password_min_length,
                action="user.password_change",
            )
        except users.AccountError as exc:
            return _refuse(400, str(exc))
        except ValueError as exc:  # WeakPassword
            return _refuse(400, str(exc))
        db.commit()
        return Verdict(True, user_id=row.id, name=row.display_name, scopes=scopes_for(row.role))
