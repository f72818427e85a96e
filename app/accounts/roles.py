"""Roles of staff accounts and the API scopes each one grants (same rules as API keys)."""

from __future__ import annotations

ROLES = ("viewer", "reviewer", "admin")  # lowest to highest
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"search"}),
    "reviewer": frozenset({"search", "label"}),
    "admin": frozenset({"admin"}),  # admin implies every scope (Principal.allows)
}


class UnknownRole(ValueError):
    """A role name outside ROLES."""


def check_role(role: str) -> str:
    """`role`, normalised, or UnknownRole naming the choices."""
    value = role.strip().lower()
    if value not in ROLES:
        raise UnknownRole(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    return value


def scopes_for(role: str) -> frozenset[str]:
    """The scopes a role grants (none for an unknown role: fail closed)."""
    return ROLE_SCOPES.get(role, frozenset())


def highest(roles: set[str] | list[str]) -> str | None:
    """The most privileged of `roles` (unknown names ignored), or None."""
    known = [r for r in ROLES if r in set(roles)]
    return known[-1] if known else None
