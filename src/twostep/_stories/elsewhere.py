"""Users from elsewhere (R90-R94): imported with their host's hash, or with none.

A user imported with a hash made by another system logs in with the password they
already have; the first login replaces the hash with twostep's own (R92). A user
imported without one never logs in through :func:`~twostep._stories.login.login`: their
host checks step 1 itself and asks for the second step alone (R93), which continues
exactly as a login after a right password does (``_after_password``), so that the
account's requirement, enrolment, throttling and sessions are the login's own (R94).

The façade loads this module on first use, not at ``import twostep`` (bench/: import_time).
"""

from __future__ import annotations

from .. import _validate as check
from .._audit import AuditAction, Outcome
from .._domain import User
from .._errors import InvalidCredentials, InvalidInput, NotAllowed, UnknownUser
from .._passwords import NO_PASSWORD
from .._results import LoginStep
from .._throttling import blocked, code_counters
from .._unit_of_work import Context, KeepAndRaise, Work
from .administration import _new_id, add_user
from .login import _after_password

__all__ = ["begin_second_step", "import_user"]


def import_user(
    context: Context,
    account_id: object,
    email: object,
    role: object,
    password_hash: object,
    user_id: object,
) -> User:
    """R90: a user of an account with a hash made elsewhere, or none (R93); an operator's."""
    account_id = check.identifier(account_id, "account_id")
    address = check.email(email)
    user_role = check.role(role)
    new_id = _new_id() if user_id is None else check.identifier(user_id, "user_id")
    if password_hash is None:
        stored, how = NO_PASSWORD, "without_password"
    else:
        from .._foreign_hashes import normalize

        stored, how = normalize(password_hash), "imported_hash"
    with context.work() as w:
        if w.tx.get_user(new_id) is not None:
            msg = "a user with this id already exists"
            raise InvalidInput(msg, reason="user_id_taken")
        return add_user(w, new_id, account_id, address, user_role, stored, reason=how)


def begin_second_step(context: Context, user_id: object, client: object) -> LoginStep:
    """R93/R94: the host has checked step 1 of a user without a twostep password."""
    user_id = check.identifier(user_id, "user_id")
    client_key = check.client(client)
    with context.work() as w:
        user = w.tx.get_user(user_id)
        if user is None:
            _refused(w, None, user_id, Outcome.FAILURE, "unknown_user")
            msg = "no user has this id"
            raise KeepAndRaise(UnknownUser(msg))
        if not user.active:
            _refused(w, user, user_id, Outcome.FAILURE, "invalid_credentials")
            msg = "this user cannot log in"
            raise KeepAndRaise(InvalidCredentials(msg))
        if user.password_hash != NO_PASSWORD:
            _refused(w, user, user_id, Outcome.DENIED, "has_password")
            msg = "this user has a twostep password: they log in with login()"
            raise KeepAndRaise(NotAllowed(msg, reason="has_password", rule="R93"))
        throttled = blocked(w, code_counters(context.settings, user.id, client_key))
        if throttled is not None:
            _refused(w, user, user_id, Outcome.THROTTLED, throttled.scope)
            raise KeepAndRaise(throttled)
        account = w.tx.get_account(user.account_id)
        assert account is not None  # users reference their account
        w.audit(
            AuditAction.SECOND_STEP_BEGUN,
            Outcome.SUCCESS,
            account_id=account.id,
            actor_id=user.id,
        )
        return _after_password(context, w, user, account)


def _refused(w: Work, user: User | None, user_id: str, outcome: Outcome, reason: str) -> None:
    w.audit(
        AuditAction.SECOND_STEP_BEGUN,
        outcome,
        account_id=user.account_id if user is not None else None,
        actor_id=user.id if user is not None else None,
        target_id=user_id,
        actor="user" if user is not None else "anonymous",
        reason=reason,
    )
