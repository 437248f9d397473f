"""One's own password (R85-R87): changing it, and resetting a forgotten one.

A change needs the current password and, for a user with 2FA, a code (through the one
path every code takes); a reset needs a token the host delivers by email, and sets the
password only: it logs nobody in and never touches 2FA, so a user with 2FA still gives
a code at the next login (the pitfall of resets that bypass the second factor).

The façade loads this module on first use, not at ``import twostep`` (bench/: import_time).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import _validate as check
from .._audit import AuditAction, Outcome
from .._code_check import Against, CodeAttempt, Passed, present_code
from .._domain import (
    ChallengeKind,
    LoginChallenge,
    ThrottleKey,
    ThrottleScope,
    User,
    alive,
    email_key,
)
from .._errors import ChallengeExpired, InvalidCredentials, InvalidInput
from .._results import PasswordReset, Session
from .._sessions import authenticate, issue_session, new_token, token_hash
from .._throttling import (
    Counter,
    admit,
    blocked,
    code_counters,
    password_counters,
    settle,
)
from .._unit_of_work import Context, KeepAndRaise, Work

__all__ = ["begin_password_reset", "change_password", "complete_password_reset"]

_STARTED = AuditAction.PASSWORD_RESET_STARTED


def change_password(
    context: Context, session: object, current: object, new: object, code: object
) -> Session:
    """R85: a new password, with the current one (and a code with 2FA); other sessions end.

    Returns the session that replaces the one given: every earlier session of the user,
    that one included, stops working.
    """
    settings = context.settings
    given = check.password(current, settings, new=False)
    wanted = check.password(new, settings, new=True)

    def change(w: Work, user: User, checked: User, new_hash: str) -> Session:
        return _new_password(context, w, user, checked, new_hash)

    return with_own_password(
        context,
        session,
        given,
        code,
        action=AuditAction.PASSWORD_CHANGED,
        prepare=lambda: context.passwords.hash(wanted),
        change=change,
    )


def with_own_password(
    context: Context,
    session: object,
    password: str,
    code: object,
    *,
    action: AuditAction,
    prepare: Callable[[], str],
    change: Callable[[Work, User, User, str], Session],
) -> Session:
    """A change of one's own credentials: the current password, then a code with 2FA.

    The password is checked like a login's (R6, R71: counted on the email); ``prepare``
    (slow work, e.g. a new hash) runs only after a right password, outside any lock; a
    user with 2FA then gives a code through the one code path, and ``change`` runs in the
    transaction that used it, with the user as they are then and as they were checked.
    """
    settings = context.settings
    with context.work(write=False) as w:
        user = authenticate(w, settings, session).user
    if user.two_factor.enabled and code is None:
        msg = "a code from the app, or a backup code, is needed for this change"
        raise InvalidInput(msg, reason="code_required")

    with context.work() as w:
        user = authenticate(w, settings, session).user
        counters = password_counters(w, settings, user.email_key, None)
        refusal = blocked(w, counters)
        if refusal is not None:
            _audit(w, action, user, Outcome.THROTTLED, reason=refusal.scope)
            raise KeepAndRaise(refusal)
        admit(w, counters)
    ok = context.passwords.verify(user.password_hash, password)
    prepared = prepare() if ok else ""
    with context.work() as w:
        settle(w, counters, ok=ok, admitted=True)
        if not ok:
            _audit(w, action, user, Outcome.FAILURE, reason="invalid_credentials")
            msg = "the current password is wrong"
            raise KeepAndRaise(InvalidCredentials(msg))
        if not user.two_factor.enabled:
            return change(w, authenticate(w, settings, session).user, user, prepared)

    def load(w: Work) -> CodeAttempt:
        actor = authenticate(w, settings, session)
        return CodeAttempt(
            actor.user,
            actor.account,
            action,
            Against.CONFIRMED,
            code_counters(settings, actor.user.id, None),
        )

    def apply(w: Work, _: CodeAttempt, passed: Passed) -> Session:
        return change(w, passed.user, user, prepared)

    return present_code(context, code, load, apply)


def _new_password(context: Context, w: Work, user: User, checked: User, new_hash: str) -> Session:
    """Save the new hash, end every session, and issue the one that replaces the actor's."""
    if user.password_hash != checked.password_hash:  # changed by another request meanwhile
        msg = "the current password is wrong"
        raise InvalidCredentials(msg)
    user = user.with_new_password(new_hash)
    w.tx.put_user(user)
    w.tx.delete_challenges_of(user.id)  # logins under way with the old password end
    account = w.tx.get_account(user.account_id)
    assert account is not None  # users reference their account
    # A user with 2FA gave a code for this change, in this very transaction (R99).
    passed = w.now if user.has_second_factor else None
    session = issue_session(w, context.settings, user, account, second_factor_at=passed)
    _audit(w, AuditAction.PASSWORD_CHANGED, user, Outcome.SUCCESS, reason="other_sessions_ended")
    return session


