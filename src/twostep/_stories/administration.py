"""Administration (R20-R22, R41, R42, R50, R60): the requirement, resets, what admins see.

And the operator's stories: accounts and users created, a sole owner reset out of band.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .. import _validate as check
from .._audit import AuditAction, AuditEvent, Outcome
from .._domain import Account, RequiredOf, Role, User, email_key
from .._errors import InvalidInput, UnknownAccount, UnknownUser
from .._policy import Action
from .._results import AccountOverview
from .._sessions import authenticate
from .._unit_of_work import Context, KeepAndRaise, Work
from ._shared import allow, user_overview

if TYPE_CHECKING:
    from .._audit_pages import AuditPage, AuditQuery

__all__ = [
    "audit_page",
    "audit_query",
    "audit_trail",
    "create_account",
    "create_user",
    "operator_reset_two_factor",
    "reset_two_factor",
    "set_two_factor_required",
    "two_factor_overview",
]


def set_two_factor_required(
    context: Context,
    session: object,
    required: bool,
    of: object = RequiredOf.EVERYONE,
    grace_period: object = None,
) -> None:
    """R20-R22, R95, R96: owners set the requirement: on for whom, with what grace, or off."""
    required = check.flag(required, "required")
    covered = check.required_of(of)
    grace = _grace_period(grace_period, context.settings.max_grace_period)
    action, audit_as = (
        (Action.REQUIRE_TWO_FACTOR, AuditAction.TWO_FACTOR_REQUIRED)
        if required
        else (Action.ALLOW_WITHOUT_TWO_FACTOR, AuditAction.TWO_FACTOR_OPTIONAL)
    )
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        allow(w, action, actor, audit_as=audit_as)
        before = actor.account
        account = before.with_requirement(required, w.now, of=covered, grace_period=grace)
        if account == before:
            return
        w.tx.put_account(account)
        w.audit(
            audit_as,
            Outcome.SUCCESS,
            account_id=account.id,
            actor_id=actor.user.id,
            reason=_requirement_change(before, account),
        )


def _grace_period(value: object, longest: timedelta) -> timedelta | None:
    """R95: no grace period (``None`` or zero), or one of at most ``longest``."""
    if value is None:
        return None
    if not isinstance(value, timedelta) or not timedelta(0) <= value <= longest:
        msg = f"grace_period must be None or a timedelta from 0 to {longest}"
        raise InvalidInput(msg, reason="invalid_grace_period")
    return value or None


def _requirement_change(before: Account, after: Account) -> str | None:
    """The audit reason of a change of the requirement: whose sessions it ended, if any."""
    if not after.two_factor_required:
        return None
    if not before.two_factor_required:
        everyone = after.required_of is RequiredOf.EVERYONE
        return "all_sessions_ended" if everyone else "admin_sessions_ended"
    if after.members_generation != before.members_generation:
        return "member_sessions_ended"
    if after.required_of is not before.required_of:
        return "admins_only"
    return "grace_period_changed"


def reset_two_factor(context: Context, session: object, user_id: str) -> None:
    """R41: an owner removes another user's 2FA, secret and backup codes; sessions end."""
    user_id = check.identifier(user_id, "user_id")
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        target = w.tx.get_user(user_id)
        if target is None or target.account_id != actor.account.id:
            # R73: recorded in the actor's trail, whether the id is unknown or another
            # account's; the error is the same for both.
            w.audit(
                AuditAction.TWO_FACTOR_RESET,
                Outcome.FAILURE,
                account_id=actor.account.id,
                actor_id=actor.user.id,
                target_id=user_id,
                reason="unknown_user",
            )
            msg = "no such user in this account"
            raise KeepAndRaise(UnknownUser(msg))
        allow(w, Action.RESET_OTHER, actor, audit_as=AuditAction.TWO_FACTOR_RESET, target=target)
        w.tx.put_user(target.without_two_factor(end_sessions=True))
        w.tx.delete_security_keys_of(target.id)  # R107
        w.audit(
            AuditAction.TWO_FACTOR_RESET,
            Outcome.SUCCESS,
            account_id=actor.account.id,
            actor_id=actor.user.id,
            target_id=target.id,
            reason="by_owner",
        )


def operator_reset_two_factor(context: Context, email: str) -> User:
    """R42: the installation's operator resets a user out of band (e.g. a sole owner)."""
    address = check.email(email)
    with context.work() as w:
        target = w.tx.find_user_by_email(email_key(address))
        if target is None:
            msg = "no user has this email"
            raise UnknownUser(msg)
        target = target.without_two_factor(end_sessions=True)
        w.tx.put_user(target)
        w.tx.delete_security_keys_of(target.id)  # R107
        w.audit(
            AuditAction.TWO_FACTOR_RESET,
            Outcome.SUCCESS,
            account_id=target.account_id,
            actor_id=None,
            target_id=target.id,
            actor="operator",
            reason="out_of_band",
        )
        return target


