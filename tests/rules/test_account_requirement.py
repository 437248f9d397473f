"""Turning 2FA on and off for the whole account (R20-R22), on every store."""

from __future__ import annotations

from dataclasses import replace

import pytest

import twostep as ts

from ..conftest import PASSWORD, World
from .helpers import enrolled_session, require_2fa


@pytest.mark.parametrize("role", ["manager", "member"])
def test_r20_only_an_owner_can_require_2fa(world: World, role: str) -> None:
    actor = getattr(world, role)
    session = world.login(actor)
    with pytest.raises(ts.NotAllowed) as refused:
        world.service.set_two_factor_required(session, True)
    assert (refused.value.reason, refused.value.rule) == ("owner_only", "R20")
    assert world.service.two_factor_status(session).required_by_account is False
    world.service.check_session(session)  # nobody was logged out

    owner = world.login(world.owner)
    world.service.set_two_factor_required(owner, True)
    step = world.service.login(actor.email, PASSWORD)
    assert isinstance(step, ts.EnrollmentRequired)


def test_r21_requiring_2fa_logs_everyone_out_and_enrolment_follows(world: World) -> None:
    owner = world.login(world.owner)
    manager = world.login(world.manager)
    member = enrolled_session(world, world.member)
    second_owner_tab = world.login(world.owner)

    world.service.set_two_factor_required(owner, True)

    for session in (owner, second_owner_tab, manager, member):
        with pytest.raises(ts.SessionInvalid) as revoked:
            world.service.check_session(session)
        assert revoked.value.reason == "revoked"
    with pytest.raises(ts.SessionInvalid):
        world.service.two_factor_status(owner)

    assert isinstance(world.service.login(world.owner.email, PASSWORD), ts.EnrollmentRequired)
    assert isinstance(world.service.login(world.manager.email, PASSWORD), ts.EnrollmentRequired)
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.CodeRequired)
    # A session issued after the enrolment works.
    fresh = world.login(world.manager)
    assert world.service.check_session(fresh).two_factor_enabled is True


def test_r21_a_session_without_2fa_cannot_act_once_required(world: World) -> None:
    owner = world.login(world.owner)
    world.service.set_two_factor_required(owner, True)
    with pytest.raises(ts.SessionInvalid):
        world.service.begin_enrollment(owner)
    with pytest.raises(ts.SessionInvalid):
        world.service.set_two_factor_required(owner, False)


def test_r21_check_session_reads_the_live_requirement(world: World, store: ts.Store) -> None:
    # Even if the flag were set without ending sessions (by hand in the database, say),
    # a session of a user without 2FA is refused while the account requires 2FA.
    member = world.login(world.member)
    enrolled = enrolled_session(world, world.manager)
    with store.transaction() as tx:
        account = tx.get_account(world.account.id)
        assert account is not None
        tx.put_account(replace(account, two_factor_required=True))
    with pytest.raises(ts.SessionInvalid) as refused:
        world.service.check_session(member)
    assert refused.value.reason == "two_factor_required"
    with pytest.raises(ts.SessionInvalid):
        world.service.begin_enrollment(member)
    assert world.service.check_session(enrolled).user_id == world.manager.id


@pytest.mark.parametrize("role", ["manager", "member"])
def test_r22_only_an_owner_can_turn_the_requirement_off(world: World, role: str) -> None:
    require_2fa(world)
    session = world.login(getattr(world, role))
    with pytest.raises(ts.NotAllowed) as refused:
        world.service.set_two_factor_required(session, False)
    assert (refused.value.reason, refused.value.rule) == ("owner_only", "R22")
    assert world.service.two_factor_status(session).required_by_account is True


def test_r22_turning_it_off_keeps_2fa_for_those_who_have_it(world: World) -> None:
    require_2fa(world)
    owner = world.login(world.owner)
    member = world.login(world.member)
    world.service.set_two_factor_required(owner, False)

    world.service.check_session(member)  # turning it off logs nobody out
    status = world.service.two_factor_status(member)
    assert (status.enabled, status.required_by_account) == (True, False)
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.CodeRequired)
    # No longer *have to*: now they may turn it off (R31) and new users log in directly.
    world.service.disable_two_factor(member, world.fresh_code(world.member.id))
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.LoggedIn)
    newcomer = world.service.create_user(world.account.id, "new@acme.test", PASSWORD)
    assert isinstance(world.service.login(newcomer.email, PASSWORD), ts.LoggedIn)
