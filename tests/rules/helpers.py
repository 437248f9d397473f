"""Helpers shared by the rule tests (tests/rules/): plain functions over the ``world`` fixture."""

from __future__ import annotations

import twostep as ts

from ..conftest import World


def enrolled_session(world: World, user: ts.User) -> ts.Session:
    """Log ``user`` in and turn 2FA on (R30); returns the session."""
    session = world.login(user)
    world.enroll(session)
    return session


def require_2fa(world: World) -> None:
    """The owner turns the requirement on (R20), enrolling first if needed."""
    session = world.login(world.owner)
    world.service.set_two_factor_required(session, True)


def stored_user(store: ts.Store, user_id: str) -> ts.User:
    with store.transaction(write=False) as tx:
        user = tx.get_user(user_id)
    assert user is not None
    return user