def two_factor_overview(context: Context, session: object) -> AccountOverview:
    """R50: owners and managers see which users have 2FA on."""
    with context.work() as w:  # a refusal is recorded, so this one may write
        actor = authenticate(w, context.settings, session)
        allow(w, Action.VIEW_OVERVIEW, actor, audit_as=AuditAction.OVERVIEW_VIEWED)
        account = actor.account
        users = tuple(user_overview(u, account) for u in w.tx.users_of(account.id))
        return AccountOverview(
            account.id,
            account.name,
            account.two_factor_required,
            users,
            required_of=account.required_of,
            grace_period=account.grace_period,
        )


def audit_trail(context: Context, session: object, limit: int) -> list[AuditEvent]:
    """R60: the account's audit events, newest first, for owners and managers."""
    return list(audit_page(context, session, limit).events)


def audit_page(
    context: Context,
    session: object,
    limit: object,
    cursor: object = None,
    *,
    action: object = None,
    user_id: object = None,
    outcome: object = None,
    since: object = None,
    until: object = None,
) -> AuditPage:
    """R50, R60, R76: a page of the account's events, newest first, for owners and managers.

    One event more than the page is read: whether there is one decides the next cursor,
    so that the last page has none.
    """
    from .._audit_pages import AuditPage, cursor_at  # only here: see _audit_pages

    query = audit_query(limit, cursor, action, user_id, outcome, since, until)
    with context.work() as w:  # a refusal is recorded, so this one may write
        actor = authenticate(w, context.settings, session)
        allow(w, Action.VIEW_AUDIT, actor, audit_as=AuditAction.AUDIT_TRAIL_VIEWED)
        found = w.tx.audit_page(actor.account.id, query._replace(limit=query.limit + 1))
    page = found[: query.limit]
    more = len(found) > query.limit
    return AuditPage(tuple(e for _, e in page), cursor_at(page[-1][0]) if more else None)


def audit_query(
    limit: object,
    cursor: object,
    action: object,
    user_id: object,
    outcome: object,
    since: object,
    until: object,
) -> AuditQuery:
    """The store's query for a page of the trail; :class:`InvalidInput` for a bad value (R61)."""
    from .._audit_pages import AuditQuery, position_of  # only here: see _audit_pages

    page_size = check.count(limit, "limit")
    before = None
    if cursor is not None:
        before = position_of(cursor) if isinstance(cursor, str) else None
        if before is None:
            msg = "cursor must be the next_cursor of a page of the audit trail"
            raise InvalidInput(msg, reason="invalid_cursor")
    user = None if user_id is None else check.identifier(user_id, "user_id")
    start, end = _moment(since, "since"), _moment(until, "until")
    if start is not None and end is not None and start > end:
        msg = "since must not be after until"
        raise InvalidInput(msg, reason="invalid_time_range")
    return AuditQuery(
        page_size,
        before,
        _member(AuditAction, action, "action"),
        user,
        _member(Outcome, outcome, "outcome"),
        start,
        end,
    )


def _member(kind: type[AuditAction | Outcome], value: object, what: str) -> str | None:
    """The value of a member of ``kind``, given as the member or as its string; or ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        for member in kind:
            if member.value == value:
                return member.value
    msg = f"{what} must be one of {', '.join(m.value for m in kind)}"
    raise InvalidInput(msg, reason=f"invalid_{what}")


def _moment(value: object, what: str) -> datetime | None:
    """A time bound: an aware datetime (a naive one names no instant), or ``None``."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        msg = f"{what} must be a datetime with a time zone"
        raise InvalidInput(msg, reason=f"invalid_{what}")
    return value


def _new_id() -> str:
    import uuid  # only here: importing it slows down `import twostep`

    return uuid.uuid4().hex


def create_account(context: Context, name: str) -> Account:
    """A new account (organisation), with no users yet; an operator's action."""
    name = check.text(name, "name", check.MAX_NAME)
    with context.work() as w:
        account = Account(id=_new_id(), name=name, created_at=w.now)
        w.tx.put_account(account)
        w.audit(
            AuditAction.ACCOUNT_CREATED,
            Outcome.SUCCESS,
            account_id=account.id,
            actor_id=None,
            actor="operator",
        )
        return account


def create_user(
    context: Context, account_id: str, email: str, password: str, role: Role | str
) -> User:
    """A new user of an account, the password hashed outside any lock; an operator's action."""
    account_id = check.identifier(account_id, "account_id")
    address = check.email(email)
    check.password(password, context.settings, new=True)
    user_role = check.role(role)
    password_hash = context.passwords.hash(password)
    with context.work() as w:
        return add_user(w, _new_id(), account_id, address, user_role, password_hash)


def add_user(
    w: Work,
    user_id: str,
    account_id: str,
    address: str,
    role: Role,
    password_hash: str,
    *,
    reason: str | None = None,
) -> User:
    """Store a new user of an existing account, audited as an operator's action."""
    if w.tx.get_account(account_id) is None:
        msg = "no such account"
        raise UnknownAccount(msg)
    user = User(
        id=user_id,
        account_id=account_id,
        email=address,
        role=role,
        password_hash=password_hash,
        created_at=w.now,
    )
    w.tx.add_user(user)
    w.audit(
        AuditAction.USER_CREATED,
        Outcome.SUCCESS,
        account_id=account_id,
        actor_id=None,
        target_id=user.id,
        actor="operator",
        reason=reason,
    )
    return user
