"""The policy, exhaustively: every action x role x account requirement x 2FA state x target.

The expectation below is written from shared/spec/rules.md, independently of the
table in twostep/_policy.py, and the two are compared case by case.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

import twostep as ts
from twostep._domain import TwoFactorState
from twostep._policy import enforce

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ON = TwoFactorState(secret="sealed", last_step=1, enabled_at=NOW)
OFF = TwoFactorState()
TARGETS = ["none", "self", "other", "other_owner", "other_account"]


@dataclass(frozen=True)
class Expected:
    allowed: bool
    rule: str  # the rule number the decision must cite
    reasons: frozenset[str] = frozenset()  # any of them may be given when refused


def expected(
    action: ts.Action, role: ts.Role, required: bool, has_2fa: bool, target: str
) -> Expected:
    """What rules.md says, one action at a time."""
    is_owner = role is ts.Role.OWNER
    is_admin = role in (ts.Role.OWNER, ts.Role.MANAGER)
    failed: set[str] = set()

    def result(rule: str) -> Expected:
        return Expected(not failed, rule, frozenset(failed))

    if action is ts.Action.ENROLL:  # R30 (and R3 inside the login): anyone without 2FA
        if has_2fa:
            failed.add("two_factor_already_on")
        return result("R30")
    if action is ts.Action.DISABLE:  # R31: only when not required, with 2FA; R32
        if required:
            failed.add("account_requires_two_factor")
        if not has_2fa:
            failed.add("two_factor_off")
        return result("R31")
    if action is ts.Action.RESET_SELF:  # R40: only when required, for a user with 2FA
        if not required:
            failed.add("account_does_not_require_two_factor")
        if not has_2fa:
            failed.add("two_factor_off")
        return result("R40")
    if action is ts.Action.CONFIRM_RESET:  # R40: confirming a new phone needs 2FA on
        if not has_2fa:
            failed.add("two_factor_off")
        return result("R40")
    if action is ts.Action.REGENERATE_BACKUP_CODES:  # R5: anyone with 2FA
        if not has_2fa:
            failed.add("two_factor_off")
        return result("R5")
    if action is ts.Action.STEP_UP:  # R99: anyone with 2FA passes a code again
        if not has_2fa:
            failed.add("two_factor_off")
        return result("R99")
    if action is ts.Action.REQUIRE_TWO_FACTOR:  # R20: owners alone
        if not is_owner:
            failed.add("owner_only")
        return result("R20")
    if action is ts.Action.ALLOW_WITHOUT_TWO_FACTOR:  # R22: owners alone
        if not is_owner:
            failed.add("owner_only")
        return result("R22")
    if action is ts.Action.RESET_OTHER:  # R41: an owner, to another user of the account
        if not is_owner:
            failed.add("owner_only")
        if target in ("none", "other_account"):
            failed.add("target_in_other_account")
        if target == "self":
            failed.add("target_is_self")
        return result("R41")
    if action in (ts.Action.VIEW_OVERVIEW, ts.Action.VIEW_AUDIT):  # R50: owner or manager
        if not is_admin:
            failed.add("owner_or_manager_only")
        return result("R50")
    if action is ts.Action.SET_ROLE:  # R80: an owner, to any user of the account, self too
        if not is_owner:
            failed.add("owner_only")
        if target in ("none", "other_account"):
            failed.add("target_in_other_account")
        return result("R80")
    if action in (ts.Action.DEACTIVATE_USER, ts.Action.REACTIVATE_USER, ts.Action.DELETE_USER):
        # R81, R82: an owner, to another user of the account (another owner included)
        if not is_owner:
            failed.add("owner_only")
        if target in ("none", "other_account"):
            failed.add("target_in_other_account")
        if target == "self":
            failed.add("target_is_self")
        return result("R82" if action is ts.Action.DELETE_USER else "R81")
    if action is ts.Action.SET_EMAIL:
        # R89: an owner, to another user of the account; their own email takes R88
        if not is_owner:
            failed.add("owner_only")
        if target in ("none", "other_account"):
            failed.add("target_in_other_account")
        if target == "self":
            failed.add("target_is_self")
        return result("R89")
    if action is ts.Action.LIST_USERS:  # R83: owner or manager
        if not is_admin:
            failed.add("owner_or_manager_only")
        return result("R83")
    raise AssertionError(f"no expectation for {action}")


def make_user(user_id: str, account_id: str, role: ts.Role, state: TwoFactorState) -> ts.User:
    return ts.User(
        id=user_id,
        account_id=account_id,
        email=f"{user_id}@example.test",
        role=role,
        password_hash="-",
        created_at=NOW,
        two_factor=state,
    )


CASES = list(itertools.product(ts.Action, ts.Role, [False, True], [False, True], TARGETS))


def case_id(case: tuple[ts.Action, ts.Role, bool, bool, str]) -> str:
    action, role, required, has_2fa, target = case
    return (
        f"{action.value}-{role.value}-{'required' if required else 'optional'}-"
        f"{'2fa' if has_2fa else 'no2fa'}-{target}"
    )


def setup(
    role: ts.Role, required: bool, has_2fa: bool, target: str
) -> tuple[ts.User, ts.Account, ts.User | None]:
    account = ts.Account(id="acc", name="Acme", created_at=NOW, two_factor_required=required)
    actor = make_user("actor", account.id, role, ON if has_2fa else OFF)
    targets: dict[str, ts.User | None] = {
        "none": None,
        "self": actor,
        "other": make_user("other", account.id, ts.Role.MEMBER, ON),
        "other_owner": make_user("owner2", account.id, ts.Role.OWNER, ON),
        "other_account": make_user("stranger", "elsewhere", ts.Role.MEMBER, ON),
    }
    return actor, account, targets[target]


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_r20_r50_policy_matches_the_rules(case: tuple[ts.Action, ts.Role, bool, bool, str]) -> None:
    action, role, required, has_2fa, target_kind = case
    actor, account, target = setup(role, required, has_2fa, target_kind)
    want = expected(action, role, required, has_2fa, target_kind)

    decision = ts.decide(action, actor, account, target)

    assert decision.allowed is want.allowed
    assert want.rule in decision.rule.split("/")
    if want.allowed:
        enforce(action, actor, account, target)
    else:
        assert decision.reason in want.reasons
        with pytest.raises(ts.NotAllowed) as refused:
            enforce(action, actor, account, target)
        assert refused.value.reason == decision.reason
        assert refused.value.rule == decision.rule
        assert isinstance(refused.value, ts.TwoStepError)


def test_r32_disable_under_requirement_cites_r32() -> None:
    actor, account, _ = setup(ts.Role.MEMBER, True, True, "none")
    decision = ts.decide(ts.Action.DISABLE, actor, account)
    assert not decision.allowed
    assert "R32" in decision.rule.split("/")


@pytest.mark.parametrize("action", list(ts.Action))
@pytest.mark.parametrize("role", list(ts.Role))
def test_r50_nobody_acts_in_another_account(action: ts.Action, role: ts.Role) -> None:
    account = ts.Account(id="acc", name="Acme", created_at=NOW, two_factor_required=True)
    outsider = make_user("outsider", "elsewhere", role, ON)
    target = make_user("other", account.id, ts.Role.MEMBER, ON)
    decision = ts.decide(action, outsider, account, target)
    assert not decision.allowed
    assert decision.reason == "other_account"


def test_r20_r50_every_action_has_exactly_one_rule_in_the_table() -> None:
    assert set(ts.POLICY) == set(ts.Action)
    for action, rule in ts.POLICY.items():
        assert rule.rule.startswith("R"), action
        assert rule.roles, action


def test_r20_r41_r80_r82_owner_only_actions_are_exactly_these() -> None:
    owner_only: set[ts.Action] = set()
    for action in ts.Action:
        for has_2fa, required in itertools.product([False, True], [False, True]):
            account = ts.Account(
                id="acc", name="Acme", created_at=NOW, two_factor_required=required
            )
            other = make_user("other", account.id, ts.Role.MEMBER, ON)
            for role in (ts.Role.MANAGER, ts.Role.MEMBER):
                actor = make_user("actor", account.id, role, ON if has_2fa else OFF)
                if ts.decide(action, actor, account, other).reason == "owner_only":
                    owner_only.add(action)
    assert owner_only == {
        ts.Action.REQUIRE_TWO_FACTOR,
        ts.Action.ALLOW_WITHOUT_TWO_FACTOR,
        ts.Action.RESET_OTHER,
        ts.Action.SET_ROLE,
        ts.Action.DEACTIVATE_USER,
        ts.Action.REACTIVATE_USER,
        ts.Action.DELETE_USER,
        ts.Action.SET_EMAIL,
    }
