"""R70: a clock that jumps forward and back stretches no wait and no lifetime.

Each test moves the fake clock a day ahead, lets twostep stamp a record there, and moves
it back, as a machine whose clock was corrected does.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import twostep as ts
from twostep.testing import FAST, Phone

from .conftest import PASSWORD, World, ask_code

DAY = timedelta(days=1)


def wrong(phone: Phone) -> str:
    nearby = {phone.code(offset_steps=k) for k in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222") if c not in nearby)


def block_codes(world: World, phone: Phone) -> None:
    for _ in range(FAST.code_throttle.free_failures + 1):
        step = ask_code(world.service, world.member.email)
        with pytest.raises(ts.InvalidCode):
            world.service.complete_login(step, wrong(phone))


def test_r70_a_throttle_block_lasts_its_delay_from_the_last_failure(world: World) -> None:
    phone = world.enroll(world.login(world.member))
    block_codes(world, phone)
    earned = FAST.code_throttle.delay(FAST.code_throttle.free_failures + 1)
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.Throttled) as caught:
        world.service.complete_login(step, phone.code())
    assert caught.value.retry_after == earned.total_seconds()
    world.clock.advance(earned.total_seconds())
    world.clock.advance(30)
    world.service.complete_login(ask_code(world.service, world.member.email), phone.code())


def test_r70_a_throttle_block_stamped_ahead_is_over_once_the_clock_is_back(
    world: World,
) -> None:
    phone = world.enroll(world.login(world.member))
    world.clock.advance(DAY.total_seconds())
    block_codes(world, phone)
    world.clock.advance(-DAY.total_seconds())
    # Before: retry_after was a day and 2 s, against a documented maximum of 4 h.
    world.clock.advance(30)
    world.service.complete_login(ask_code(world.service, world.member.email), phone.code())


def test_r70_a_session_issued_ahead_is_refused_once_the_clock_is_back(world: World) -> None:
    world.clock.advance(DAY.total_seconds())
    session = world.login(world.member)
    assert world.service.check_session(session).user_id == world.member.id
    world.clock.advance(-DAY.total_seconds())
    with pytest.raises(ts.SessionInvalid) as caught:
        world.service.check_session(session)
    assert caught.value.reason == "expired"


def test_r70_a_session_lives_no_longer_than_the_lifetime_in_force(
    world: World, store: ts.Store, keyring: ts.AESGCMKeyring
) -> None:
    session = world.login(world.member)
    world.clock.advance(hours=2)
    shorter = ts.TwoStep(
        store,
        issuer="Acme",
        clock=world.clock,
        settings=ts.Settings(**{**vars_of(FAST), "session_ttl": timedelta(hours=1)}),
        cipher=keyring,
    )
    with pytest.raises(ts.SessionInvalid) as caught:
        shorter.check_session(session)
    assert caught.value.reason == "expired"
    assert world.service.check_session(session).user_id == world.member.id


def vars_of(settings: ts.Settings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


def test_r70_a_login_challenge_made_ahead_is_dead_once_the_clock_is_back(world: World) -> None:
    phone = world.enroll(world.login(world.member))
    world.clock.advance(DAY.total_seconds())
    step = ask_code(world.service, world.member.email)
    world.clock.advance(-DAY.total_seconds())
    with pytest.raises(ts.ChallengeExpired) as caught:
        world.service.complete_login(step, phone.code())
    assert caught.value.reason == "expired"


def test_r70_an_enrolment_begun_ahead_is_over_once_the_clock_is_back(world: World) -> None:
    session = world.login(world.member)
    world.clock.advance(DAY.total_seconds())
    later = world.login(world.member)
    phone = Phone(world.service.begin_enrollment(later).secret, world.clock)
    world.clock.advance(-DAY.total_seconds())
    assert not world.service.two_factor_status(session).enrollment_pending
    with pytest.raises(ts.ChallengeExpired) as caught:
        world.service.confirm_enrollment(session, phone.code())
    assert caught.value.reason == "expired"
    assert not world.service.two_factor_status(session).enabled


def test_r70_r4_no_code_is_accepted_twice_across_a_jump(world: World) -> None:
    phone = world.enroll(world.login(world.member))
    world.clock.advance(DAY.total_seconds())
    step = ask_code(world.service, world.member.email)
    ahead = phone.code()
    world.service.complete_login(step, ahead)
    world.clock.advance(-DAY.total_seconds())
    # Back in time: the codes of now are older than the last accepted step.
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode) as caught:
        world.service.complete_login(step, phone.code())
    assert caught.value.reason == "replayed"
    assert world.service.login(world.member.email, PASSWORD) is not None
