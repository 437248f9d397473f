"""Changing an email (R88, R89): one's own, with the password, or another's, by an owner.

Emails are unique across the installation, case-insensitively: the store refuses a
new email another user has (``EmailTaken``). A change by the user is checked like a
password change (R85): the current password, counted and throttled as at a login, and
a code through the one path every code takes when the user has 2FA; whether the email
is taken is told only after those passed. Either change ends every session of the user.
The audit events name the user by id: neither address is recorded.

The façade loads this module on first use, not at ``import twostep`` (bench/: import_time).
"""

from __future__ import annotations

from dataclasses import replace

from .. import _validate as check
from .._audit import AuditAction, Outcome
from .._domain import User, email_key
from .._errors import EmailTaken, InvalidCredentials
from .._policy import Action
from .._results import Session
from .._sessions import authenticate, issue_session
from .._unit_of_work import Context, KeepAndRaise, Work
from ._shared import allow
from .credentials import with_own_password
from .users import _target as target_of

__all__ = ["change_email", "set_email"]

_CHANGED = AuditAction.EMAIL_CHANGED


def change_email(
    context: Context, session: object, new_email: object, password: object, code: object
) -> Session:
    """R88: a new email, with the current password (and a code with 2FA); sessions end.

    Returns the session that replaces the one given: every earlier session of the user,
    that one included, stops working.
    """
    address = check.email(new_email)
    given = check.password(password, context.settings, new=False)

    def change(w: Work, user: User, checked: User, _: str) -> Session:
        return _new_email(context, w, user, checked, address)

    return with_own_password(
        context, session, given, code, action=_CHANGED, prepare=str, change=change
    )


def _new_email(context: Context, w: Work, user: User, checked: User, address: str) -> Session:
    """Save the new email, end every session, and issue the one that replaces the actor's."""
    if user.password_hash != checked.password_hash:  # changed by another request meanwhile
        msg = "the password is wrong"
        raise InvalidCredentials(msg)
    changed = _save(w, user, user, address, "by_user")
    account = w.tx.get_account(user.account_id)
    assert account is not None  # users reference their account
    # A user with 2FA gave a code for this change, in this very transaction (R99).
    passed = w.now if changed.has_second_factor else None
    return issue_session(w, context.settings, changed, account, second_factor_at=passed)


def set_email(context: Context, session: object, user_id: object, new_email: object) -> None:
    """R89: an owner changes another user's email; the user's sessions end.

    The email they already have, in the same case, changes nothing and records nothing.
    """
    user_id = check.identifier(user_id, "user_id")
    address = check.email(new_email)
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        target = target_of(w, actor, user_id, _CHANGED)
        allow(w, Action.SET_EMAIL, actor, audit_as=_CHANGED, target=target)
        if target.email == address:
            return
        _save(w, actor.user, target, address, "by_owner")


def _save(w: Work, actor: User, target: User, address: str, reason: str) -> User:
    """Give ``target`` the email ``address``, ending their sessions; else ``EmailTaken``.

    The store refuses a taken email too (two changes at once): then the transaction
    rolls back, unaudited.
    """
    other = w.tx.find_user_by_email(email_key(address))
    if other is not None and other.id != target.id:
        _audit(w, actor, target, Outcome.FAILURE, reason="email_taken")
        msg = "another user has this email"
        raise KeepAndRaise(EmailTaken(msg))
    changed = replace(target, email=address, session_generation=target.session_generation + 1)
    w.tx.put_user(changed)
    _audit(w, actor, target, Outcome.SUCCESS, reason=reason)
    return changed


def _audit(w: Work, actor: User, target: User, outcome: Outcome, *, reason: str | None) -> None:
    w.audit(
        _CHANGED,
        outcome,
        account_id=actor.account_id,
        actor_id=actor.id,
        target_id=target.id,
        reason=reason,
    )
