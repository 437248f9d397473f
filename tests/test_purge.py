"""``purge_expired`` through the service: what it removes changes no outcome (R6, R11).

The store contract (test_store_contract.py) checks which rows each store removes; these
tests check that the service passes the right cutoff and that users see no difference.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

import twostep as ts
from twostep._domain import ThrottleKey, ThrottleScope
from twostep.testing import FAST, ManualClock, Phone

from .conftest import PASSWORD, World

UNKNOWN = "nobody@unknown.test"
UNKNOWN_KEY = ThrottleKey(ThrottleScope.EMAIL, UNKNOWN)


def failures(store: ts.Store, key: ThrottleKey) -> int | None:
    """The stored count of a throttle key; ``None`` when it has no row."""
    with store.transaction(write=False) as tx:
        state = tx.get_throttle(key)
    return None if state is None else state.failures


def pending_secret_stored(store: ts.Store, user_id: str) -> bool:
    with store.transaction(write=False) as tx:
        user = tx.get_user(user_id)
    assert user is not None
    return user.two_factor.pending_secret is not None


def wrong_password(service: ts.TwoStep, email: str) -> None:
    with pytest.raises(ts.InvalidCredentials):
        service.login(email, "not the password")


def test_r11_an_expired_enrolment_is_cleared_and_a_new_one_can_start(
    world: World, store: ts.Store, clock: ManualClock
) -> None:
    service = world.service
    session = world.login(world.member)
    abandoned = Phone(service.begin_enrollment(session).secret, clock)
    clock.advance(FAST.enrollment_ttl.total_seconds())
    assert pending_secret_stored(store, world.member.id)

    assert service.purge_expired() == 1  # the session is still valid: only the secret goes
    assert not pending_secret_stored(store, world.member.id)
    status = service.two_factor_status(session)
    assert (status.enabled, status.enrollment_pending) == (False, False)
    with pytest.raises(ts.NotAllowed) as refused:
        service.confirm_enrollment(session, abandoned.code())
    assert refused.value.reason == "no_enrollment_in_progress"

    phone = Phone(service.begin_enrollment(session).secret, clock)
    assert service.two_factor_status(session).enrollment_pending
    assert len(service.confirm_enrollment(session, phone.code())) == FAST.backup_code_count
    assert service.two_factor_status(session).enabled


def test_r11_an_expired_reset_is_cleared_and_the_old_phone_keeps_working(
    world: World, store: ts.Store, clock: ManualClock
) -> None:
    service = world.service
    phone = world.enroll(world.login(world.owner))
    service.set_two_factor_required(world.login(world.owner), True)
    session = world.login(world.owner)
    service.begin_reset(session, world.fresh_code(world.owner.id))  # then abandoned
    with store.transaction(write=False) as tx:
        before = tx.get_user(world.owner.id)
    assert before is not None
    clock.advance(FAST.enrollment_ttl.total_seconds())

    assert service.purge_expired() == 1
    with store.transaction(write=False) as tx:
        after = tx.get_user(world.owner.id)
    two_factor = replace(before.two_factor, pending_secret=None, pending_expires_at=None)
    assert after == replace(before, two_factor=two_factor)
    assert world.login(world.owner, code=phone.code(offset_steps=1)).user_id == world.owner.id


def test_r6_a_forgotten_email_counter_is_removed_and_counting_starts_from_1(
    world: World, store: ts.Store, clock: ManualClock
) -> None:
    service = world.service
    forget = FAST.password_throttle.forget_after
    for _ in range(FAST.password_throttle.free_failures + 1):  # stuffing an unknown email
        wrong_password(service, UNKNOWN)
    with pytest.raises(ts.Throttled):
        service.login(UNKNOWN, PASSWORD)
    assert failures(store, UNKNOWN_KEY) == FAST.password_throttle.free_failures + 1
    clock.advance((forget - timedelta(hours=2)).total_seconds())
    for _ in range(3):
        wrong_password(service, world.member.email)
    clock.advance(timedelta(hours=2, seconds=1).total_seconds())

    assert service.purge_expired() == 1  # the member's counter is recent: it stays
    assert failures(store, UNKNOWN_KEY) is None
    assert failures(store, ThrottleKey(ThrottleScope.EMAIL, world.member.email)) == 3
    wrong_password(service, UNKNOWN)
    assert failures(store, UNKNOWN_KEY) == 1
    wrong_password(service, world.member.email)
    assert failures(store, ThrottleKey(ThrottleScope.EMAIL, world.member.email)) == 4


def test_r6_a_counter_stays_while_it_blocks_and_until_the_longest_forget_after(
    store: ts.Store, clock: ManualClock, keyring: ts.AESGCMKeyring
) -> None:
    # The password throttle forgets after 1 h but blocks for 3 h; the client throttle
    # forgets only after 6 h, and one cutoff serves every kind.
    settings = replace(
        FAST,
        password_throttle=ts.ThrottleSettings(
            free_failures=1,
            base_delay=timedelta(hours=3),
            max_delay=timedelta(hours=3),
            forget_after=timedelta(hours=1),
        ),
        code_throttle=ts.ThrottleSettings(forget_after=timedelta(hours=1)),
        client_throttle=ts.ThrottleSettings(free_failures=20, forget_after=timedelta(hours=6)),
    )
    service = ts.TwoStep(store, issuer="Acme", clock=clock, settings=settings, cipher=keyring)
    wrong_password(service, UNKNOWN)
    wrong_password(service, UNKNOWN)
    key = UNKNOWN_KEY

    clock.advance(2 * 3_600)
    assert service.purge_expired() == 0  # forgotten for counting, but still blocking
    with pytest.raises(ts.Throttled):
        service.login(UNKNOWN, PASSWORD)
    clock.advance(4 * 3_600)  # exactly 6 h after the last failure: not older yet
    assert service.purge_expired() == 0
    assert failures(store, key) == 2
    clock.advance(0.000_001)
    assert service.purge_expired() == 1
    assert failures(store, key) is None
