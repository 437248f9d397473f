"""One's own 2FA (R5, R10, R11, R30-R32, R40): enrol, confirm, turn off, reset, new codes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .._audit import AuditAction, Outcome
from .._code_check import Against, CodeAttempt, Passed, present_code
from .._domain import SessionRecord, User
from .._policy import Action
from .._provisioning import Enrollment
from .._results import BackupCodes, Session, TwoFactorStatus
from .._sessions import authenticate, session_token, session_value
from .._throttling import code_counters
from .._unit_of_work import Context, Work
from ._shared import allow, new_enrollment

__all__ = [
    "begin_enrollment",
    "begin_reset",
    "confirm_enrollment",
    "disable_two_factor",
    "regenerate_backup_codes",
    "step_up",
    "two_factor_status",
]


def two_factor_status(context: Context, session: object) -> TwoFactorStatus:
    """The actor's own 2FA: on or off, required or not, backup codes left (R5)."""
    with context.work(write=False) as w:
        actor = authenticate(w, context.settings, session)
        return TwoFactorStatus(
            enabled=actor.user.two_factor.enabled,
            required_by_account=actor.account.covers(actor.user),
            backup_codes_remaining=actor.user.backup_codes_remaining,
            security_keys=actor.user.security_keys,
            enrollment_pending=actor.user.two_factor.pending_at(
                w.now, context.settings.enrollment_ttl
            ),
            enroll_by=actor.account.enroll_by(actor.user),
        )


def begin_enrollment(context: Context, session: object) -> Enrollment:
    """R30: start turning 2FA on; nothing changes until it is confirmed (R11)."""
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        allow(w, Action.ENROLL, actor, audit_as=AuditAction.ENROLLMENT_STARTED)
        user, enrollment = new_enrollment(context, w, actor.user)
        w.tx.put_user(user)
        _audit_own(w, AuditAction.ENROLLMENT_STARTED, user)
        return enrollment


def confirm_enrollment(context: Context, session: object, code: object) -> BackupCodes:
    """R10/R40: a right code from the new app turns the new secret on, with new codes.

    R97: turning 2FA on ends the user's other sessions, this one goes on; R98: moving
    to a new phone forgets the remembered devices.
    """
    records: list[SessionRecord] = []  # the session, as each transaction loaded it

    def load(w: Work) -> CodeAttempt:
        actor = authenticate(w, context.settings, session)
        records.append(actor.record)
        # R40: a user with 2FA is confirming the new phone of a reset begun before.
        resetting = actor.user.two_factor.enabled
        action = Action.CONFIRM_RESET if resetting else Action.ENROLL
        audit_as = AuditAction.TWO_FACTOR_RESET if resetting else AuditAction.TWO_FACTOR_ENABLED
        allow(w, action, actor, audit_as=audit_as)
        return CodeAttempt(
            user=actor.user,
            account=actor.account,
            audit_as=audit_as,
            against=Against.PENDING,
            counters=code_counters(context.settings, actor.user.id, None),
            new_codes=True,
        )

    def apply(w: Work, attempt: CodeAttempt, passed: Passed) -> BackupCodes:
        w.tx.put_user(passed.user)
        resetting = attempt.audit_as is AuditAction.TWO_FACTOR_RESET
        if resetting:
            w.tx.delete_devices_of(passed.user.id)
        # Kept under the user's new generation (R97), with the code just passed (R99).
        record = replace(
            records[-1], user_generation=passed.user.session_generation, second_factor_at=w.now
        )
        w.tx.put_session(record)
        _audit_own(w, attempt.audit_as, passed.user, reason="new_device" if resetting else None)
        assert passed.new_codes is not None  # a confirmed enrolment always has new codes
        return passed.new_codes.shown

    return present_code(context, code, load, apply)


