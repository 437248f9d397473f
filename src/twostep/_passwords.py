"""Passwords: Argon2id through argon2-cffi, rehashed on login when the cost changes.

An imported user (R90-R92) may hold a hash made elsewhere until their first login, or
:data:`NO_PASSWORD`, which no password matches (R93).
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from ._settings import Argon2Params

__all__ = ["NO_PASSWORD", "Passwords"]

#: The stored hash of a user without a twostep password: their host checks step 1 (R93).
NO_PASSWORD = "!"  # noqa: S105 (no password: nothing hashes to it)
_ARGON2 = "$argon2"


class Passwords:
    def __init__(self, params: Argon2Params) -> None:
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        # Verified against when the email is unknown, so that both cases cost the same.
        self._dummy = self._hasher.hash("twostep dummy password")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``None`` burns the same time and says no.

        So does :data:`NO_PASSWORD` (R93). A hash made elsewhere is verified by
        :mod:`twostep._foreign_hashes`, loaded then (R91).
        """
        if password_hash == NO_PASSWORD:
            password_hash = None
        elif password_hash is not None and not password_hash.startswith(_ARGON2):
            from . import _foreign_hashes

            return _foreign_hashes.verify(password_hash, password)
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and (
                password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a verified hash is to be replaced: other costs, or made elsewhere (R92)."""
        if not password_hash.startswith(_ARGON2):
            return password_hash != NO_PASSWORD
        return self._hasher.check_needs_rehash(password_hash)
