"""argon2id hashes, the new-password rule, roles -> scopes, directory groups -> role."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from app.accounts import passwords
from app.accounts.directory import map_role
from app.accounts.roles import ROLES, UnknownRole, check_role, highest, scopes_for
from app.services.keys import Principal


def test_hash_is_argon2id_salted_and_verifies() -> None:
    a, b = passwords.hash_password("correct horse 1"), passwords.hash_password("correct horse 1")
    assert a.startswith("$argon2id$") and a != b  # a fresh salt each time
    assert passwords.verify(a, "correct horse 1") == (True, False)
    assert passwords.verify(a, "correct horse 2") == (False, False)
    assert passwords.verify(None, "x") == (False, False)
    assert passwords.verify("not-a-hash", "x") == (False, False)
    assert passwords.verify(a, "") == (False, False)


def test_old_parameters_ask_for_a_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw-old-params")
    assert passwords.verify(weak, "pw-old-params") == (True, True)


def test_new_password_rule() -> None:
    with pytest.raises(passwords.WeakPassword):
        passwords.check_new("short", 12)
    with pytest.raises(passwords.WeakPassword):
        passwords.check_new(" " * 20, 12)
    with pytest.raises(passwords.WeakPassword):
        passwords.check_new("x" * (passwords.MAX_LENGTH + 1), 12)
    assert passwords.check_new("long enough pw", 12)


def test_roles_map_to_the_api_scopes() -> None:
    def principal(role: str) -> Principal:
        return Principal(key_id=None, name=role, scopes=scopes_for(role))  # type: ignore[arg-type]

    allowed = {r: {s for s in ("search", "label", "ingest", "admin") if principal(r).allows(s)}
               for r in ROLES}  # fmt: skip
    assert allowed == {
        "viewer": {"search"},
        "reviewer": {"search", "label"},
        "admin": {"search", "label", "ingest", "admin"},
    }
    assert scopes_for("root") == frozenset()  # unknown: nothing
    assert check_role(" Reviewer ") == "reviewer"
    with pytest.raises(UnknownRole):
        check_role("superuser")
    assert highest(["viewer", "admin", "reviewer"]) == "admin" and highest(["x"]) is None


def test_groups_map_by_dn_or_cn_and_the_highest_role_wins() -> None:
    mapping = {"CN=QA-Admins,OU=Groups,DC=h,DC=org": "admin", "qa-viewers": "viewer"}
    assert map_role(["cn=qa-admins,ou=groups,dc=h,dc=org"], mapping) == "admin"
    assert map_role(["cn=qa-viewers,ou=other,dc=h,dc=org"], mapping) == "viewer"
    both = ["cn=qa-viewers,ou=g,dc=h,dc=org", "CN=QA-Admins,OU=Groups,DC=h,DC=org"]
    assert map_role(both, mapping) == "admin"
    assert map_role(["cn=qa-admins,ou=elsewhere,dc=h,dc=org"], mapping) is None  # DN exact
    assert map_role([], mapping) is None
    with pytest.raises(UnknownRole):
        map_role(["cn=x"], {"x": "owner"})