def _audit(
    w: Work, action: AuditAction, user: User, outcome: Outcome, *, reason: str | None
) -> None:
    w.audit(
        action,
        outcome,
        account_id=user.account_id,
        actor_id=user.id,
        target_id=user.id,
        reason=reason,
    )


def begin_password_reset(context: Context, email: object, client: object) -> PasswordReset:
    """R86: a single-use, short-lived token for the host to deliver; the same for anyone.

    An unknown or deactivated email gets a token too, which opens nothing, after the
    same work, so that the answer says nothing about who has an account. Every request
    counts on the email's reset throttle, and on the client's if given.
    """
    key = email_key(check.login_email(email))
    client_key = check.client(client)
    settings = context.settings
    resets = ThrottleKey(ThrottleScope.PASSWORD_RESET, key)
    counters: tuple[Counter, ...] = (
        Counter(resets, settings.password_reset_throttle, cleared_by_success=False),
    )
    if client_key is not None:
        by_client = ThrottleKey(ThrottleScope.CLIENT, client_key)
        counters = (*counters, Counter(by_client, settings.client_throttle, False))
    token, hashed = new_token()
    with context.work() as w:
        user = w.tx.find_user_by_email(key)
        refusal = blocked(w, counters)
        if refusal is not None:
            _audit_reset(w, _STARTED, user, Outcome.THROTTLED, refusal.scope)
            raise KeepAndRaise(refusal)
        settle(w, counters, ok=False, admitted=False)  # each request counts
        expires = w.now + settings.password_reset_ttl
        if user is not None and user.active:
            w.tx.put_challenge(
                LoginChallenge(hashed, user.id, ChallengeKind.PASSWORD_RESET, w.now, expires)
            )
            _audit_reset(w, _STARTED, user, Outcome.SUCCESS, None)
        else:
            _audit_reset(w, _STARTED, user, Outcome.FAILURE, "unknown_email")
        return PasswordReset(token, expires)


def complete_password_reset(context: Context, token: object, new: object) -> None:
    """R86: a reset token sets a new password and ends every session; nobody is logged in.

    2FA is untouched: a user with 2FA gives a code at the next login (R1). The token
    works once.
    """
    settings = context.settings
    if (
        not isinstance(token, str)
        or not token
        or len(token) > check.MAX_TOKEN
        or not token.isascii()
    ):
        msg = "not a password reset token"
        raise ChallengeExpired(msg, reason="unknown")
    wanted = check.password(new, settings, new=True)
    new_hash = context.passwords.hash(wanted)  # before the lock; an unknown token pays too
    with context.work() as w:
        hashed = token_hash(token)
        record = w.tx.get_challenge(hashed)
        if record is None or record.kind is not ChallengeKind.PASSWORD_RESET:
            _audit_reset(w, AuditAction.PASSWORD_RESET, None, Outcome.FAILURE, "unknown")
            msg = "unknown or used password reset token"
            raise KeepAndRaise(ChallengeExpired(msg, reason="unknown"))
        user = w.tx.get_user(record.user_id)
        w.tx.delete_challenge(hashed)  # single use, whatever happens next
        if user is None or not user.active:
            _audit_reset(w, AuditAction.PASSWORD_RESET, user, Outcome.FAILURE, "unknown")
            msg = "the password reset is no longer valid"
            raise KeepAndRaise(ChallengeExpired(msg, reason="unknown"))
        lifetime = settings.password_reset_ttl
        if not alive(w.now, record.created_at, record.expires_at, lifetime):
            _audit_reset(w, AuditAction.PASSWORD_RESET, user, Outcome.FAILURE, "expired")
            msg = "the password reset expired; ask for a new one"
            raise KeepAndRaise(ChallengeExpired(msg, reason="expired"))
        w.tx.put_user(user.with_new_password(new_hash))
        w.tx.delete_challenges_of(user.id)  # logins under way and other reset tokens end
        _audit_reset(w, AuditAction.PASSWORD_RESET, user, Outcome.SUCCESS, "all_sessions_ended")


def _audit_reset(
    w: Work, action: AuditAction, user: User | None, outcome: Outcome, reason: str | None
) -> None:
    w.audit(
        action,
        outcome,
        account_id=user.account_id if user is not None else None,
        actor_id=None,
        target_id=user.id if user is not None else None,
        actor="anonymous",
        reason=reason,
    )
