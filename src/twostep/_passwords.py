"""Passwords: Argon2id through argon2-cffi, rehashed on login when the cost changes."""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from ._settings import Argon2Params

__all__ = ["Passwords"]


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
        """Whether ``password`` matches; ``None`` burns the same time and says no."""
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and (
                password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
