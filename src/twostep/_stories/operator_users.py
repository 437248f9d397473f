"""The users' life (R80-R82) done by the installation's operator, out of band, as R42 is.

The ``twostep`` command line's ``list-users``, ``set-role``, ``deactivate``, ``reactivate`` and
``delete-user``: no session, a user named by email. As the owners' changes of
:mod:`twostep._stories.users`, each is one unit of work, audited (actor
``"operator"``), and none may leave an account without an active owner; as the
operator's reset (R42), the operator may act on any account.

Loaded by the command line only, not at ``import twostep`` (bench/: import_time).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from .. import _validate as check
from .._audit import AuditAction, Outcome
from .._domain import Role, User, email_key
from .._errors import NotAllowed, UnknownAccount, UnknownUser
from .._unit_of_work import Context, KeepAndRaise, Work

__all__ = ["delete_user", "list_users", "set_active", "set_role"]

#: ``list_users`` reads so many users per unit of work.
PAGE = 500

# From most to least power: a move down the list is a demotion (R80), as in _stories.users.
_RANK = {Role.OWNER: 0, Role.MANAGER: 1, Role.MEMBER: 2}


def set_role(context: Context, email: object, role: object) -> User:
    """R80 by the operator: a demotion ends the user's sessions; the user as it now is."""
    address = check.email(email)
    new_role = check.role(role)
    audit_as = AuditAction.ROLE_CHANGED
    with context.work() as w:
        target = _target(w, address)
        if new_role == target.role:
            return target
        demoted = _RANK[new_role] > _RANK[target.role]
        if target.role is Role.OWNER:
            _keep_an_owner(w, target, audit_as, "R80")
        generation = target.session_generation + 1 if demoted else target.session_generation
        changed = replace(target, role=new_role, session_generation=generation)
        w.tx.put_user(changed)
        _audit(w, audit_as, Outcome.SUCCESS, target, f"{target.role.value}_to_{new_role.value}")
        return changed


def set_active(context: Context, email: object, active: bool) -> User:
    """R81 by the operator: deactivation ends the user's sessions; the user as it now is."""
    address = check.email(email)
    audit_as = AuditAction.USER_REACTIVATED if active else AuditAction.USER_DEACTIVATED
    with context.work() as w:
        target = _target(w, address)
        if target.active == active:
            return target
        if not active and target.role is Role.OWNER:
            _keep_an_owner(w, target, audit_as, "R81")
        generation = target.session_generation + (0 if active else 1)
        changed = replace(target, active=active, session_generation=generation)
        w.tx.put_user(changed)
        _audit(w, audit_as, Outcome.SUCCESS, target, "out_of_band")
        return changed


def delete_user(context: Context, email: object) -> User:
    """R82 by the operator: the user and their secrets go, the audit trail stays."""
    address = check.email(email)
    audit_as = AuditAction.USER_DELETED
    with context.work() as w:
        target = _target(w, address)
        if target.role is Role.OWNER:
            _keep_an_owner(w, target, audit_as, "R82")
        w.tx.delete_user(target.id)
        _audit(w, audit_as, Outcome.SUCCESS, target, target.email)  # R82: who it was
        return target


def list_users(
    context: Context,
    account_id: object = None,
    *,
    role: object = None,
    two_factor: bool | None = None,
    active: bool | None = None,
) -> Iterator[User]:
    """R83 by the operator: the users of one account (oldest first) or of all (by id).

    Read page by page, each page in its own unit of work, so a long listing holds no
    transaction open; the filters are the owners' (role, 2FA on or off, active).
    """
    from .._user_pages import UserQuery  # first use

    wanted_role = None if role is None else check.role(role).value
    if account_id is None:
        after_id = ""
        while True:
            with context.work(write=False) as w:
                page = w.tx.users_page(after_id, PAGE)
            for u in page:
                if (
                    (wanted_role is None or u.role.value == wanted_role)
                    and (two_factor is None or u.has_second_factor == two_factor)
                    and (active is None or u.active == active)
                ):
                    yield u
            if len(page) < PAGE:
                return
            after_id = page[-1].id
    account = check.identifier(account_id, "account_id")
    after = None
    while True:
        with context.work(write=False) as w:
            if after is None and w.tx.get_account(account) is None:
                msg = "no such account"
                raise UnknownAccount(msg)
            page = w.tx.users_in(account, UserQuery(PAGE, after, wanted_role, two_factor, active))
        yield from page
        if len(page) < PAGE:
            return
        after = (page[-1].created_at, page[-1].id)


def _target(w: Work, address: str) -> User:
    target = w.tx.find_user_by_email(email_key(address))
    if target is None:
        msg = "no user has this email"
        raise UnknownUser(msg)
    return target


def _audit(w: Work, action: AuditAction, outcome: Outcome, target: User, reason: str) -> None:
    w.audit(
        action,
        outcome,
        account_id=target.account_id,
        actor_id=None,
        target_id=target.id,
        actor="operator",
        reason=reason,
    )


def _keep_an_owner(w: Work, target: User, audit_as: AuditAction, rule: str) -> None:
    """Refuse a change that would leave the account without an active owner (R80-R82).

    The account is written back unchanged first, as in :mod:`twostep._stories.users`:
    on PostgreSQL that locks its row against an owner's change at the same time.
    """
    from .._user_pages import UserQuery  # first use

    account = w.tx.get_account(target.account_id)
    if account is not None:
        w.tx.put_account(account)
    owners = w.tx.users_in(target.account_id, UserQuery(2, role=Role.OWNER.value, active=True))
    if any(o.id != target.id for o in owners):
        return
    _audit(w, audit_as, Outcome.DENIED, target, "last_owner")
    msg = "the account must keep an active owner"
    raise KeepAndRaise(NotAllowed(msg, reason="last_owner", rule=rule))
