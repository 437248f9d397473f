"""The audit trail's vocabulary (R60): what was done, how it ended, and the event itself.

Every event names its action with an :class:`AuditAction`. A refusal is recorded under
the same action as the success it was refused: a wrong code given to turn 2FA off is a
``two_factor_disabled`` event with outcome ``failure``, a member asking to require 2FA is
a ``two_factor_required`` event with outcome ``denied``. Nothing secret goes in an event.

Throttled attempts that repeat are one event with a count (R75). Reading the trail page
by page is in ``_audit_pages`` (R76).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

__all__ = ["AuditAction", "AuditEvent", "Outcome"]


class AuditAction(enum.StrEnum):
    """Every action the audit trail records; the comment says what its success means."""

    ACCOUNT_CREATED = "account_created"  # an operator created an account
    USER_CREATED = "user_created"  # an operator created a user
    LOGIN_PASSWORD = "login_password"  # noqa: S105 (a name, not a password); step 1 passed and a code is asked for (R1)
    # A session was born (reason: the second step passed, "otp", "backup_code",
    # "enrolled", or none). Failures of either step, dead challenges and throttled
    # attempts of a login are recorded under it too.
    LOGIN = "login"
    # The host checked step 1 of a user without a twostep password and asked for the
    # second step (R93); its refusals (unknown user, a twostep password, throttled)
    # are recorded under it. What follows is a login's own events.
    SECOND_STEP_BEGUN = "second_step_begun"
    LOGOUT = "logout"  # a session ended at its user's request
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (a name); a user changed it (R85)
    PASSWORD_RESET_STARTED = "password_reset_started"  # noqa: S105 (a name); R86, a token
    PASSWORD_RESET = "password_reset"  # noqa: S105 (a name); a token set a new password (R86)
    # An email changed: by its user ("by_user", R88) or by an owner ("by_owner", R89).
    # Neither address is recorded: the event names the user by id.
    EMAIL_CHANGED = "email_changed"
    ENROLLMENT_STARTED = "enrollment_started"  # a new secret is waiting for its first code
    TWO_FACTOR_ENABLED = "two_factor_enabled"  # a first code confirmed an enrolment (R10)
    TWO_FACTOR_DISABLED = "two_factor_disabled"  # a user turned their own 2FA off (R31)
    RESET_STARTED = "reset_started"  # a user began moving to a new phone (R40)
    # 2FA was reset: by its user on a new phone ("new_device", R40), by an owner
    # ("by_owner", R41) or by the installation's operator ("out_of_band", R42).
    TWO_FACTOR_RESET = "two_factor_reset"
    BACKUP_CODES_REGENERATED = "backup_codes_regenerated"  # a fresh set replaced the old (R5)
    # An owner required 2FA (R20, R21) or changed whom it covers or its grace period
    # (R95, R96); the reason says whose sessions ended: "all_sessions_ended",
    # "admin_sessions_ended", "member_sessions_ended", or "admins_only" (narrowed) and
    # "grace_period_changed" (none ended).
    TWO_FACTOR_REQUIRED = "two_factor_required"
    TWO_FACTOR_OPTIONAL = "two_factor_optional"  # an owner made 2FA optional again (R22)
    # Reading the 2FA overview and the audit trail (R50, R60): only refusals are recorded.
    OVERVIEW_VIEWED = "overview_viewed"
    AUDIT_TRAIL_VIEWED = "audit_trail_viewed"
    # The users' life (R80-R84). A role change's reason is "<old>_to_<new>"; a deletion's
    # is the email the user had, so that the trail still tells who it was.
    ROLE_CHANGED = "role_changed"  # an owner changed a user's role (R80)
    USER_DEACTIVATED = "user_deactivated"  # an owner deactivated a user (R81)
    USER_REACTIVATED = "user_reactivated"  # an owner reactivated a user (R81)
    USER_DELETED = "user_deleted"  # an owner deleted a user (R82)
    USERS_LISTED = "users_listed"  # only refusals to list the users are recorded (R83)
    # Security keys (R100-R109). A login with one is a ``login`` event with reason
    # "security_key"; its refusals too (reason "wrong", "sign_count", ...). Events name
    # the user; none holds a credential id or a public key.
    SECURITY_KEY_REGISTERED = "security_key_registered"  # a user added a key (R101)
    SECURITY_KEY_REMOVED = "security_key_removed"  # a user removed one of their keys (R106)
    # A user passed a code again in their session, for a sensitive action (R99).
    STEP_UP = "step_up"
    DEVICE_REMEMBERED = "device_remembered"  # a user's device skips the code step (R98)
    DEVICE_FORGOTTEN = "device_forgotten"  # a user forgot one of their devices (R98)


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"  # a wrong password or code, a dead challenge, a missing enrolment
    THROTTLED = "throttled"  # refused before any check, because of earlier failures (R6)
    DENIED = "denied"  # the policy refused (R20-R50)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """R60: who did what to whom, when, and how it ended. Never a secret.

    ``action`` is an :class:`AuditAction` for every event written by this version;
    events read back from a store are plain strings that compare equal to it.
    ``repeats`` is how many attempts the event stands for: throttled attempts of the
    same actor, action and reason within ``Settings.audit_collapse_window`` of the
    first are counted on its event (R75), whose ``at`` stays the first one's.
    """

    at: datetime
    action: str
    outcome: Outcome
    account_id: str | None
    actor_id: str | None
    target_id: str | None
    reason: str | None = None
    actor: str = "user"  # "user", "operator" or "anonymous"
    repeats: int = 1