def disable_two_factor(context: Context, session: object, code: object) -> None:
    """R31/R32: turn one's own 2FA off with a current code, when the account allows it."""

    def apply(w: Work, _: CodeAttempt, passed: Passed) -> None:
        w.tx.put_user(passed.user.without_two_factor(end_sessions=False))
        w.tx.delete_security_keys_of(passed.user.id)  # R107: 2FA is off, keys included
        w.tx.delete_devices_of(passed.user.id)  # R98
        _audit_own(w, AuditAction.TWO_FACTOR_DISABLED, passed.user)

    load = _with_code(context, session, Action.DISABLE, AuditAction.TWO_FACTOR_DISABLED)
    present_code(context, code, load, apply)


def begin_reset(context: Context, session: object, code: object) -> Enrollment:
    """R40: moving to a new phone when 2FA is required; the old one works until confirmed."""

    def apply(w: Work, _: CodeAttempt, passed: Passed) -> Enrollment:
        user, enrollment = new_enrollment(context, w, passed.user)
        w.tx.put_user(user)
        _audit_own(w, AuditAction.RESET_STARTED, user)
        return enrollment

    load = _with_code(context, session, Action.RESET_SELF, AuditAction.RESET_STARTED)
    return present_code(context, code, load, apply)


def regenerate_backup_codes(context: Context, session: object, code: object) -> BackupCodes:
    """R5: replace every backup code with a fresh set, shown once."""

    def apply(w: Work, _: CodeAttempt, passed: Passed) -> BackupCodes:
        assert passed.new_codes is not None  # asked for by the attempt
        w.tx.put_user(passed.user.with_backup_codes(passed.new_codes.stored))
        _audit_own(w, AuditAction.BACKUP_CODES_REGENERATED, passed.user)
        return passed.new_codes.shown

    load = _with_code(
        context,
        session,
        Action.REGENERATE_BACKUP_CODES,
        AuditAction.BACKUP_CODES_REGENERATED,
        new_codes=True,
    )
    return present_code(context, code, load, apply)


def step_up(context: Context, session: object, code: object) -> Session:
    """R99: a code passed again in this session, for the sensitive actions that follow."""
    records: list[SessionRecord] = []  # the session, as each transaction loaded it

    def load(w: Work) -> CodeAttempt:
        actor = authenticate(w, context.settings, session)
        allow(w, Action.STEP_UP, actor, audit_as=AuditAction.STEP_UP)
        records.append(actor.record)
        return CodeAttempt(
            user=actor.user,
            account=actor.account,
            audit_as=AuditAction.STEP_UP,
            against=Against.CONFIRMED,
            counters=code_counters(context.settings, actor.user.id, None),
        )

    def apply(w: Work, attempt: CodeAttempt, passed: Passed) -> Session:
        w.tx.put_user(passed.user)
        record = replace(records[-1], second_factor_at=w.now)
        w.tx.put_session(record)
        _audit_own(w, AuditAction.STEP_UP, passed.user, reason=passed.how)
        return session_value(session_token(session), record, passed.user, attempt.account)

    return present_code(context, code, load, apply)


def _with_code(
    context: Context,
    session: object,
    action: Action,
    audit_as: AuditAction,
    *,
    new_codes: bool = False,
) -> Callable[[Work], CodeAttempt]:
    """An action taken with a code of one's confirmed 2FA, once the policy allows it."""

    def load(w: Work) -> CodeAttempt:
        actor = authenticate(w, context.settings, session)
        allow(w, action, actor, audit_as=audit_as)
        return CodeAttempt(
            user=actor.user,
            account=actor.account,
            audit_as=audit_as,
            against=Against.CONFIRMED,
            counters=code_counters(context.settings, actor.user.id, None),
            new_codes=new_codes,
        )

    return load


def _audit_own(w: Work, action: AuditAction, user: User, *, reason: str | None = None) -> None:
    """A user acted on their own 2FA."""
    w.audit(
        action,
        Outcome.SUCCESS,
        account_id=user.account_id,
        actor_id=user.id,
        target_id=user.id,
        reason=reason,
    )
