"""Abuse (R71-R74): lock-out, parallel logins, refusals that escaped the audit trail."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock

from .conftest import ALL_STORES, PASSWORD, World, every_store

any_store = pytest.fixture(params=ALL_STORES, name="any_store")(every_store)  # PostgreSQL too


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


# -- R71: parallel logins ------------------------------------------------------------------


class Gate:
    """Holds every password check until told to go, to keep attempts in flight together."""

    def __init__(self) -> None:
        self.entered = 0
        self.refused = 0
        self._changed = threading.Condition()
        self._open = threading.Event()

    def hold(self, verify: Callable[..., bool]) -> Callable[..., bool]:
        def held(*args: object) -> bool:
            with self._changed:
                self.entered += 1
                self._changed.notify_all()
            assert self._open.wait(timeout=30)
            return verify(*args)

        return held

    def note_refused(self) -> None:
        with self._changed:
            self.refused += 1
            self._changed.notify_all()

    def await_all(self, count: int) -> None:
        """Until every attempt is in flight or refused; then let them go."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.entered + self.refused == count, 30)
        self._open.set()


def parallel_logins(
    service: ts.TwoStep, monkeypatch: pytest.MonkeyPatch, email: str, passwords: list[str]
) -> tuple[Gate, list[object]]:
    gate = Gate()
    monkeypatch.setattr(
        service._context.passwords, "verify", gate.hold(service._context.passwords.verify)
    )
    results: list[object] = [None] * len(passwords)

    def attempt(i: int) -> None:
        try:
            results[i] = service.login(email, passwords[i], client=f"client-{i % 2}")
        except ts.TwoStepError as error:
            results[i] = error
            if isinstance(error, ts.Throttled):
                gate.note_refused()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(passwords))]
    for thread in threads:
        thread.start()
    gate.await_all(len(passwords))
    for thread in threads:
        thread.join(timeout=30)
    return gate, results


def test_r71_right_passwords_sent_together_all_pass(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: 2 of 8 were refused as "too many failed attempts", counted in advance.
    gate, results = parallel_logins(world.service, monkeypatch, world.member.email, [PASSWORD] * 8)
    assert gate.entered == 8
    assert all(isinstance(r, ts.LoggedIn) for r in results), results


@pytest.mark.parametrize("earlier_failures", [0, 1, 3])
def test_r71_wrong_passwords_sent_together_get_no_further_than_one_by_one(
    world: World, monkeypatch: pytest.MonkeyPatch, earlier_failures: int
) -> None:
    conf = FAST.password_throttle
    for _ in range(earlier_failures):
        with pytest.raises(ts.InvalidCredentials):
            world.service.login(world.member.email, "a wrong password")
    gate, results = parallel_logins(
        world.service, monkeypatch, world.member.email, ["a wrong password"] * 30
    )
    # One by one, guesses go on until one that fails earns a block: free_failures + 1
    # in all. Together, no more get checked once a failure has been counted; from a
    # clean count, never more than max_in_flight at once.
    one_by_one = conf.free_failures + 1 - earlier_failures
    allowance = one_by_one if earlier_failures else conf.max_in_flight
    assert gate.entered == allowance
    assert sum(isinstance(r, ts.InvalidCredentials) for r in results) == allowance
    assert sum(isinstance(r, ts.Throttled) for r in results) == 30 - allowance


# -- R72: lock-out of a victim -------------------------------------------------------------


def block_email(world: World, client: str | None, times: int | None = None) -> None:
    for _ in range(times or FAST.password_throttle.free_failures + 1):
        with pytest.raises(ts.InvalidCredentials):
            world.service.login(world.member.email, "a wrong password", client=client)


def test_r72_knowing_an_email_does_not_keep_its_user_out(world: World) -> None:
    block_email(world, client="203.0.113.9")
    # The attacker's client and hosts that pass no client key are held back...
    for client in ("203.0.113.9", None):
        with pytest.raises(ts.Throttled) as caught:
            world.service.login(world.member.email, PASSWORD, client=client)
        assert caught.value.scope in ("email", "client")
    # ...but the user, from a client with no failure, logs in.
    assert isinstance(
        world.service.login(world.member.email, PASSWORD, client="198.51.100.1"), ts.LoggedIn
    )
    # And that success lifts the email's block for everyone.
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.LoggedIn)


def test_r72_an_attacker_without_client_keys_cannot_lock_out_a_clean_client(
    world: World,
) -> None:
    conf = FAST.password_throttle
    for _ in range(20):  # as fast as the blocks let them, for hours
        block_email(world, client=None, times=1)
        world.clock.advance(conf.delay(conf.free_failures + 20).total_seconds())
    assert isinstance(
        world.service.login(world.member.email, PASSWORD, client="198.51.100.1"), ts.LoggedIn
    )


