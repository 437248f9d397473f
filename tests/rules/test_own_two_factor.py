"""Turning 2FA on and off for yourself (R30-R32), on every store."""

from __future__ import annotations

import pytest

import twostep as ts

from ..conftest import PASSWORD, World
from .helpers import enrolled_session, require_2fa, stored_user


@pytest.mark.parametrize("role", ["owner", "manager", "member"])
def test_r30_any_user_can_turn_2fa_on(world: World, role: str) -> None:
    user = getattr(world, role)
    session = enrolled_session(world, user)
    assert world.service.two_factor_status(session).enabled is True
    assert isinstance(world.service.login(user.email, PASSWORD), ts.CodeRequired)
    with pytest.raises(ts.NotAllowed) as again:
        world.service.begin_enrollment(session)
    assert (again.value.reason, again.value.rule) == ("two_factor_already_on", "R30")


def test_r31_turning_2fa_off_needs_a_current_code(world: World, store: ts.Store) -> None:
    session = enrolled_session(world, world.member)
    with pytest.raises(ts.InvalidCode):
        world.service.disable_two_factor(session, "123456")
    assert world.service.two_factor_status(session).enabled is True

    world.service.disable_two_factor(session, world.fresh_code(world.member.id))
    status = world.service.two_factor_status(session)
    assert (status.enabled, status.backup_codes_remaining) == (False, 0)
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.LoggedIn)
    user = stored_user(store, world.member.id)
    assert user.two_factor.secret is None
    assert user.backup_codes is None


def test_r31_a_backup_code_also_turns_2fa_off(world: World) -> None:
    session = enrolled_session(world, world.member)
    world.service.disable_two_factor(session, world.backup_codes[world.member.id][9])
    assert world.service.two_factor_status(session).enabled is False


def test_r32_no_turning_2fa_off_while_the_account_requires_it(world: World) -> None:
    require_2fa(world)
    session = world.login(world.member)
    with pytest.raises(ts.NotAllowed) as refused:
        world.service.disable_two_factor(session, world.fresh_code(world.member.id))
    assert refused.value.reason == "account_requires_two_factor"
    assert "R32" in refused.value.rule
    assert world.service.two_factor_status(session).enabled is True
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.CodeRequired)
