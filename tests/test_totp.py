"""The TOTP layer: RFC 6238 vectors, the drift window and replay protection (R4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

import twostep as ts
from twostep import _codes, _domain
from twostep._domain import User
from twostep.testing import FAST, ManualClock, Phone

from .conftest import PASSWORD, World

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
EIGHT_DIGITS = ts.Settings(totp_digits=8)

# RFC 6238 appendix B, the SHA-1 column: (Unix time, TOTP).
RFC_6238_SHA1 = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


def at(unix: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=unix)


@pytest.mark.parametrize(("unix", "otp"), RFC_6238_SHA1)
def test_rfc6238_appendix_b_sha1_vectors(unix: int, otp: str) -> None:
    assert _codes.matching_step(RFC_SECRET, otp, at(unix), EIGHT_DIGITS) == unix // 30


@pytest.mark.parametrize(("unix", "otp"), RFC_6238_SHA1)
def test_rfc6238_vectors_are_refused_far_from_their_time(unix: int, otp: str) -> None:
    assert _codes.matching_step(RFC_SECRET, otp, at(unix + 90), EIGHT_DIGITS) is None
    if unix >= 120:  # no TOTP counter before 1970
        assert _codes.matching_step(RFC_SECRET, otp, at(unix - 90), EIGHT_DIGITS) is None


def test_rfc6238_vector_with_the_other_digits_is_refused() -> None:
    # The same time step, but a six-digit check: the 8-digit code does not match.
    assert _codes.matching_step(RFC_SECRET, "94287082", at(59), ts.Settings()) is None
    assert _codes.matching_step(RFC_SECRET, "287082", at(59), ts.Settings()) == 1


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_r4_one_period_of_drift_is_accepted_either_way(offset: int) -> None:
    now = at(1_700_000_000)
    step = int(now.timestamp()) // 30 + offset
    code = pyotp.TOTP(RFC_SECRET).at(now + timedelta(seconds=30 * offset))
    assert _codes.matching_step(RFC_SECRET, code, now, ts.Settings()) == step


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_r4_two_periods_of_drift_are_refused(offset: int) -> None:
    now = at(1_700_000_000)
    code = pyotp.TOTP(RFC_SECRET).at(now + timedelta(seconds=30 * offset))
    assert _codes.matching_step(RFC_SECRET, code, now, ts.Settings()) is None


def test_r4_the_drift_window_is_configurable() -> None:
    now = at(1_700_000_000)
    two_late = pyotp.TOTP(RFC_SECRET).at(now - timedelta(seconds=60))
    strict = ts.Settings(totp_drift=0)
    loose = ts.Settings(totp_drift=2)
    assert _codes.matching_step(RFC_SECRET, two_late, now, loose) == int(now.timestamp()) // 30 - 2
    one_late = pyotp.TOTP(RFC_SECRET).at(now - timedelta(seconds=30))
    assert _codes.matching_step(RFC_SECRET, one_late, now, strict) is None


def test_r4_the_whole_period_is_valid_not_only_its_start() -> None:
    start = at(1_700_000_010 - 1_700_000_010 % 30)
    code = pyotp.TOTP(RFC_SECRET).at(start)
    for second in (0, 1, 15, 29):
        when = start + timedelta(seconds=second)
        assert _codes.matching_step(RFC_SECRET, code, when, ts.Settings(totp_drift=0)) is not None


def test_r4_accept_step_records_the_step_and_refuses_it_again() -> None:
    user = User(
        id="u",
        account_id="a",
        email="u@x.test",
        role=ts.Role.MEMBER,
        password_hash="-",
        created_at=at(0),
    )
    user = user.accept_step(100)
    assert user.two_factor.last_step == 100
    for step in (100, 99):
        with pytest.raises(ts.InvalidCode) as replayed:
            user.accept_step(step)
        assert replayed.value.reason == "replayed"
    assert user.accept_step(101).two_factor.last_step == 101


# -- replay protection through the service (R4) ---------------------------------------------


def code_login(world: World, code: str) -> ts.LoggedIn:
    step = world.service.login(world.member.email, PASSWORD)
    assert isinstance(step, ts.CodeRequired)
    return world.service.complete_login(step, code)


@pytest.fixture
def member_phone(world: World) -> Phone:
    session = world.login(world.member)
    phone = world.enroll(session)
    world.clock.advance(300)  # well past the step used to confirm the enrolment
    return phone


def test_r4_the_same_otp_is_refused_the_second_time(world: World, member_phone: Phone) -> None:
    code = member_phone.code()
    code_login(world, code)
    with pytest.raises(ts.InvalidCode) as again:
        code_login(world, code)
    assert again.value.reason == "replayed"
    # Still refused later in the same period, and in the next (it is in the drift window).
    world.clock.advance(20)
    with pytest.raises(ts.InvalidCode):
        code_login(world, code)


def test_r4_an_older_code_is_refused_after_a_newer_one_was_used(
    world: World, member_phone: Phone
) -> None:
    # The code of the next period (a phone a little fast) is used first ...
    code_login(world, member_phone.code(offset_steps=1))
    # ... then the code of the current period, never used, is older: refused.
    with pytest.raises(ts.InvalidCode) as older:
        code_login(world, member_phone.code())
    assert older.value.reason == "replayed"


def test_r4_replay_protection_records_the_verified_step_not_the_current_one(
    world: World, member_phone: Phone
) -> None:
    # A code one period late is used: what is recorded is its step, the previous one,
    # so the current period's code still works (recording "now" would refuse it) ...
    late = member_phone.code(offset_steps=-1)
    code_login(world, late)
    code_login(world, member_phone.code())
    # ... and after the code one period ahead, the late one does not work again.
    code_login(world, member_phone.code(offset_steps=1))
    with pytest.raises(ts.InvalidCode):
        code_login(world, late)


def test_r4_a_refused_replay_does_not_move_the_recorded_step(
    world: World, member_phone: Phone, store: ts.Store
) -> None:
    code = member_phone.code()
    code_login(world, code)
    with store.transaction(write=False) as tx:
        recorded = tx.get_user(world.member.id)
    assert recorded is not None
    assert recorded.two_factor.last_step == int(world.clock.now().timestamp()) // 30
    with pytest.raises(ts.InvalidCode):
        code_login(world, code)
    with store.transaction(write=False) as tx:
        again = tx.get_user(world.member.id)
    assert again is not None
    assert again.two_factor.last_step == recorded.two_factor.last_step


def test_r4_replay_keys_are_per_user(
    store: ts.Store,
    clock: ManualClock,
    keyring: ts.AESGCMKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two users whose apps hold the same secret: one's use of a code blocks only them.
    shared = pyotp.random_base32(32)
    monkeypatch.setattr("twostep._stories._shared.new_secret", lambda _settings: shared)
    service = ts.TwoStep(store, issuer="Acme", clock=clock, settings=FAST, cipher=keyring)
    account = service.create_account("Acme")
    users = [service.create_user(account.id, f"{name}@acme.test", PASSWORD) for name in ("a", "b")]
    phone = Phone(shared, clock)
    for user in users:
        step = service.login(user.email, PASSWORD)
        assert isinstance(step, ts.LoggedIn)
        enrollment = service.begin_enrollment(step.session)
        assert enrollment.secret == shared
        service.confirm_enrollment(step.session, phone.code())

    clock.advance(60)
    code = phone.code()
    for user in users:
        step = service.login(user.email, PASSWORD)
        assert isinstance(step, ts.CodeRequired)
        assert service.complete_login(step, code).session.user_id == user.id
    for user in users:
        step = service.login(user.email, PASSWORD)
        assert isinstance(step, ts.CodeRequired)
        with pytest.raises(ts.InvalidCode):
            service.complete_login(step, code)


def test_r4_eight_digit_codes_work_end_to_end(
    store: ts.Store, clock: ManualClock, keyring: ts.AESGCMKeyring
) -> None:
    service = ts.TwoStep(
        store, issuer="Acme", clock=clock, settings=replace(FAST, totp_digits=8), cipher=keyring
    )
    account = service.create_account("Acme")
    user = service.create_user(account.id, "a@acme.test", PASSWORD)
    step = service.login(user.email, PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    enrollment = service.begin_enrollment(step.session)
    assert "digits=8" in enrollment.uri
    phone = Phone(enrollment.secret, clock, digits=8)
    service.confirm_enrollment(step.session, phone.code())
    clock.advance(30)
    login = service.login(user.email, PASSWORD)
    assert isinstance(login, ts.CodeRequired)
    with pytest.raises(ts.InvalidCode):
        service.complete_login(login, phone.code()[:6])
    assert service.complete_login(login, phone.code()).session.user_id == user.id


@given(key=st.binary(min_size=1, max_size=100), message=st.binary(max_size=16))
def test_the_precomputed_hmac_pads_give_the_standard_hmac_sha1(key: bytes, message: bytes) -> None:
    # R4: the code check hashes with pads made once per key; it must be RFC 2104 HMAC
    # for every key length, including keys longer than SHA-1's 64-byte block.
    inner, outer = _codes._hmac_pads(key)
    ours = hashlib.sha1(outer + hashlib.sha1(inner + message).digest()).digest()  # noqa: S324
    assert ours == hmac.digest(key, message, "sha1")


def test_r4_accepting_a_step_copies_the_user_as_dataclasses_replace_would() -> None:
    user = User(
        id="u1",
        account_id="a1",
        email="a@example.com",
        role=ts.Role.MEMBER,
        password_hash="$argon2id$...",
        created_at=at(0),
        two_factor=_domain.TwoFactorState(secret="sealed", last_step=7, enabled_at=at(1)),
        session_generation=3,
    )
    moved = user.accept_step(9)
    assert moved == replace(user, two_factor=replace(user.two_factor, last_step=9))
    assert user.two_factor.last_step == 7  # the original is untouched