def test_r72_clean_clients_let_through_a_blocked_email_are_throttled_too(world: World) -> None:
    block_email(world, client="203.0.113.9")
    clean = FAST.clean_client_throttle
    # Each fresh client key buys the attacker one guess, until the clean-client count
    # blocks too: then even the user's clean client waits.
    for i in range(clean.free_failures + 1):
        with pytest.raises(ts.InvalidCredentials):
            world.service.login(world.member.email, "a wrong password", client=f"fresh-{i}")
    with pytest.raises(ts.Throttled) as caught:
        world.service.login(world.member.email, PASSWORD, client="198.51.100.1")
    assert caught.value.scope == "clean_clients"
    world.clock.advance(clean.delay(clean.free_failures + 1).total_seconds())
    assert isinstance(
        world.service.login(world.member.email, PASSWORD, client="198.51.100.1"), ts.LoggedIn
    )


# -- R74: a store failure is no failed attempt ------------------------------------------------


class FailingSecondHalf(ts.InMemoryStore):
    """An in-memory store whose next write transactions fail, when told to."""

    fail_next = 0

    def transaction(self, *, write: bool = True) -> Any:
        if self.fail_next:
            self.fail_next -= 1
            msg = "the store is unavailable"
            raise ts.StoreError(msg, reason="unavailable")
        return super().transaction(write=write)


def test_r74_a_store_failure_in_the_second_half_of_a_login_is_not_a_failed_password(
    keyring: ts.AESGCMKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FailingSecondHalf()
    clock = ManualClock()
    service = ts.TwoStep(store, issuer="Acme", clock=clock, settings=FAST, cipher=keyring)
    account = service.create_account("Acme")
    service.create_user(account.id, "ann@acme.test", PASSWORD)
    verify = service._context.passwords.verify

    def verify_then_fail(*args: Any) -> bool:
        store.fail_next = 1  # the transaction after the hash
        return verify(*args)

    monkeypatch.setattr(service._context.passwords, "verify", verify_then_fail)
    for _ in range(FAST.password_throttle.free_failures + 3):
        with pytest.raises(ts.StoreError):
            service.login("ann@acme.test", PASSWORD)
    monkeypatch.setattr(service._context.passwords, "verify", verify)
    key = ts.ThrottleKey(ts.ThrottleScope.EMAIL, "ann@acme.test")
    with store.transaction() as tx:
        state = tx.get_throttle(key)
    assert state is None or state.failures == 0
    assert isinstance(service.login("ann@acme.test", PASSWORD), ts.LoggedIn)


# -- the bounds of docs/security.md -----------------------------------------------------------

DAY_S = 86_400
SECURITY_DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def guesses_per_day(conf: ts.ThrottleSettings, burst: int) -> tuple[int, float]:
    """The best steady rate of wrong guesses under one key, and its guesses per cycle.

    A cycle is ``n`` guesses, then ``forget_after`` of silence to clear the count. From
    a clean count, ``burst`` guesses go at once (in flight together, R71); each later
    one waits for the block the failures before it earned.
    """
    forget = conf.forget_after.total_seconds()
    best = (0.0, 0)
    ramp = 0.0
    for n in range(1, 10_000):
        if n > burst:
            ramp += conf.delay(n - 1).total_seconds()
        best = max(best, (n * DAY_S / (ramp + forget), n))
    return best[1], best[0]


def fresh_keys_to_lock_out(conf: ts.ThrottleSettings) -> tuple[int, float]:
    """Fresh client keys an attacker spends to keep a clean client out.

    For a first day, then each day after: one failure per ``max_delay`` keeps it going.
    """
    blocked, failures = 0.0, conf.free_failures
    while blocked < DAY_S:
        failures += 1
        blocked += conf.delay(failures).total_seconds()
    return failures, DAY_S / conf.max_delay.total_seconds()


def doc_row(text: str, label: str) -> float:
    match = re.search(rf"^\|\s*{re.escape(label)}\s*\|\s*([^|]+?)\s*\|", text, re.MULTILINE)
    assert match is not None, f"docs/security.md has no row {label!r}"
    return float(match.group(1).replace(",", ""))


def test_r72_the_documented_lockout_and_guess_bounds_are_the_computed_ones() -> None:
    text = SECURITY_DOC.read_text(encoding="utf-8")
    settings = ts.Settings()
    email = settings.password_throttle
    clean = settings.clean_client_throttle
    _, by_email = guesses_per_day(email, email.max_in_flight)
    _, by_clean = guesses_per_day(clean, clean.max_in_flight)
    first_day, later = fresh_keys_to_lock_out(clean)
    assert doc_row(text, "password guesses a day through the email's count") == round(by_email, 1)
    assert doc_row(text, "password guesses a day through clean clients") == round(by_clean, 1)
    assert doc_row(text, "password guesses a day on one email, in all") == round(
        by_email + by_clean, 1
    )
    assert doc_row(text, "fresh client keys to keep a clean client out for a day") == first_day
    assert doc_row(text, "fresh client keys a day to keep it out after that") == later
    # The shape: a clean client costs an attacker many keys; the burst changes little.
    assert first_day > clean.free_failures + 10
    assert guesses_per_day(email, 1)[1] <= by_email < guesses_per_day(email, 1)[1] * 1.01
