"""Helpers for testing code that uses ``twostep``: a manual clock, cheap settings, a phone.

Only for tests! ``FAST`` makes Argon2 as cheap as it can be, which is worthless
against an attacker.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pyotp

from ._settings import CHEAPEST, Settings

__all__ = ["FAST", "ManualClock", "Phone"]

#: Default settings with the cheapest Argon2 for passwords and backup codes. Only for testing!
FAST = dataclasses.replace(Settings(), password_hash=CHEAPEST, backup_code_hash=CHEAPEST)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            msg = "the clock needs an aware datetime"
            raise ValueError(msg)

    def now(self) -> datetime:
        """The time the clock shows."""
        return self._now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        """Move on by ``seconds`` (and/or ``timedelta`` keywords); returns the new time."""
        self._now += timedelta(seconds=seconds, **delta)
        return self._now

    def set(self, when: datetime) -> None:
        """Set the clock to ``when``."""
        self._now = when


class Phone:
    """An authenticator app: it computes the code for a secret at the clock's time."""

    def __init__(
        self, secret: str, clock: ManualClock, *, digits: int = 6, period: int = 30
    ) -> None:
        self._totp = pyotp.TOTP(secret, digits=digits, interval=period)
        self._clock = clock

    def __repr__(self) -> str:
        return "Phone(<secret hidden>)"

    def code(self, *, offset_steps: int = 0) -> str:
        """The code shown now, or ``offset_steps`` periods away (for drift tests)."""
        at = self._clock.now() + timedelta(seconds=offset_steps * self._totp.interval)
        return self._totp.at(at)
