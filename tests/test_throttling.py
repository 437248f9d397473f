"""Throttling (R6): backoff per challenge, user, email and client, stored in the store.

Also the bound that docs/security.md states: from the settings, how many code guesses
per day an attacker who has the password can make, and their chance within a year.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

import twostep as ts
from twostep._domain import ThrottleKey, ThrottleScope
from twostep._passwords import Passwords
from twostep.testing import FAST, ManualClock, Phone

from .conftest import PASSWORD, World, ask_code

DOCS = Path(__file__).resolve().parent.parent / "docs" / "security.md"
DAY = 86_400.0
YEAR_DAYS = 365


def failures(store: ts.Store, key: str) -> int:
    scope, _, subject = key.partition(":")  # "user:<id>": the key as stores keep it
    with store.transaction(write=False) as tx:
        state = tx.get_throttle(ThrottleKey(ThrottleScope(scope), subject))
    return 0 if state is None else state.failures


def wrong_code(phone: Phone) -> str:
    """A well-formed OTP that the phone's secret does not accept in the drift window."""
    valid = {phone.code(offset_steps=o) for o in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(100)) if c not in valid)


def enroll_member(world: World) -> Phone:
    session = world.login(world.member)
    return world.enroll(session)


def fail_code_once(world: World, phone: Phone, *, client: str | None = None) -> None:
    """A new login (the password is right) and one wrong code."""
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode):
        world.service.complete_login(step, wrong_code(phone), client=client)


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Argon2 password verification, counted."""
    calls: list[str] = []
    verify = Passwords.verify

    def counting(self: Passwords, password_hash: str | None, password: str) -> bool:
        calls.append("verify")
        return verify(self, password_hash, password)

    monkeypatch.setattr(Passwords, "verify", counting)
    return calls


# -- backoff ---------------------------------------------------------------------------------


def test_r6_the_delay_doubles_after_the_free_failures_up_to_the_cap() -> None:
    conf = ts.ThrottleSettings()
    assert [conf.delay(n) for n in range(1, 6)] == [timedelta(0)] * 5
    assert [conf.delay(n).total_seconds() for n in range(6, 10)] == [2, 4, 8, 16]
    assert conf.delay(18) == timedelta(seconds=8_192)
    assert conf.delay(19) == timedelta(hours=4)  # 16,384 s, capped at max_delay
    assert conf.delay(10**9) == conf.max_delay


def test_r6_backoff_grows_with_consecutive_failures_and_success_resets_it(
    world: World, store: ts.Store
) -> None:
    phone = enroll_member(world)
    key = f"user:{world.member.id}"
    conf = FAST.code_throttle
    waits: list[int] = []
    for n in range(1, conf.free_failures + 5):
        fail_code_once(world, phone)
        assert failures(store, key) == n
        step = ask_code(world.service, world.member.email)
        if n <= conf.free_failures:
            continue
        with pytest.raises(ts.Throttled) as blocked:
            world.service.complete_login(step, phone.code())
        assert blocked.value.scope == "user"
        waits.append(blocked.value.retry_after)
        world.clock.advance(blocked.value.retry_after)
    assert waits == [2, 4, 8, 16]

    step = ask_code(world.service, world.member.email)
    done = world.service.complete_login(step, world.fresh_code(world.member.id))
    assert world.service.check_session(done.session).user_id == world.member.id
    assert failures(store, key) == 0  # a success clears the count
    fail_code_once(world, phone)  # so the next failure is a free one again
    assert failures(store, key) == 1
    step = ask_code(world.service, world.member.email)
    world.service.complete_login(step, world.fresh_code(world.member.id))


def test_r6_the_count_is_forgotten_after_a_quiet_day(world: World, store: ts.Store) -> None:
    phone = enroll_member(world)
    key = f"user:{world.member.id}"
    for _ in range(3):
        fail_code_once(world, phone)
    world.clock.advance(FAST.code_throttle.forget_after.total_seconds() + 1)
    fail_code_once(world, phone)
    assert failures(store, key) == 1


def test_r6_the_user_count_survives_new_logins(world: World, store: ts.Store) -> None:
    phone = enroll_member(world)
    key = f"user:{world.member.id}"
    first = ask_code(world.service, world.member.email)
    for _ in range(3):
        with pytest.raises(ts.InvalidCode):
            world.service.complete_login(first, wrong_code(phone))
    second = ask_code(world.service, world.member.email)  # a new challenge...
    assert failures(store, key) == 3  # ...does not reset the user's count
    with pytest.raises(ts.InvalidCode) as wrong:
        world.service.complete_login(second, wrong_code(phone))
    assert wrong.value.attempts_left == FAST.challenge_max_attempts - 1  # per challenge
    assert failures(store, key) == 4


def test_r6_the_challenge_dies_but_the_user_count_goes_on(world: World, store: ts.Store) -> None:
    phone = enroll_member(world)
    step = ask_code(world.service, world.member.email)
    for _ in range(FAST.challenge_max_attempts):
        with pytest.raises(ts.InvalidCode):
            world.service.complete_login(step, wrong_code(phone))
    with pytest.raises(ts.ChallengeExpired) as dead:
        world.service.complete_login(step, world.fresh_code(world.member.id))
    assert dead.value.reason == "too_many_attempts"
    assert failures(store, f"user:{world.member.id}") == FAST.challenge_max_attempts


# -- the password step, per email --------------------------------------------------------------


@pytest.mark.parametrize("known", [True, False], ids=["known_email", "unknown_email"])
def test_r6_wrong_passwords_throttle_the_email(
    world: World, store: ts.Store, known: bool, argon2_calls: list[str]
) -> None:
    email = world.member.email if known else "nobody@acme.test"
    conf = FAST.password_throttle
    for _ in range(conf.free_failures + 1):
        with pytest.raises(ts.InvalidCredentials):
            world.service.login(email, "not the password")
    assert failures(store, f"email:{email}") == conf.free_failures + 1
    verified = len(argon2_calls)
    for attempt in (email, email.upper(), f"  {email} "):  # the same email, any case
        with pytest.raises(ts.Throttled) as blocked:
            world.service.login(attempt, PASSWORD)
        assert blocked.value.scope == "email"
        assert blocked.value.retry_after == 2
    assert len(argon2_calls) == verified  # refused before any password was checked
    # Another email is not affected.
    assert isinstance(world.service.login(world.manager.email, PASSWORD), ts.LoggedIn)
    world.clock.advance(2)
    if known:
        assert isinstance(world.service.login(email, PASSWORD), ts.LoggedIn)
        assert failures(store, f"email:{email}") == 0
    else:
        with pytest.raises(ts.InvalidCredentials):
            world.service.login(email, PASSWORD)


# -- the client key ---------------------------------------------------------------------------


def test_r6_a_client_key_is_throttled_across_emails(world: World, store: ts.Store) -> None:
    client = "198.51.100.7"
    free = FAST.client_throttle.free_failures
    for n in range(free + 1):  # a different email each time: no email key blocks
        with pytest.raises(ts.InvalidCredentials):
            world.service.login(f"guess{n}@acme.test", "not the password", client=client)
    assert failures(store, f"client:{client}") == free + 1
    with pytest.raises(ts.Throttled) as blocked:
        world.service.login(world.member.email, PASSWORD, client=client)
    assert blocked.value.scope == "client"
    # Another client, or none, is not affected.
    assert isinstance(
        world.service.login(world.member.email, PASSWORD, client="203.0.113.1"), ts.LoggedIn
    )
    world.clock.advance(blocked.value.retry_after)
    assert isinstance(world.service.login(world.member.email, PASSWORD, client=client), ts.LoggedIn)
    # One good login takes back only its own attempt: the client's guesses still count.
    assert failures(store, f"client:{client}") == free + 1


def test_r6_wrong_codes_count_against_the_client_key_too(world: World, store: ts.Store) -> None:
    phone = enroll_member(world)
    client = "198.51.100.8"
    for n in range(1, 4):
        fail_code_once(world, phone, client=client)
        assert failures(store, f"client:{client}") == n


# -- checked before anything else --------------------------------------------------------------


def test_r6_throttled_is_raised_before_the_code_is_checked(world: World, store: ts.Store) -> None:
    phone = enroll_member(world)
    backup = world.backup_codes[world.member.id][0]
    world.clock.advance(30)  # a time step whose code was never used
    for _ in range(FAST.code_throttle.free_failures + 1):
        fail_code_once(world, phone)
    step = ask_code(world.service, world.member.email)
    with store.transaction(write=False) as tx:
        before = tx.get_user(world.member.id)
    for right in (phone.code(), backup):
        with pytest.raises(ts.Throttled):
            world.service.complete_login(step, right)
    with store.transaction(write=False) as tx:
        after = tx.get_user(world.member.id)
    assert after == before  # no OTP step recorded, no backup code spent
    assert after is not None
    assert after.backup_codes_remaining == FAST.backup_code_count


def test_r6_a_correct_code_for_an_action_is_throttled_too(world: World) -> None:
    session = world.login(world.member)
    phone = world.enroll(session)
    world.clock.advance(30)  # a time step whose code was never used
    for _ in range(FAST.code_throttle.free_failures + 1):
        with pytest.raises(ts.InvalidCode):
            world.service.regenerate_backup_codes(session, wrong_code(phone))
    with pytest.raises(ts.Throttled):
        world.service.regenerate_backup_codes(session, phone.code())
    world.clock.advance(2)
    assert len(world.service.regenerate_backup_codes(session, phone.code())) == 10
    assert world.service.two_factor_status(session).backup_codes_remaining == 10


# -- stored, shared, audited ---------------------------------------------------------------------


def test_r6_counts_are_shared_by_every_process_over_one_database(tmp_path: Path) -> None:
    clock = ManualClock()
    keyring = ts.AESGCMKeyring.generate()
    path = tmp_path / "shared.db"
    first_store, second_store = ts.SQLiteStore(path), ts.SQLiteStore(path)
    try:
        first = ts.TwoStep(first_store, issuer="A", clock=clock, settings=FAST, cipher=keyring)
        second = ts.TwoStep(second_store, issuer="A", clock=clock, settings=FAST, cipher=keyring)
        account = first.create_account("Acme")
        first.create_user(account.id, "ann@acme.test", PASSWORD)
        for _ in range(FAST.password_throttle.free_failures + 1):
            with pytest.raises(ts.InvalidCredentials):
                first.login("ann@acme.test", "not the password")
        with pytest.raises(ts.Throttled):
            second.login("ann@acme.test", PASSWORD)
        clock.advance(2)
        assert isinstance(second.login("ann@acme.test", PASSWORD), ts.LoggedIn)
        assert failures(first_store, "email:ann@acme.test") == 0
    finally:
        first_store.close()
        second_store.close()


def test_r60_throttled_attempts_are_audited(world: World) -> None:
    phone = enroll_member(world)
    for _ in range(FAST.password_throttle.free_failures + 1):
        with pytest.raises(ts.InvalidCredentials):
            world.service.login(world.member.email, "not the password")
    with pytest.raises(ts.Throttled):
        world.service.login(world.member.email, PASSWORD)
    world.clock.advance(2)
    for _ in range(FAST.code_throttle.free_failures + 1):
        fail_code_once(world, phone)
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.Throttled):
        world.service.complete_login(step, phone.code())

    owner = world.login(world.owner)
    events = world.service.audit_trail(owner, limit=1000)
    throttled = {
        (e.action, e.reason, e.actor_id) for e in events if e.outcome is ts.Outcome.THROTTLED
    }
    assert throttled == {
        ("login", "email", world.member.id),
        ("login", "user", world.member.id),
    }
    failed = [e for e in events if e.outcome is ts.Outcome.FAILURE and e.action == "login"]
    passwords = FAST.password_throttle.free_failures + 1
    codes = FAST.code_throttle.free_failures + 1
    assert sum(e.reason == "invalid_credentials" for e in failed) == passwords
    assert sum(e.reason == "wrong" for e in failed) == codes


# -- the bound of docs/security.md ----------------------------------------------------------------


@dataclass(frozen=True)
class GuessBound:
    """What the code throttle leaves to an attacker who knows the password."""

    guesses_per_cycle: int  # guesses between two resets of the count
    cycle_seconds: float  # from the first guess of a cycle to the first of the next
    guesses_per_day: float
    guesses_per_year: float
    valid_codes: int  # codes accepted at any moment (the drift window)
    code_space: int
    chance_per_year: float


def guess_bound(settings: ts.Settings) -> GuessBound:
    """The steady-state maximum of code guesses, from the settings alone.

    With the password, a new login (a new challenge) is free, so the per-challenge limit
    does not bind; the per-user count does. After failure ``n`` the user waits
    ``delay(n)``; the count is forgotten ``forget_after`` after the last failure. So an
    attacker's best is a cycle of ``n`` guesses taking ``sum(delay(1..n-1))`` seconds,
    then ``forget_after`` of silence; the best ``n`` gives the rate. Each guess is right
    with chance ``(2 * drift + 1) / 10 ** digits`` (the codes of the drift window).
    """
    conf = settings.code_throttle
    forget = conf.forget_after.total_seconds()
    best: tuple[float, int, float] | None = None
    ramp = 0.0
    # Past the cap each guess costs max_delay, so the rate only falls towards
    # DAY / max_delay: a few thousand guesses cover any sane setting.
    for n in range(1, 10_000):
        if n > 1:
            ramp += conf.delay(n - 1).total_seconds()
        rate = n * DAY / (ramp + forget)
        if best is None or rate > best[0]:
            best = (rate, n, ramp + forget)
    assert best is not None
    per_day, n, cycle = best
    valid = 2 * settings.totp_drift + 1
    space = 10**settings.totp_digits
    per_year = per_day * YEAR_DAYS
    chance = 1 - (1 - valid / space) ** per_year
    return GuessBound(n, cycle, per_day, per_year, valid, space, chance)


def test_r6_the_guess_bound_has_the_expected_shape() -> None:
    bound = guess_bound(ts.Settings())
    assert bound.valid_codes == 3  # drift of one period either way: 3 codes at once
    assert bound.code_space == 1_000_000
    assert 0 < bound.chance_per_year < 0.05
    assert bound.guesses_per_cycle > FAST.code_throttle.free_failures
    assert bound.guesses_per_day > 86_400 / ts.ThrottleSettings().max_delay.total_seconds()
    # Stricter settings give a lower bound.
    strict = replace(
        ts.Settings(), code_throttle=ts.ThrottleSettings(forget_after=timedelta(days=7))
    )
    assert guess_bound(strict).guesses_per_day < bound.guesses_per_day


def doc_figure(text: str, label: str) -> str:
    """The value of the row ``| label | value |`` of the bound's table in the docs."""
    match = re.search(rf"^\|\s*{re.escape(label)}\s*\|\s*([^|]+?)\s*\|", text, re.MULTILINE)
    assert match is not None, f"docs/security.md has no row {label!r}"
    return match.group(1)


def number(text: str) -> float:
    return float(text.replace(",", "").replace("%", "").replace(" s", "").strip())


def test_r6_the_documented_bound_is_the_computed_one() -> None:
    text = DOCS.read_text(encoding="utf-8")
    bound = guess_bound(ts.Settings())
    assert number(doc_figure(text, "guesses per cycle")) == bound.guesses_per_cycle
    assert number(doc_figure(text, "length of a cycle (s)")) == bound.cycle_seconds
    assert number(doc_figure(text, "code guesses per day")) == round(bound.guesses_per_day, 1)
    assert number(doc_figure(text, "code guesses per year")) == round(bound.guesses_per_year)
    assert number(doc_figure(text, "codes valid at once")) == bound.valid_codes
    assert number(doc_figure(text, "possible codes")) == bound.code_space
    chance = number(doc_figure(text, "chance of a right guess within a year"))
    assert chance == round(100 * bound.chance_per_year, 2)
    assert math.isclose(chance / 100, bound.chance_per_year, abs_tol=5e-5)
