"""Resetting 2FA (R40-R42): the rules' tests, through the public API, on every store."""

from __future__ import annotations

import pytest

import twostep as ts
from twostep.testing import Phone

from ..conftest import PASSWORD, World, ask_code
from .helpers import enrolled_session, require_2fa, stored_user


def test_r40_reset_for_yourself_only_when_the_account_requires_2fa(world: World) -> None:
    session = enrolled_session(world, world.member)
    with pytest.raises(ts.NotAllowed) as refused:
        world.service.begin_reset(session, world.fresh_code(world.member.id))
    assert (refused.value.reason, refused.value.rule) == (
        "account_does_not_require_two_factor",
        "R40",
    )
    assert world.service.two_factor_status(session).enrollment_pending is False


def test_r40_moving_to_a_new_phone(world: World) -> None:
    require_2fa(world)
    session = world.login(world.member)
    old_phone = world.phones[world.member.id]
    old_codes = world.backup_codes[world.member.id]

    with pytest.raises(ts.InvalidCode):
        world.service.begin_reset(session, "000000")
    enrollment = world.service.begin_reset(session, world.fresh_code(world.member.id))
    new_phone = Phone(enrollment.secret, world.clock)
    assert enrollment.secret != ""

    # Until the new phone is confirmed, the old one logs in and the new one does not.
    world.clock.advance(30)
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode):
        world.service.complete_login(step, new_phone.code())
    world.service.complete_login(step, old_phone.code())

    world.clock.advance(30)
    new_codes = world.service.confirm_enrollment(session, new_phone.code())
    assert len(new_codes) == 10
    assert not set(new_codes) & set(old_codes)

    world.clock.advance(30)
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode):
        world.service.complete_login(step, old_phone.code())
    with pytest.raises(ts.InvalidCode):
        world.service.complete_login(step, old_codes[1])
    world.service.complete_login(step, new_phone.code())
    step = ask_code(world.service, world.member.email)
    world.service.complete_login(step, new_codes.codes[0])
    assert world.service.two_factor_status(session).backup_codes_remaining == 9


def test_r41_an_owner_resets_another_owner(world: World, store: ts.Store) -> None:
    require_2fa(world)
    other = world.service.create_user(world.account.id, "owner2@acme.test", PASSWORD, ts.Role.OWNER)
    other_session = world.login(other)
    owner = world.login(world.owner)

    world.service.reset_two_factor(owner, other.id)

    with pytest.raises(ts.SessionInvalid):
        world.service.check_session(other_session)
    world.service.check_session(owner)  # the acting owner stays in
    user = stored_user(store, other.id)
    assert user.two_factor.enabled is False
    assert user.two_factor.secret is None
    assert user.backup_codes is None
    overview = world.service.two_factor_overview(owner)
    assert {u.user_id: u.two_factor_enabled for u in overview.users}[other.id] is False
    # Set up again at the next login, as the account requires it.
    assert isinstance(world.service.login(other.email, PASSWORD), ts.EnrollmentRequired)


def test_r41_without_the_requirement_the_reset_user_logs_in_with_password(world: World) -> None:
    member = enrolled_session(world, world.member)
    other_tab = world.login(world.member)
    owner = world.login(world.owner)
    world.service.reset_two_factor(owner, world.member.id)
    for session in (member, other_tab):  # R41 (ours): the user's sessions end
        with pytest.raises(ts.SessionInvalid) as ended:
            world.service.check_session(session)
        assert ended.value.reason == "revoked"
    world.service.check_session(owner)
    step = world.service.login(world.member.email, PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    assert step.session.two_factor_enabled is False


@pytest.mark.parametrize("role", ["manager", "member"])
def test_r41_managers_and_members_cannot_reset_others(world: World, role: str) -> None:
    target = world.member if role == "manager" else world.manager
    target_session = enrolled_session(world, target)
    session = world.login(getattr(world, role))
    with pytest.raises(ts.NotAllowed) as refused:
        world.service.reset_two_factor(session, target.id)
    assert (refused.value.reason, refused.value.rule) == ("owner_only", "R41")
    world.service.check_session(target_session)
    assert world.service.two_factor_status(target_session).enabled is True


def test_r41_an_owner_cannot_reset_themself_nor_users_of_other_accounts(world: World) -> None:
    owner = enrolled_session(world, world.owner)
    with pytest.raises(ts.NotAllowed) as self_reset:
        world.service.reset_two_factor(owner, world.owner.id)
    assert (self_reset.value.reason, self_reset.value.rule) == ("target_is_self", "R41")
    elsewhere = world.service.create_account("Elsewhere")
    stranger = world.service.create_user(elsewhere.id, "x@elsewhere.test", PASSWORD)
    with pytest.raises(ts.UnknownUser):
        world.service.reset_two_factor(owner, stranger.id)
    assert world.service.two_factor_status(owner).enabled is True


def test_r42_the_operator_resets_a_sole_owner(world: World) -> None:
    require_2fa(world)
    locked_out = world.login(world.owner)
    world.phones.pop(world.owner.id)  # the phone and the backup codes are lost
    world.backup_codes.pop(world.owner.id)

    user = world.service.operator_reset_two_factor(world.owner.email.upper())
    assert user.id == world.owner.id
    assert user.two_factor.enabled is False
    with pytest.raises(ts.SessionInvalid) as ended:
        world.service.check_session(locked_out)
    assert ended.value.reason == "revoked"

    session = world.login(world.owner)  # enrols again, inside the login (R3)
    assert world.owner.id in world.phones
    events = world.service.audit_trail(session)
    resets = [e for e in events if e.action == "two_factor_reset"]
    assert len(resets) == 1
    assert resets[0].actor == "operator"
    assert resets[0].actor_id is None
    assert resets[0].target_id == world.owner.id
    assert resets[0].outcome is ts.Outcome.SUCCESS


def test_r42_the_operator_reset_needs_a_known_email(world: World) -> None:
    with pytest.raises(ts.UnknownUser):
        world.service.operator_reset_two_factor("nobody@acme.test")
