"""Password hashing with argon2id (argon2-cffi's RFC 9106 defaults) and a length rule.

verify() also says when a stored hash uses older parameters, so sign-in can upgrade it.
A verify against a fixed dummy hash keeps "no such user" as slow as "wrong password".
"""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
MAX_LENGTH = 1024  # argon2 takes any length; a bound keeps a hostile form cheap


class WeakPassword(ValueError):
    """A new password that breaks the length rule."""


def check_new(password: str, min_length: int) -> str:
    """`password` if it is acceptable as a new password, else WeakPassword (says why, never
    echoes it)."""
    if len(password) < min_length:
        raise WeakPassword(f"a password needs at least {min_length} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password may have at most {MAX_LENGTH} characters")
    if not password.strip():
        raise WeakPassword("a password cannot be only spaces")
    return password


def hash_password(password: str) -> str:
    """An argon2id hash string (salt and parameters included)."""
    return _hasher.hash(password)


def verify(stored: str | None, password: str) -> tuple[bool, bool]:
    """(matches, needs_rehash). A missing or malformed hash never matches."""
    if not stored or not password or len(password) > MAX_LENGTH:
        burn_time()
        return False, False
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, False
    return True, _hasher.check_needs_rehash(stored)


@lru_cache(maxsize=1)
def _dummy() -> str:
    return _hasher.hash("endoseek-dummy-password")


def burn_time() -> None:
    """Spend one verification's time (unknown user): no timing hint that a name exists."""
    try:
        _hasher.verify(_dummy(), "not-the-dummy-password")
    except VerificationError:
        pass
