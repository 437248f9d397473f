"""What the public operations return: small, typed, frozen values.

Fields that hold something secret (a session token, a challenge token, backup
codes) are left out of ``repr``, so that logging a result leaks nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from ._domain import RequiredOf, Role
from ._provisioning import Enrollment

__all__ = [
    "AccountOverview",
    "BackupCodes",
    "CodeRequired",
    "DeviceInfo",
    "DeviceToken",
    "EnrollmentRequired",
    "LoggedIn",
    "LoginStep",
    "PasswordReset",
    "SecurityKeyInfo",
    "Session",
    "TwoFactorStatus",
    "UserOverview",
]


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in user. Pass it (or its ``token``) to every operation that needs an actor.

    The host keeps ``token`` (e.g. in a signed cookie) and calls
    :meth:`twostep.TwoStep.check_session` on each request.
    """

    token: str = field(repr=False)
    user_id: str
    account_id: str
    email: str
    role: Role
    issued_at: datetime
    expires_at: datetime
    two_factor_enabled: bool
    #: R95: the user is inside a grace period and must turn 2FA on before this time;
    #: ask them to, on every page. ``None`` when nothing is due.
    enroll_by: datetime | None = None
    #: R99: when a second factor was last passed in this session (``None``: never).
    second_factor_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class BackupCodes:
    """Backup codes as shown to the user once (R10); ``twostep`` keeps only hashes."""

    codes: tuple[str, ...] = field(repr=False)

    def __iter__(self) -> Iterator[str]:
        return iter(self.codes)

    def __len__(self) -> int:
        return len(self.codes)

    def as_text(self, *, title: str = "Backup codes") -> str:
        """A plain-text file for the user to download or print."""
        lines = [title, "", "Each code works once. Keep them somewhere safe.", ""]
        lines += self.codes
        return "\n".join(lines) + "\n"


class PasswordReset(NamedTuple):
    """R86: a password reset token for the host to deliver to the email it was asked for.

    The same answer comes for an unknown email (its token opens nothing), so that the
    answer says nothing about who has an account. (A named tuple: ``import twostep`` is
    measured.)
    """

    token: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"PasswordReset(token=<hidden>, expires_at={self.expires_at!r})"


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """The login is complete. ``backup_codes`` is set when it included an enrolment (R3).

    ``session.enroll_by`` is set when the user logged in inside a grace period (R95):
    ask them to turn 2FA on now.
    """

    session: Session
    backup_codes: BackupCodes | None = None

    @property
    def enroll_by(self) -> datetime | None:
        """R95: the end of the user's grace period, if they must still turn 2FA on."""
        return self.session.enroll_by


class DeviceToken(NamedTuple):
    """R98: the token of a remembered device, for a long-lived cookie; shown once.

    ``device_id`` names the device in :meth:`~twostep.TwoStep.remembered_devices`.
    """

    token: str
    device_id: str
    expires_at: datetime

    def __repr__(self) -> str:
        return (
            f"DeviceToken(token=<hidden>, device_id={self.device_id!r}, "
            f"expires_at={self.expires_at!r})"
        )


class DeviceInfo(NamedTuple):
    """R98: a remembered device as its user sees it in a list (no token, no hash)."""

    device_id: str
    label: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None


class CodeRequired(NamedTuple):
    """Step 2 (R1): ask for a code, then call ``complete_login(challenge, code)``.

    ``second_factors`` says what the user has (R102): ``"totp"`` (an authenticator app,
    and its backup codes) and ``"security_key"``, for which the host asks
    ``security_key_login_options(challenge)`` and calls
    ``complete_login_with_security_key(challenge, assertion)``. (This and the results
    below are named tuples, cheaper to define than dataclasses: ``import twostep`` is
    measured, bench/.)
    """

    challenge: str
    expires_at: datetime
    second_factors: tuple[str, ...] = ("totp",)

    def __repr__(self) -> str:
        return (
            f"CodeRequired(challenge=<hidden>, expires_at={self.expires_at!r}, "
            f"second_factors={self.second_factors!r})"
        )


class EnrollmentRequired(NamedTuple):
    """The account requires 2FA and the user has none (R3): show ``enrollment``.

    Then call ``complete_login(challenge, code)`` with the code from the app.
    """

    challenge: str
    enrollment: Enrollment
    expires_at: datetime

    def __repr__(self) -> str:
        return (
            f"EnrollmentRequired(challenge=<hidden>, enrollment={self.enrollment!r}, "
            f"expires_at={self.expires_at!r})"
        )


LoginStep = LoggedIn | CodeRequired | EnrollmentRequired


class SecurityKeyInfo(NamedTuple):
    """One of the user's security keys as they see it (R105): no credential material.

    ``id`` is what :meth:`twostep.TwoStep.remove_security_key` takes.
    """

    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None


class TwoFactorStatus(NamedTuple):
    """A user's own security settings (R5: the remaining backup codes are visible)."""

    enabled: bool
    required_by_account: bool
    backup_codes_remaining: int
    enrollment_pending: bool
    #: R95: the end of the user's grace period, while 2FA is due and off.
    enroll_by: datetime | None = None
    #: How many security keys the user has (R105).
    security_keys: int = 0


class UserOverview(NamedTuple):
    user_id: str
    email: str
    role: Role
    two_factor_enabled: bool
    backup_codes_remaining: int
    active: bool = True  # False: deactivated (R81)
    #: R95: the end of the user's grace period, while 2FA is due and off.
    enroll_by: datetime | None = None
    security_keys: int = 0  # R102: a user with a key has 2FA on


class AccountOverview(NamedTuple):
    """Administration's view of an account (R50)."""

    account_id: str
    name: str
    two_factor_required: bool
    users: tuple[UserOverview, ...]
    #: Whom the requirement covers (R96) and its grace period (R95).
    required_of: RequiredOf = RequiredOf.EVERYONE
    grace_period: timedelta | None = None
