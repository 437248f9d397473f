"""What several stories share: asking the policy, and starting an enrolment."""

from __future__ import annotations

from .._audit import AuditAction, Outcome
from .._codes import new_secret, seal_totp_key, secret_key
from .._domain import Account, User
from .._errors import NotAllowed, StepUpRequired
from .._policy import POLICY, Action, enforce
from .._provisioning import Enrollment, provisioning_uri
from .._results import UserOverview
from .._sessions import Actor
from .._unit_of_work import Context, KeepAndRaise, Work

__all__ = ["allow", "new_enrollment", "user_overview"]


def allow(
    w: Work, action: Action, actor: Actor, *, audit_as: AuditAction, target: User | None = None
) -> None:
    """Ask the policy (R20-R50, R99); a refusal is audited as ``audit_as`` (R60) and raised."""
    try:
        enforce(action, actor.user, actor.account, target)
        within = w.step_up_within
        if (
            POLICY[action].step_up
            and within is not None
            and actor.user.has_second_factor
            and not actor.record.fresh(w.now, within)
        ):
            msg = f"{action.value} needs a code passed in the last {within}: call step_up"
            raise StepUpRequired(msg)
    except NotAllowed as refusal:
        w.audit(
            audit_as,
            Outcome.DENIED,
            account_id=actor.account.id,
            actor_id=actor.user.id,
            target_id=target.id if target is not None else None,
            reason=refusal.reason,
        )
        raise KeepAndRaise(refusal) from None


def new_enrollment(context: Context, w: Work, user: User) -> tuple[User, Enrollment]:
    """R10/R11: a new secret parked on the user, and what the user is shown to scan."""
    settings = context.settings
    secret = new_secret(settings)
    expires = w.now + settings.enrollment_ttl
    enrollment = Enrollment(
        secret=secret,
        uri=provisioning_uri(
            secret,
            issuer=context.issuer,
            label=user.email,
            digits=settings.totp_digits,
            period=settings.totp_period,
        ),
        issuer=context.issuer,
        label=user.email,
        expires_at=expires,
    )
    sealed = seal_totp_key(context.cipher, user.id, secret_key(secret))
    return user.begin_enrollment(sealed, expires), enrollment


def user_overview(u: User, account: Account) -> UserOverview:
    """A user as administration lists them (R50, R83), with their grace deadline (R95)."""
    return UserOverview(
        user_id=u.id,
        email=u.email,
        role=u.role,
        two_factor_enabled=u.has_second_factor,
        backup_codes_remaining=u.backup_codes_remaining,
        active=u.active,
        enroll_by=account.enroll_by(u),
        security_keys=u.security_keys,
    )
