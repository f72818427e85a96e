"""Directory sign-in against a real OpenLDAP (Debian slapd on loopback, tests/ldap_server.py):
STARTTLS and LDAPS with a checked certificate, group -> role mapping, and the refusals."""

from __future__ import annotations

import pytest

from app.accounts.directory import DirectoryUnavailable
from app.accounts.ldap import LdapDirectory
from app.settings import Settings
from tests.app.server import free_port
from tests.ldap_server import PEOPLE

PW = {p.uid: p.password for p in PEOPLE}


def _directory(slapd, **extra) -> LdapDirectory:  # type: ignore[no-untyped-def]
    return LdapDirectory(Settings(_env_file=None, **slapd.settings(**extra)))  # type: ignore[arg-type]


def test_starttls_bind_and_groups_map_to_roles(slapd) -> None:
    d = _directory(slapd)
    alice = d.authenticate("alice", PW["alice"])
    assert alice is not None and alice.role == "admin" and alice.display_name == "Alice Admin"
    assert alice.dn == "uid=alice,ou=people,dc=endoseek,dc=test"
    assert d.authenticate("bob", PW["bob"]).role == "reviewer"  # type: ignore[union-attr]
    assert d.authenticate("carol", PW["carol"]).role == "viewer"  # type: ignore[union-attr]
    dave = d.authenticate("dave", PW["dave"])
    assert dave is not None and dave.role is None  # in no mapped group


def test_ldaps(slapd) -> None:
    d = _directory(slapd, ldap_url=slapd.ldaps_url, ldap_start_tls=False)
    assert d.authenticate("carol", PW["carol"]).role == "viewer"  # type: ignore[union-attr]


def test_wrong_empty_and_injected_credentials_are_refused(slapd) -> None:
    d = _directory(slapd)
    assert d.authenticate("alice", "wrong-password") is None
    assert d.authenticate("alice", "") is None  # an "unauthenticated bind" must not pass
    assert d.authenticate("nobody", PW["alice"]) is None
    assert d.authenticate("*", PW["star*"]) is None  # the filter is escaped: no wildcard
    assert d.authenticate("ali*", PW["alice"]) is None
    assert d.authenticate("alice)(uid=*", PW["alice"]) is None


def test_plain_ldap_is_refused_by_the_server_and_a_foreign_ca_by_us(slapd, tmp_path) -> None:
    with pytest.raises(DirectoryUnavailable):  # simple binds need TLS on this server
        _directory(slapd, ldap_start_tls=False).authenticate("carol", PW["carol"])
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_text((slapd.root / "server.crt").read_text())  # not the CA that signed it
    ldaps = {"ldap_url": slapd.ldaps_url, "ldap_start_tls": False}
    for extra in ({"ldap_ca_file": other_ca}, {"ldap_ca_file": other_ca, **ldaps}):
        with pytest.raises(DirectoryUnavailable):
            _directory(slapd, **extra).authenticate("carol", PW["carol"])


def test_bad_service_account_and_unreachable_server_are_unavailable(slapd) -> None:
    with pytest.raises(DirectoryUnavailable):
        _directory(slapd, ldap_bind_password="wrong").authenticate("carol", PW["carol"])
    with pytest.raises(DirectoryUnavailable):
        _directory(slapd, ldap_url=f"ldap://127.0.0.1:{free_port()}", ldap_timeout_s=2
                   ).authenticate("carol", PW["carol"])  # fmt: skip


def test_anonymous_search_finds_nobody_on_this_server(slapd) -> None:
    d = _directory(slapd, ldap_bind_dn="", ldap_bind_password=None)
    assert d.authenticate("alice", PW["alice"]) is None  # the ACL hides people from anonymous
