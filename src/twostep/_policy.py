"""Who may do what (R20-R50), as one table of data, answering with a reason.

The service asks :func:`decide` before every action; nothing else in ``twostep``
looks at a role.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._domain import Account, Role, User
from ._errors import NotAllowed

__all__ = ["POLICY", "Action", "Decision", "Rule", "decide", "enforce"]


class Action(enum.StrEnum):
    ENROLL = "enroll"
    CONFIRM_RESET = "confirm_reset"
    DISABLE = "disable"
    RESET_SELF = "reset_self"
    REGENERATE_BACKUP_CODES = "regenerate_backup_codes"
    STEP_UP = "step_up"
    REQUIRE_TWO_FACTOR = "require_two_factor"
    ALLOW_WITHOUT_TWO_FACTOR = "allow_without_two_factor"
    RESET_OTHER = "reset_other"
    VIEW_OVERVIEW = "view_overview"
    VIEW_AUDIT = "view_audit"
    SET_ROLE = "set_role"
    DEACTIVATE_USER = "deactivate_user"
    REACTIVATE_USER = "reactivate_user"
    DELETE_USER = "delete_user"
    LIST_USERS = "list_users"
    SET_EMAIL = "set_email"


ANYONE = frozenset(Role)
OWNERS = frozenset({Role.OWNER})
ADMINS = frozenset({Role.OWNER, Role.MANAGER})


@dataclass(frozen=True, slots=True)
class Rule:
    """The conditions under which an action is allowed.

    ``None`` means "either way". ``targets_other`` actions must name another user of
    the actor's own account; ``targets_user`` actions a user of it, the actor included.
    ``account_requires`` is whether the requirement covers the actor (R96).
    """

    rule: str
    roles: frozenset[Role]
    account_requires: bool | None = None
    actor_has_two_factor: bool | None = None
    targets_other: bool = False
    targets_user: bool = False
    #: R99: an actor with a second factor must have passed it recently in the session.
    step_up: bool = False


POLICY: dict[Action, Rule] = {
    Action.ENROLL: Rule("R30", ANYONE, actor_has_two_factor=False),
    Action.DISABLE: Rule("R31/R32", ANYONE, account_requires=False, actor_has_two_factor=True),
    Action.RESET_SELF: Rule("R40", ANYONE, account_requires=True, actor_has_two_factor=True),
    # Confirming the new phone of a reset begun under R40; it stays allowed if the owner
    # has made 2FA optional meanwhile, since the user keeps 2FA either way.
    Action.CONFIRM_RESET: Rule("R40", ANYONE, actor_has_two_factor=True),
    Action.REGENERATE_BACKUP_CODES: Rule("R5", ANYONE, actor_has_two_factor=True),
    Action.STEP_UP: Rule("R99", ANYONE, actor_has_two_factor=True),
    Action.REQUIRE_TWO_FACTOR: Rule("R20", OWNERS),
    Action.ALLOW_WITHOUT_TWO_FACTOR: Rule("R22", OWNERS),
    Action.RESET_OTHER: Rule("R41", OWNERS, targets_other=True, step_up=True),
    Action.VIEW_OVERVIEW: Rule("R50", ADMINS),
    Action.VIEW_AUDIT: Rule("R50/R60", ADMINS),
    # The users' life (R80-R84): changes are owners' alone; owners and managers list.
    # An owner may change their own role (R80: not the last active owner's), but not
    # deactivate or delete themselves (R81, R82).
    Action.SET_ROLE: Rule("R80", OWNERS, targets_user=True, step_up=True),
    Action.DEACTIVATE_USER: Rule("R81", OWNERS, targets_other=True),
    Action.REACTIVATE_USER: Rule("R81", OWNERS, targets_other=True),
    Action.DELETE_USER: Rule("R82", OWNERS, targets_other=True),
    Action.LIST_USERS: Rule("R83/R50", ADMINS),
    # An owner changes another user's email (R89); their own takes their password (R88).
    Action.SET_EMAIL: Rule("R89", OWNERS, targets_other=True, step_up=True),
}

_ROLE_REASONS = {OWNERS: "owner_only", ADMINS: "owner_or_manager_only"}


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    rule: str


def decide(action: Action, actor: User, account: Account, target: User | None = None) -> Decision:
    """May ``actor`` do ``action`` (to ``target``) in ``account``, and why (not)."""
    rule = POLICY[action]

    def no(reason: str) -> Decision:
        return Decision(False, reason, rule.rule)

    if actor.account_id != account.id:
        return no("other_account")
    if actor.role not in rule.roles:
        return no(_ROLE_REASONS.get(rule.roles, "role"))
    if rule.account_requires is True and not account.covers(actor):
        return no("account_does_not_require_two_factor")
    if rule.account_requires is False and account.covers(actor):
        return no("account_requires_two_factor")
    if rule.actor_has_two_factor is True and not actor.two_factor.enabled:
        return no("two_factor_off")
    if rule.actor_has_two_factor is False and actor.two_factor.enabled:
        return no("two_factor_already_on")
    if rule.targets_other:
        if target is None or target.account_id != account.id:
            return no("target_in_other_account")
        if target.id == actor.id:
            return no("target_is_self")
    if rule.targets_user and (target is None or target.account_id != account.id):
        return no("target_in_other_account")
    return Decision(True, "allowed", rule.rule)


def enforce(action: Action, actor: User, account: Account, target: User | None = None) -> None:
    """:func:`decide`, raising :class:`NotAllowed` with the reason on a refusal."""
    decision = decide(action, actor, account, target)
    if not decision.allowed:
        msg = f"{action.value} is not allowed: {decision.reason} ({decision.rule})"
        raise NotAllowed(
            msg,
            reason=decision.reason,
            rule=decision.rule,
        )
