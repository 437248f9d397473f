"""Logging in (R1-R6): the rules' tests, through the public API, on every store."""

from __future__ import annotations

import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock, Phone

from ..conftest import PASSWORD, World, ask_code
from .helpers import enrolled_session, require_2fa, stored_user


def test_r1_login_with_2fa_takes_password_then_otp(world: World) -> None:
    enrolled_session(world, world.member)
    step = world.service.login(world.member.email, PASSWORD)
    assert isinstance(step, ts.CodeRequired)
    # The challenge is no session: nothing is logged in before the code.
    with pytest.raises(ts.SessionInvalid):
        world.service.check_session(step.challenge)
    done = world.service.complete_login(step, world.fresh_code(world.member.id))
    assert world.service.check_session(done.session).user_id == world.member.id
    assert done.session.two_factor_enabled is True
    assert done.backup_codes is None


def test_r1_backup_code_replaces_the_otp_at_login(world: World) -> None:
    enrolled_session(world, world.member)
    step = world.service.login(world.member.email, PASSWORD)
    assert isinstance(step, ts.CodeRequired)
    done = world.service.complete_login(step, world.backup_codes[world.member.id][0])
    assert world.service.check_session(done.session).user_id == world.member.id


def test_r1_wrong_password_gives_no_challenge(world: World) -> None:
    enrolled_session(world, world.member)
    with pytest.raises(ts.InvalidCredentials):
        world.service.login(world.member.email, "not the password")


def test_r2_user_without_2fa_is_logged_in_after_the_password(world: World) -> None:
    step = world.service.login(world.member.email, PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    session = world.service.check_session(step.session.token)
    assert session.user_id == world.member.id
    assert session.two_factor_enabled is False
    # Emails are compared case-insensitively.
    assert isinstance(world.service.login("MEMBER@Acme.Test", PASSWORD), ts.LoggedIn)


def test_r3_required_2fa_is_set_up_inside_the_login(world: World, store: ts.Store) -> None:
    require_2fa(world)
    step = world.service.login(world.member.email, PASSWORD)
    assert isinstance(step, ts.EnrollmentRequired)
    with pytest.raises(ts.SessionInvalid):
        world.service.check_session(step.challenge)
    assert step.enrollment.label == world.member.email
    phone = Phone(step.enrollment.secret, world.clock)

    with pytest.raises(ts.InvalidCode):
        world.service.complete_login(step, f"{(int(phone.code()) + 1) % 1_000_000:06d}")
    assert stored_user(store, world.member.id).two_factor.enabled is False

    done = world.service.complete_login(step, phone.code())
    assert done.backup_codes is not None
    assert len(done.backup_codes) == 10
    status = world.service.two_factor_status(done.session)
    assert status.enabled is True
    assert status.required_by_account is True
    assert status.backup_codes_remaining == 10
    # From now on the login asks for a code.
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.CodeRequired)


def test_r3_an_abandoned_login_enrolment_issues_no_session(world: World, store: ts.Store) -> None:
    require_2fa(world)
    first = world.service.login(world.member.email, PASSWORD)
    assert isinstance(first, ts.EnrollmentRequired)
    assert stored_user(store, world.member.id).two_factor.enabled is False
    second = world.service.login(world.member.email, PASSWORD)
    assert isinstance(second, ts.EnrollmentRequired)
    assert second.enrollment.secret != first.enrollment.secret
    # The first challenge's secret no longer confirms anything.
    with pytest.raises(ts.InvalidCode):
        world.service.complete_login(second, Phone(first.enrollment.secret, world.clock).code())


def test_r4_one_period_of_drift_either_way_and_no_replay(world: World) -> None:
    enrolled_session(world, world.member)
    phone = world.phones[world.member.id]
    world.clock.advance(90)

    step = ask_code(world.service, world.member.email)
    world.service.complete_login(step, phone.code(offset_steps=-1))  # behind by one: ok

    step = ask_code(world.service, world.member.email)
    for offset in (-2, 2):
        with pytest.raises(ts.InvalidCode) as refused:
            world.service.complete_login(step, phone.code(offset_steps=offset))
        assert refused.value.reason == "wrong"
    current = phone.code()
    world.service.complete_login(step, current)  # newer than the last one used: ok

    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode) as replay:
        world.service.complete_login(step, current)
    assert replay.value.reason == "replayed"
    world.service.complete_login(step, phone.code(offset_steps=1))  # ahead by one: ok

    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode) as older:
        world.service.complete_login(step, current)
    assert older.value.reason == "replayed"


