"""One or more tests per rule of the product (R1-R61), through the public API, on every store."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock, Phone

from .conftest import PASSWORD, World, ask_code, store_snapshot

BACKUP_CODE = re.compile(r"[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}")


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


# -- logging in (R1-R6) -----------------------------------------------------------------


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


# -- enrolment (R10, R11) -----------------------------------------------------------------


def test_r10_enrolment_shows_uri_qr_code_and_secret(
    world: World, store: ts.Store, keyring: ts.AESGCMKeyring
) -> None:
    service = ts.TwoStep(
        store,
        issuer="Acme: Analytics Co",
        clock=world.clock,
        settings=FAST,
        cipher=keyring,
    )
    session = service.check_session(world.login(world.member))
    enrollment = service.begin_enrollment(session)

    parts = urlsplit(enrollment.uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    issuer_part, colon, label_part = parts.path.removeprefix("/").partition(":")
    assert colon
    assert issuer_part == "Acme%3A%20Analytics%20Co"  # spaces and the colon encoded
    assert unquote(issuer_part) == "Acme: Analytics Co"
    assert unquote(label_part) == world.member.email
    query = parse_qs(parts.query)
    assert query["secret"] == [enrollment.secret]
    assert query["issuer"] == ["Acme: Analytics Co"]
    assert enrollment.uri.startswith("otpauth://totp/Acme%3A%20Analytics%20Co:")

    assert len(base64.b32decode(enrollment.secret + "=" * (-len(enrollment.secret) % 8))) >= 20
    groups = enrollment.secret_groups.split(" ")
    assert "".join(groups) == enrollment.secret
    assert all(len(g) == 4 for g in groups[:-1])
    assert 1 <= len(groups[-1]) <= 4

    assert "<svg" in enrollment.qr_svg()
    assert enrollment.qr_png().startswith(b"\x89PNG\r\n\x1a\n")
    text = enrollment.qr_text()
    assert len(text.splitlines()) > 10
    assert any(ch in text for ch in "█▀▄")


def test_r10_only_a_correct_code_turns_2fa_on_then_backup_codes_are_shown(
    world: World,
    store: ts.Store,
) -> None:
    session = world.login(world.member)
    enrollment = world.service.begin_enrollment(session)
    phone = Phone(enrollment.secret, world.clock)
    with pytest.raises(ts.InvalidCode):
        world.service.confirm_enrollment(session, f"{(int(phone.code()) + 1) % 1_000_000:06d}")
    assert world.service.two_factor_status(session).enabled is False

    codes = world.service.confirm_enrollment(session, phone.code())
    assert world.service.two_factor_status(session).enabled is True
    assert len(codes) == FAST.backup_code_count == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert BACKUP_CODE.fullmatch(code)  # 10 symbols of a 32-letter alphabet: 50 bits
    # Stored hashed only, and the TOTP secret only sealed: neither can be read back.
    dump = repr(store_snapshot(store))
    for code in codes:
        assert code not in dump
        assert code.replace("-", "") not in dump
    assert enrollment.secret not in dump


def test_r10_backup_codes_may_be_typed_without_separator_in_any_case(world: World) -> None:
    enrolled_session(world, world.member)
    codes = world.backup_codes[world.member.id]
    for typed in (codes[0].replace("-", "").upper(), f"  {codes[1].upper()} ", codes[2]):
        step = ask_code(world.service, world.member.email)
        done = world.service.complete_login(step, typed)
        assert done.session.user_id == world.member.id
    session = world.service.check_session(done.session)
    assert world.service.two_factor_status(session).backup_codes_remaining == 7


def test_r10_the_backup_code_count_follows_the_settings(
    store: ts.Store, clock: ManualClock, keyring: ts.AESGCMKeyring
) -> None:
    service = ts.TwoStep(
        store,
        issuer="Acme",
        clock=clock,
        settings=replace(FAST, backup_code_count=12),
        cipher=keyring,
    )
    account = service.create_account("A")
    user = service.create_user(account.id, "a@a.test", PASSWORD)
    step = service.login(user.email, PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    enrollment = service.begin_enrollment(step.session)
    codes = service.confirm_enrollment(step.session, Phone(enrollment.secret, clock).code())
    assert len(codes) == 12


def test_r11_an_abandoned_enrolment_leaves_the_user_as_before(
    world: World, store: ts.Store
) -> None:
    session = world.login(world.member)
    before = stored_user(store, world.member.id)
    enrollment = world.service.begin_enrollment(session)
    status = world.service.two_factor_status(session)
    assert status.enabled is False
    assert status.enrollment_pending is True
    # Still logs in with the password alone (R2).
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.LoggedIn)
    after = stored_user(store, world.member.id)
    assert after.two_factor.secret is None
    assert after.backup_codes == before.backup_codes is None
    # The parked secret expires.
    world.clock.advance(seconds=FAST.enrollment_ttl.total_seconds())
    assert world.service.two_factor_status(session).enrollment_pending is False
    with pytest.raises(ts.ChallengeExpired):
        world.service.confirm_enrollment(session, Phone(enrollment.secret, world.clock).code())
    assert world.service.two_factor_status(session).enabled is False


def test_r11_an_abandoned_reset_keeps_the_old_device_and_codes(
    world: World, store: ts.Store
) -> None:
    require_2fa(world)
    session = world.login(world.member)
    before = stored_user(store, world.member.id)
    world.service.begin_reset(session, world.fresh_code(world.member.id))
    after = stored_user(store, world.member.id)
    assert after.two_factor.secret == before.two_factor.secret
    assert after.backup_codes == before.backup_codes
    assert after.two_factor.enabled_at == before.two_factor.enabled_at
    status = world.service.two_factor_status(session)
    assert (status.enabled, status.backup_codes_remaining) == (True, 10)
    # The old phone and the old backup codes still log in.
    world.login(world.member)
    step = ask_code(world.service, world.member.email)
    world.service.complete_login(step, world.backup_codes[world.member.id][0])


# -- the account requirement (R20-R22) --------------------------------------------------------


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


# -- one's own 2FA (R30-R32) ---------------------------------------------------------------


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


# -- resets (R40-R42) ---------------------------------------------------------------------------


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


# -- administration (R50) ----------------------------------------------------------------------


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


# -- the audit trail and typed refusals (R60, R61) ------------------------------------------------


def test_r60_every_change_and_failure_is_audited_without_secrets(world: World) -> None:
    secrets_seen: list[str] = [PASSWORD]
    service = world.service

    owner = world.login(world.owner)
    member = world.login(world.member)
    secrets_seen += [owner.token, member.token]
    enrollment = service.begin_enrollment(member)
    phone = Phone(enrollment.secret, world.clock)
    first_code = phone.code()
    codes = service.confirm_enrollment(member, first_code)
    world.phones[world.member.id] = phone
    secrets_seen += [enrollment.secret, enrollment.uri, first_code, *codes]
    secrets_seen += [c.replace("-", "") for c in codes]

    step = ask_code(service, world.member.email)
    secrets_seen.append(step.challenge)
    with pytest.raises(ts.InvalidCode):
        service.complete_login(step, "987654")
    otp = world.fresh_code(world.member.id)
    secrets_seen.append(otp)
    service.complete_login(step, otp)
    step = ask_code(service, world.member.email)
    secrets_seen.append(step.challenge)
    service.complete_login(step, codes.codes[0].upper())
    with pytest.raises(ts.InvalidCredentials):
        service.login(world.member.email, "a wrong password")
    with pytest.raises(ts.NotAllowed):
        service.two_factor_overview(member)
    new_codes = service.regenerate_backup_codes(member, world.fresh_code(world.member.id))
    secrets_seen += list(new_codes)
    service.set_two_factor_required(owner, True)
    owner = world.login(world.owner)
    secrets_seen.append(owner.token)
    secrets_seen.append(world.backup_codes[world.owner.id][0])
    service.reset_two_factor(owner, world.member.id)
    service.set_two_factor_required(owner, False)
    # Throttling: five failures are free, the sixth blocks, the next is throttled.
    step = ask_code(service, world.owner.email)
    for _ in range(5):
        with pytest.raises(ts.InvalidCode):
            service.complete_login(step, "876543")
    step = ask_code(service, world.owner.email)
    with pytest.raises(ts.InvalidCode):
        service.complete_login(step, "876543")
    with pytest.raises(ts.Throttled):
        service.complete_login(step, "876543")
    secrets_seen += ["987654", "876543"]  # typed codes, wrong or not, are never recorded
    world.clock.advance(60)
    world.service.disable_two_factor(owner, world.backup_codes[world.owner.id][1])
    secrets_seen.append(world.backup_codes[world.owner.id][1])
    service.logout(member)

    events = service.audit_trail(owner, limit=1000)
    seen = {(e.action, e.outcome) for e in events}
    S, F = ts.Outcome.SUCCESS, ts.Outcome.FAILURE
    for expected in [
        ("account_created", S),
        ("user_created", S),
        ("login", S),
        ("login", F),
        ("enrollment_started", S),
        ("two_factor_enabled", S),
        ("login_code", F),
        ("view_overview", ts.Outcome.DENIED),
        ("backup_codes_regenerated", S),
        ("two_factor_required", S),
        ("two_factor_reset", S),
        ("two_factor_optional", S),
        ("login_code", ts.Outcome.THROTTLED),
        ("two_factor_disabled", S),
        ("logout", S),
    ]:
        assert expected in seen, expected
    # One success event per session born, naming the second step that was passed.
    reasons = {e.reason for e in events if (e.action, e.outcome) == ("login", S)}
    assert {"otp", "backup_code", "enrolled"} <= reasons, reasons
    reset = next(e for e in events if e.action == "two_factor_reset")
    assert (reset.actor, reset.actor_id, reset.target_id) == (
        "user",
        world.owner.id,
        world.member.id,
    )
    assert all(e.at.tzinfo is not None for e in events)
    assert [e.at for e in events] == sorted((e.at for e in events), reverse=True)

    texts = [repr(events)] + [str(getattr(e, f)) for e in events for f in e.__dataclass_fields__]
    blob = "\n".join(texts)
    for secret in secrets_seen:
        assert secret not in blob
    # Nor in the reprs of what the API hands out.
    shown = repr([owner, member, enrollment, codes, new_codes, step, service])
    for secret in secrets_seen:
        if secret != PASSWORD:
            assert secret not in shown


def test_r61_every_refusal_is_a_typed_error_with_a_reason(world: World) -> None:
    member = enrolled_session(world, world.member)
    refusals: list[ts.TwoStepError] = []

    def refused(call: object, *args: object) -> None:
        assert callable(call)
        with pytest.raises(ts.TwoStepError) as caught:
            call(*args)
        refusals.append(caught.value)

    refused(world.service.login, "nobody@acme.test", PASSWORD)
    step = world.service.login(world.member.email, PASSWORD)
    refused(world.service.complete_login, step, "000000")
    refused(world.service.complete_login, step, "12")
    refused(world.service.complete_login, "no such challenge", "000000")
    refused(world.service.set_two_factor_required, member, True)
    refused(world.service.check_session, "no such session")
    refused(world.service.begin_enrollment, member)

    assert [type(e) for e in refusals] == [
        ts.InvalidCredentials,
        ts.InvalidCode,
        ts.InvalidCode,
        ts.ChallengeExpired,
        ts.NotAllowed,
        ts.SessionInvalid,
        ts.NotAllowed,
    ]
    assert [e.reason for e in refusals] == [
        "invalid_credentials",
        "wrong",
        "malformed",
        "unknown",
        "owner_only",
        "unknown",
        "two_factor_already_on",
    ]
    for error in refusals:
        assert str(error)
        assert error.reason in repr(error)


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
