"""Abuse (R71-R74): lock-out, parallel logins, refusals that escaped the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock

from .conftest import PASSWORD, World, make_store


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ts.Store]:
    store = make_store(request.param, tmp_path)
    yield store
    store.close()


@pytest.mark.parametrize("email", ["ann\x00@acme.test", "ann@acme.test\x00", "a\x07nn@acme.test"])
def test_r73_an_email_with_a_control_character_is_invalid_input_on_every_store(
    any_store: ts.Store, keyring: ts.AESGCMKeyring, email: str
) -> None:
    service = ts.TwoStep(
        any_store, issuer="Acme", clock=ManualClock(), settings=FAST, cipher=keyring
    )
    account = service.create_account("Acme")
    service.create_user(account.id, "ann@acme.test", PASSWORD)
    with pytest.raises(ts.InvalidInput) as caught:
        service.login(email, PASSWORD)
    assert caught.value.reason == "invalid_email"
    with pytest.raises(ts.InvalidInput):
        service.operator_reset_two_factor(email)


def test_r73_resetting_a_user_of_another_account_is_audited_in_the_actors_trail(
    world: World,
) -> None:
    service = world.service
    other = service.create_account("Other")
    stranger = service.create_user(other.id, "stranger@other.test", PASSWORD, ts.Role.OWNER)
    stranger_session = world.login(stranger)
    world.enroll(stranger_session)
    owner = world.login(world.owner)
    other_trail = service.audit_trail(world.login(stranger), limit=1000)

    for user_id in (stranger.id, "no-such-user"):
        with pytest.raises(ts.UnknownUser):
            service.reset_two_factor(owner, user_id)

    refusals = [
        (e.action, e.outcome, e.reason, e.actor_id, e.target_id)
        for e in service.audit_trail(owner, limit=1000)
        if e.outcome is not ts.Outcome.SUCCESS
    ]
    assert refusals[:2] == [
        ("two_factor_reset", ts.Outcome.FAILURE, "unknown_user", world.owner.id, "no-such-user"),
        ("two_factor_reset", ts.Outcome.FAILURE, "unknown_user", world.owner.id, stranger.id),
    ]
    # The other account's trail gains nothing but the stranger's own new login, and the
    # stranger keeps 2FA.
    after = service.audit_trail(world.login(stranger), limit=1000)
    logins = ("login", "login_password")
    assert [e for e in after if e.action not in logins and e not in other_trail] == []
    assert service.check_session(world.login(stranger)).two_factor_enabled