def test_r5_a_backup_code_works_once_and_the_count_is_visible(world: World) -> None:
    session = enrolled_session(world, world.member)
    code = world.backup_codes[world.member.id][3]
    assert world.service.two_factor_status(session).backup_codes_remaining == 10

    step = ask_code(world.service, world.member.email)
    done = world.service.complete_login(step, code)
    assert world.service.two_factor_status(done.session).backup_codes_remaining == 9

    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode) as again:
        world.service.complete_login(step, code)
    assert again.value.reason == "replayed"
    assert world.service.two_factor_status(done.session).backup_codes_remaining == 9


def test_r5_regenerating_backup_codes_replaces_the_whole_set(world: World) -> None:
    session = enrolled_session(world, world.member)
    old = world.backup_codes[world.member.id]
    new = world.service.regenerate_backup_codes(session, old[0])
    assert len(new) == 10
    assert not set(new) & set(old)
    assert world.service.two_factor_status(session).backup_codes_remaining == 10
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode):
        world.service.complete_login(step, old[1])
    world.service.complete_login(step, new.codes[0])
    # "A code" everywhere: a backup code also regenerates, and an OTP does too.
    world.service.regenerate_backup_codes(session, world.fresh_code(world.member.id))


def test_r5_regenerating_needs_a_valid_code(world: World) -> None:
    session = enrolled_session(world, world.member)
    with pytest.raises(ts.InvalidCode):
        world.service.regenerate_backup_codes(session, "000000")
    assert world.service.two_factor_status(session).backup_codes_remaining == 10
    step = ask_code(world.service, world.member.email)
    world.service.complete_login(step, world.backup_codes[world.member.id][0])


def test_r6_the_login_challenge_expires_after_five_minutes(world: World) -> None:
    enrolled_session(world, world.member)
    phone = world.phones[world.member.id]
    world.clock.advance(60)
    step = world.service.login(world.member.email, PASSWORD)
    assert isinstance(step, ts.CodeRequired)
    assert step.expires_at == world.clock.now() + ts.Settings().challenge_ttl
    world.clock.advance(299)
    world.service.complete_login(step, phone.code())  # 4:59 later: still fine

    step = ask_code(world.service, world.member.email)
    world.clock.advance(300)
    with pytest.raises(ts.ChallengeExpired) as expired:
        world.service.complete_login(step, phone.code())
    assert expired.value.reason == "expired"


def test_r6_the_login_challenge_is_single_use(world: World) -> None:
    enrolled_session(world, world.member)
    step = ask_code(world.service, world.member.email)
    world.service.complete_login(step, world.fresh_code(world.member.id))
    with pytest.raises(ts.ChallengeExpired) as used:
        world.service.complete_login(step, world.fresh_code(world.member.id))
    assert used.value.reason == "unknown"


def test_r6_the_challenge_dies_after_five_wrong_codes(world: World) -> None:
    enrolled_session(world, world.member)
    step = ask_code(world.service, world.member.email)
    for left in (4, 3, 2, 1, 0):
        with pytest.raises(ts.InvalidCode) as wrong:
            world.service.complete_login(step, "000000")
        assert wrong.value.attempts_left == left
    with pytest.raises(ts.ChallengeExpired) as dead:
        world.service.complete_login(step, world.fresh_code(world.member.id))
    assert dead.value.reason == "too_many_attempts"


