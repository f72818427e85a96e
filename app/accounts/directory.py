"""What sign-in needs from a staff directory (LDAP today, OpenID Connect a next step), kept
apart from ldap3 so that a service without a directory never imports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.accounts.roles import check_role, highest


class DirectoryUnavailable(Exception):
    """The directory could not be asked (down, TLS failure, bad service account)."""


@dataclass(frozen=True)
class DirectoryUser:
    """A person the directory vouched for (never the password)."""

    username: str
    dn: str
    display_name: str
    groups: tuple[str, ...]
    role: str | None


class Directory(Protocol):
    def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """The user when the password is right, None when not; DirectoryUnavailable when the
        directory cannot answer."""
        ...


def _cn(dn: str) -> str:
    first = dn.split(",", 1)[0]
    key, _, value = first.partition("=")
    return value.strip().lower() if key.strip().lower() == "cn" else ""


def map_role(groups: list[str] | tuple[str, ...], mapping: dict[str, str]) -> str | None:
    """The highest role any of `groups` maps to: a mapping key is a full group DN or a cn
    (case-insensitive)."""
    table = {k.strip().lower(): check_role(v) for k, v in mapping.items()}
    roles: set[str] = set()
    for dn in groups:
        for name in (dn.strip().lower(), _cn(dn)):
            if name and name in table:
                roles.add(table[name])
    return highest(roles)
