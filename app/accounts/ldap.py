"""Directory sign-in (LDAP / Active Directory) with ldap3: find, bind, map groups to a role.

Flow: connect (ldaps:// or ldap:// + STARTTLS, certificate checked against ldap_ca_file),
bind as the service account (or anonymously), search the user's DN with ldap_user_filter
(the name escaped), bind as that DN with the typed password (a simple bind: only over TLS in
production), collect the groups (the entry's memberOf, plus a search under ldap_group_base),
and map them through ldap_group_roles. The highest mapped role wins; no mapped group, no
sign-in. An empty password is refused before any bind (LDAP treats it as an anonymous bind
that "succeeds").
"""

from __future__ import annotations

import math
import ssl
from urllib.parse import urlsplit

from ldap3 import ANONYMOUS, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.utils.conv import escape_filter_chars

from app.accounts.directory import DirectoryUnavailable, DirectoryUser, map_role
from app.settings import Settings

INVALID_CREDENTIALS = 49
MAX_PASSWORD = 1024


class LdapDirectory:
    """One configured directory; each sign-in opens and closes its own connections."""

    def __init__(self, settings: Settings) -> None:
        if not settings.ldap_url:
            raise ValueError("ldap_url is not set")
        self.settings = settings
        self.timeout = max(1, math.ceil(settings.ldap_timeout_s))  # ldap3 packs whole seconds
        parts = urlsplit(settings.ldap_url)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ValueError("ldap_url must look like ldap://host:389 or ldaps://host:636")
        self.use_ssl = parts.scheme == "ldaps"
        port = parts.port or (636 if self.use_ssl else 389)
        tls = None
        if self.use_ssl or settings.ldap_start_tls:
            tls = Tls(
                validate=ssl.CERT_REQUIRED,
                version=ssl.PROTOCOL_TLS_CLIENT,
                ca_certs_file=str(settings.ldap_ca_file) if settings.ldap_ca_file else None,
            )
        self.server = Server(
            parts.hostname,
            port=port,
            use_ssl=self.use_ssl,
            tls=tls,
            get_info=NONE,
            connect_timeout=self.timeout,
        )

    def _connect(self, user: str | None, password: str | None) -> Connection:
        """An open, TLS-protected (as configured) connection, not yet bound."""
        conn = Connection(
            self.server,
            user=user,
            password=password,
            authentication=SIMPLE if user else ANONYMOUS,
            auto_bind=False,
            read_only=True,
            receive_timeout=self.timeout,
            raise_exceptions=False,
        )
        conn.open()
        if self.settings.ldap_start_tls and not self.use_ssl:
            conn.start_tls()
        return conn

    def _service(self) -> Connection:
        s = self.settings
        secret = s.ldap_bind_password.get_secret_value() if s.ldap_bind_password else None
        try:
            conn = self._connect(s.ldap_bind_dn or None, secret if s.ldap_bind_dn else None)
            ok = conn.bind()
        except Exception as exc:  # noqa: BLE001 - ldap3 raises socket/ssl/struct errors too
            raise DirectoryUnavailable(type(exc).__name__) from None
        if not ok:
            code = conn.result.get("result")
            conn.unbind()
            raise DirectoryUnavailable(f"service bind refused (LDAP result {code})")
        return conn

    def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """The directory user if `password` binds as `username`, else None; raises
        DirectoryUnavailable when the directory cannot answer."""
        if not username or not password or len(password) > MAX_PASSWORD:
            return None
        s = self.settings
        conn = self._service()
        try:
            found = conn.search(
                s.ldap_user_base,
                s.ldap_user_filter.format(username=escape_filter_chars(username)),
                SUBTREE,
                attributes=["cn", "displayName", "memberOf"],
                size_limit=2,
            )
            entries = list(conn.entries) if found else []
            if len(entries) != 1:  # unknown, or ambiguous: never guess
                return None
            entry = entries[0]
            dn = entry.entry_dn
            attrs = entry.entry_attributes_as_dict
            groups = [str(g) for g in attrs.get("memberOf", [])]
            if not self._bind_as(dn, password):
                return None
            if s.ldap_group_base:
                flt = s.ldap_group_filter.format(
                    dn=escape_filter_chars(dn), username=escape_filter_chars(username)
                )
                if conn.search(s.ldap_group_base, flt, SUBTREE, attributes=[]):
                    groups += [e.entry_dn for e in conn.entries]
        except DirectoryUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - ldap3 raises socket/ssl/struct errors too
            raise DirectoryUnavailable(type(exc).__name__) from None
        finally:
            conn.unbind()
        name = (attrs.get("displayName") or attrs.get("cn") or [username])[0]
        role = map_role(groups, s.ldap_group_roles)
        return DirectoryUser(username, dn, str(name), tuple(groups), role)

    def _bind_as(self, dn: str, password: str) -> bool:
        """True when the directory accepts `password` for `dn`."""
        try:
            conn = self._connect(dn, password)
            ok = conn.bind()
        except Exception as exc:  # noqa: BLE001 - ldap3 raises socket/ssl/struct errors too
            raise DirectoryUnavailable(type(exc).__name__) from None
        code = conn.result.get("result")
        conn.unbind()
        if not ok and code != INVALID_CREDENTIALS:
            raise DirectoryUnavailable(f"user bind failed (LDAP result {code})")
        return ok
