"""Typed errors: one root, one type per denial a host reacts to differently (R61).

Messages are for developers and never contain a secret; programs read ``reason``.
"""

from __future__ import annotations

__all__ = [
    "ChallengeExpired",
    "ConfigurationError",
    "InvalidCode",
    "InvalidCredentials",
    "InvalidInput",
    "NotAllowed",
    "SessionInvalid",
    "StoreError",
    "Throttled",
    "TwoStepError",
    "UnknownAccount",
    "UnknownUser",
    "EmailTaken",
]


class TwoStepError(Exception):
    """Superclass of every error ``twostep`` raises on purpose. Never raised directly."""

    #: A stable, machine-readable reason; subclasses and instances refine it.
    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, reason={self.reason!r})"


class InvalidInput(TwoStepError):
    """An argument has the wrong type, shape or size (nothing was looked up or changed)."""

    reason = "invalid_input"


class InvalidCredentials(TwoStepError):
    """Email and password do not match an active user.

    Unknown emails, wrong passwords and deactivated users all raise this, with the
    same message, so that a caller cannot tell them apart.
    """

    reason = "invalid_credentials"


class InvalidCode(TwoStepError):
    """The OTP or backup code was refused.

    ``reason`` is one of ``"malformed"`` (not a code at all; nothing was counted),
    ``"wrong"`` (a well-formed code that does not match) or ``"replayed"`` (an OTP
    whose time step was already used, R4). ``attempts_left`` is set when a login
    challenge counts the attempt.
    """

    reason = "wrong"

    def __init__(
        self, message: str, *, reason: str | None = None, attempts_left: int | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.attempts_left = attempts_left


class ChallengeExpired(TwoStepError):
    """The login challenge is unknown, used, expired or exhausted (R6): log in again.

    ``reason`` is ``"expired"``, ``"unknown"`` (never issued, or already used) or
    ``"too_many_attempts"``.
    """

    reason = "expired"


class Throttled(TwoStepError):
    """Too many recent failures: nothing was checked; try again after ``retry_after`` s (R6)."""

    reason = "throttled"

    def __init__(self, message: str, *, retry_after: int, scope: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.scope = scope


class NotAllowed(TwoStepError):
    """The policy refused the action; ``reason`` says why and ``rule`` which rule decided."""

    reason = "not_allowed"

    def __init__(self, message: str, *, reason: str, rule: str) -> None:
        super().__init__(message, reason=reason)
        self.rule = rule


class StepUpRequired(NotAllowed):
    """R99: the action needs a second factor passed recently in this session.

    Ask the user for a code, pass it to :meth:`~twostep.TwoStep.step_up`, then try the
    action again. ``reason`` is ``"step_up_required"``.
    """

    reason = "step_up_required"

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="step_up_required", rule="R99")


class SessionInvalid(TwoStepError):
    """The session token is unknown, expired, logged out or revoked (R21, R41).

    ``reason`` is ``"unknown"``, ``"expired"``, ``"revoked"`` or
    ``"two_factor_required"``.
    """

    reason = "unknown"


class UnknownUser(TwoStepError):
    """No such user in the actor's account."""

    reason = "unknown_user"


class UnknownAccount(TwoStepError):
    """No such account."""

    reason = "unknown_account"


class EmailTaken(TwoStepError):
    """Another user already has this email (emails are unique, case-insensitively)."""

    reason = "email_taken"


class ConfigurationError(TwoStepError):
    """``twostep`` is set up in a way that would be unsafe or cannot work (e.g. no key)."""

    reason = "configuration"


class StoreError(TwoStepError):
    """The store cannot be used: wrong schema version, corrupt value, lost connection."""

    reason = "store"
