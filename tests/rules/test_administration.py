"""Who may open administration (R50), through the public API, on every store."""

from __future__ import annotations

import pytest

import twostep as ts

from ..conftest import PASSWORD, World
from .helpers import enrolled_session


@pytest.mark.parametrize("role", ["owner", "manager"])
def test_r50_owners_and_managers_see_who_has_2fa(world: World, role: str) -> None:
    enrolled_session(world, world.member)
    session = world.login(getattr(world, role))
    overview = world.service.two_factor_overview(session)
    assert overview.account_id == world.account.id
    assert overview.two_factor_required is False
    by_id = {u.user_id: u for u in overview.users}
    assert set(by_id) == {world.owner.id, world.manager.id, world.member.id}
    assert by_id[world.member.id].two_factor_enabled is True
    assert by_id[world.member.id].backup_codes_remaining == 10
    assert by_id[world.owner.id].two_factor_enabled is False
    assert world.service.audit_trail(session)


def test_r50_members_reach_only_their_own_settings(world: World) -> None:
    session = world.login(world.member)
    with pytest.raises(ts.NotAllowed) as overview:
        world.service.two_factor_overview(session)
    assert (overview.value.reason, overview.value.rule) == ("owner_or_manager_only", "R50")
    with pytest.raises(ts.NotAllowed) as audit:
        world.service.audit_trail(session)
    assert audit.value.reason == "owner_or_manager_only"
    assert "R50" in audit.value.rule
    assert world.service.two_factor_status(session).enabled is False


def test_r50_administration_shows_only_the_own_account(world: World) -> None:
    elsewhere = world.service.create_account("Elsewhere")
    world.service.create_user(elsewhere.id, "x@elsewhere.test", PASSWORD, ts.Role.OWNER)
    session = world.login(world.owner)
    overview = world.service.two_factor_overview(session)
    assert all(u.email.endswith("@acme.test") for u in overview.users)
    assert all(e.account_id == world.account.id for e in world.service.audit_trail(session))
