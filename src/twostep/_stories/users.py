"""The users' life (R80-R84): roles, deactivation, deletion, and the list of users.

Every change is an owner's (R80-R82), asked of the policy, made in one unit of work and
audited under the action named after its success; a refusal is audited under the same
action. An account always keeps an active owner: the changes that could take away the
last one lock the account first (on PostgreSQL, the row of the account), so that two of
them at once cannot each see the other's owner.

The façade loads this module on first use, not at ``import twostep`` (bench/: import_time).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .. import _validate as check
from .._audit import AuditAction, Outcome
from .._domain import Role, User
from .._errors import InvalidInput, NotAllowed, UnknownUser
from .._policy import Action
from .._sessions import Actor, authenticate
from .._unit_of_work import Context, KeepAndRaise, Work
from ._shared import allow, user_overview

if TYPE_CHECKING:
    from .._user_pages import UserPage

__all__ = ["delete_user", "list_users", "reactivate_user", "set_active", "set_role"]

# From most to least power: a move down the list is a demotion (R80).
_RANK = {Role.OWNER: 0, Role.MANAGER: 1, Role.MEMBER: 2}


def set_role(context: Context, session: object, user_id: object, role: object) -> None:
    """R80: an owner changes a user's role; a demotion ends the user's sessions."""
    user_id = check.identifier(user_id, "user_id")
    new_role = check.role(role)
    audit_as = AuditAction.ROLE_CHANGED
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        target = _target(w, actor, user_id, audit_as)
        allow(w, Action.SET_ROLE, actor, audit_as=audit_as, target=target)
        if new_role == target.role:
            return
        changed = replace(target, role=new_role)
        demoted = _RANK[new_role] > _RANK[target.role]
        # R96: a promotion that brings the user under the requirement ends their
        # sessions, as turning the requirement on would have.
        covered = actor.account.covers(changed) and not actor.account.covers(target)
        if target.role is Role.OWNER:
            _keep_an_owner(w, actor, target, audit_as, "R80")
        if demoted or covered:
            changed = replace(changed, session_generation=target.session_generation + 1)
        w.tx.put_user(changed)
        w.audit(
            audit_as,
            Outcome.SUCCESS,
            account_id=actor.account.id,
            actor_id=actor.user.id,
            target_id=target.id,
            reason=f"{target.role.value}_to_{new_role.value}",
        )


def set_active(context: Context, session: object, user_id: object, active: bool) -> None:
    """R81: an owner deactivates another user (ending their sessions) or reactivates them."""
    user_id = check.identifier(user_id, "user_id")
    action, audit_as = (
        (Action.REACTIVATE_USER, AuditAction.USER_REACTIVATED)
        if active
        else (Action.DEACTIVATE_USER, AuditAction.USER_DEACTIVATED)
    )
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        target = _target(w, actor, user_id, audit_as)
        allow(w, action, actor, audit_as=audit_as, target=target)
        if target.active == active:
            return
        if not active and target.role is Role.OWNER:
            _keep_an_owner(w, actor, target, audit_as, "R81")
        generation = target.session_generation + (0 if active else 1)
        w.tx.put_user(replace(target, active=active, session_generation=generation))
        if not active:
            w.tx.delete_challenges_of(target.id)  # a login under way ends too (R81)
        w.audit(
            audit_as,
            Outcome.SUCCESS,
            account_id=actor.account.id,
            actor_id=actor.user.id,
            target_id=target.id,
        )


def reactivate_user(context: Context, session: object, user_id: object) -> None:
    """R81: an owner lets a deactivated user log in again."""
    set_active(context, session, user_id, active=True)


def delete_user(context: Context, session: object, user_id: object) -> None:
    """R82: an owner deletes another user; the email is free, the audit trail stays."""
    user_id = check.identifier(user_id, "user_id")
    audit_as = AuditAction.USER_DELETED
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        target = _target(w, actor, user_id, audit_as)
        allow(w, Action.DELETE_USER, actor, audit_as=audit_as, target=target)
        if target.role is Role.OWNER:
            _keep_an_owner(w, actor, target, audit_as, "R82")
        w.tx.delete_user(target.id)
        w.audit(
            audit_as,
            Outcome.SUCCESS,
            account_id=actor.account.id,
            actor_id=actor.user.id,
            target_id=target.id,
            reason=target.email,  # R82: who it was; an email is no secret (R60)
        )


def list_users(
    context: Context,
    session: object,
    limit: object,
    cursor: object = None,
    *,
    role: object = None,
    two_factor: object = None,
    active: object = None,
) -> UserPage:
    """R83: a page of the account's users, oldest first, filtered, for owners and managers.

    One user more than the page is read: whether there is one decides the next cursor.
    """
    from .._user_pages import UserPage, UserQuery, cursor_after, position_of  # first use

    page_size = check.count(limit, "limit")
    after = None
    if cursor is not None:
        after = position_of(cursor) if isinstance(cursor, str) else None
        if after is None:
            msg = "cursor must be the next_cursor of a page of users"
            raise InvalidInput(msg, reason="invalid_cursor")
    query = UserQuery(
        page_size + 1,
        after,
        None if role is None else check.role(role).value,
        None if two_factor is None else check.flag(two_factor, "two_factor"),
        None if active is None else check.flag(active, "active"),
    )
    with context.work() as w:  # a refusal is recorded, so this one may write
        actor = authenticate(w, context.settings, session)
        allow(w, Action.LIST_USERS, actor, audit_as=AuditAction.USERS_LISTED)
        found = w.tx.users_in(actor.account.id, query)
    page = found[:page_size]
    last = page[-1] if len(found) > page_size else None
    return UserPage(
        tuple(user_overview(u, actor.account) for u in page),
        None if last is None else cursor_after(last.created_at, last.id),
    )


def _target(w: Work, actor: Actor, user_id: str, audit_as: AuditAction) -> User:
    """The user of the actor's account named ``user_id``; else an audited ``UnknownUser`` (R84)."""
    target = w.tx.get_user(user_id)
    if target is None or target.account_id != actor.account.id:
        # As R73: recorded in the actor's trail; the same error for unknown and foreign.
        w.audit(
            audit_as,
            Outcome.FAILURE,
            account_id=actor.account.id,
            actor_id=actor.user.id,
            target_id=user_id,
            reason="unknown_user",
        )
        msg = "no such user in this account"
        raise KeepAndRaise(UnknownUser(msg))
    return target


def _keep_an_owner(w: Work, actor: Actor, target: User, audit_as: AuditAction, rule: str) -> None:
    """Refuse a change that would leave the account without an active owner (R80-R82).

    The account is written back unchanged first: on PostgreSQL that locks its row, so
    two such changes run one after the other and the second counts what the first did.
    """
    from .._user_pages import UserQuery  # first use

    w.tx.put_account(actor.account)
    owners = w.tx.users_in(actor.account.id, UserQuery(2, role=Role.OWNER.value, active=True))
    if any(o.id != target.id for o in owners):
        return
    w.audit(
        audit_as,
        Outcome.DENIED,
        account_id=actor.account.id,
        actor_id=actor.user.id,
        target_id=target.id,
        reason="last_owner",
    )
    msg = "the account must keep an active owner"
    raise KeepAndRaise(NotAllowed(msg, reason="last_owner", rule=rule))