def test_r6_repeated_failures_throttle_the_user_across_logins(world: World) -> None:
    enrolled_session(world, world.member)
    phone = world.phones[world.member.id]
    step = ask_code(world.service, world.member.email)
    for _ in range(5):
        with pytest.raises(ts.InvalidCode):
            world.service.complete_login(step, "000000")
    # A new login does not reset the count: the sixth failure blocks the user.
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode):
        world.service.complete_login(step, "000000")
    world.clock.advance(1)
    with pytest.raises(ts.Throttled) as blocked:
        world.service.complete_login(step, phone.code())  # even a right code waits
    assert blocked.value.retry_after == 1
    assert blocked.value.reason == "throttled"

    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.Throttled):
        world.service.complete_login(step, phone.code())
    world.clock.advance(blocked.value.retry_after)
    done = world.service.complete_login(step, world.fresh_code(world.member.id))
    assert world.service.check_session(done.session).user_id == world.member.id


def test_r6_a_correct_code_clears_the_users_failure_count(world: World) -> None:
    enrolled_session(world, world.member)
    for _ in range(2):  # 5 + 5 failures, with a success between: never throttled
        step = ask_code(world.service, world.member.email)
        for _ in range(4):
            with pytest.raises(ts.InvalidCode):
                world.service.complete_login(step, "000000")
        world.service.complete_login(step, world.fresh_code(world.member.id))
        step = ask_code(world.service, world.member.email)
        with pytest.raises(ts.InvalidCode):
            world.service.complete_login(step, "000000")
    step = ask_code(world.service, world.member.email)
    world.service.complete_login(step, world.fresh_code(world.member.id))


def test_r6_a_client_key_is_throttled_across_emails(world: World) -> None:
    client = "198.51.100.7"
    free = FAST.client_throttle.free_failures
    for n in range(free):  # one guess per email: no email is throttled, the client counts
        with pytest.raises(ts.InvalidCredentials):
            world.service.login(f"guess{n}@acme.test", "wrong password", client=client)
    # A good login from the same client does not wipe what it spent guessing.
    assert isinstance(world.service.login(world.member.email, PASSWORD, client=client), ts.LoggedIn)
    with pytest.raises(ts.InvalidCredentials):
        world.service.login("one-more@acme.test", "wrong password", client=client)
    with pytest.raises(ts.Throttled) as blocked:
        world.service.login(world.manager.email, PASSWORD, client=client)
    assert blocked.value.scope == "client"
    # Another client, or none, is not slowed down.
    assert isinstance(world.service.login(world.manager.email, PASSWORD), ts.LoggedIn)
    assert isinstance(
        world.service.login(world.manager.email, PASSWORD, client="203.0.113.9"), ts.LoggedIn
    )


def test_r6_repeated_wrong_passwords_throttle_the_email(world: World) -> None:
    for _ in range(6):
        with pytest.raises(ts.InvalidCredentials):
            world.service.login(world.member.email, "wrong password")
    with pytest.raises(ts.Throttled) as blocked:
        world.service.login(world.member.email, PASSWORD)
    assert blocked.value.retry_after >= 1
    world.clock.advance(blocked.value.retry_after)
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.LoggedIn)


def test_r3_enrolment_challenge_cannot_confirm_a_later_reset(
    service: ts.TwoStep, clock: ManualClock
) -> None:  # R3, R40
    account = service.create_account("Stale")
    owner = service.create_user(account.id, "stale-owner@acme.test", PASSWORD, ts.Role.OWNER)
    session = service.login(owner.email, PASSWORD)
    assert isinstance(session, ts.LoggedIn)
    service.set_two_factor_required(session.session, True)
    first = service.login(owner.email, PASSWORD)
    second = service.login(owner.email, PASSWORD)
    assert isinstance(first, ts.EnrollmentRequired)
    assert isinstance(second, ts.EnrollmentRequired)
    done = service.complete_login(second, Phone(second.enrollment.secret, clock).code())
    clock.advance(30)
    phone = Phone(second.enrollment.secret, clock)
    new = service.begin_reset(done.session, phone.code())
    clock.advance(30)
    with pytest.raises(ts.ChallengeExpired):
        service.complete_login(first, Phone(new.secret, clock).code())
    assert service.two_factor_status(done.session).enrollment_pending is True
