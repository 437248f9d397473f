"""``purge_expired`` through the service: what it removes changes no outcome (R6, R11).

The store contract (test_store_contract.py) checks which rows each store removes; these
tests check that the service passes the right cutoff and that users see no difference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

import twostep as ts
from twostep._domain import ThrottleKey, ThrottleScope
from twostep._store import PurgeBatch
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


class _Batches:
    """A store that records, per transaction, the limits of its purge batches and their yield."""

    def __init__(self, inner: ts.Store) -> None:
        self.inner = inner
        self.transactions: list[list[tuple[int, int]]] = []

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[ts.Transaction]:
        calls: list[tuple[int, int]] = []
        with self.inner.transaction(write=write) as tx:
            yield _PurgeSpy(tx, calls)
        if calls:
            self.transactions.append(calls)

    def close(self) -> None:
        self.inner.close()


class _PurgeSpy:
    def __init__(self, tx: ts.Transaction, calls: list[tuple[int, int]]) -> None:
        self._tx = tx
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def purge_expired(self, now: datetime, **given: Any) -> PurgeBatch:
        batch = self._tx.purge_expired(now, **given)
        self._calls.append((given["limit"], batch.removed))
        return batch


def test_r130_purge_runs_in_transactions_of_a_bounded_batch_and_removes_everything(
    store: ts.Store, clock: ManualClock, keyring: ts.AESGCMKeyring
) -> None:
    spy = _Batches(store)
    settings = replace(FAST, purge_batch=2)
    service = ts.TwoStep(spy, issuer="Acme", clock=clock, settings=settings, cipher=keyring)  # type: ignore[arg-type]
    account = service.create_account("Acme")
    emails = [f"user{i}@acme.test" for i in range(5)]
    for i, email in enumerate(emails):
        service.create_user(
            account.id, email, PASSWORD, ts.Role.OWNER if i == 0 else ts.Role.MEMBER
        )
    sessions = [service.login(email, PASSWORD).session for email in emails]  # type: ignore[union-attr]
    clock.advance(settings.session_ttl.total_seconds())

    assert service.purge_expired() == len(sessions)
    # One batch per transaction, each given the setting as its limit and removing no
    # more; the 5 sessions needed several.
    assert all(len(calls) == 1 for calls in spy.transactions)
    assert {limit for [(limit, _)] in spy.transactions} == {2}
    assert max(removed for [(_, removed)] in spy.transactions) <= 2
    assert len(spy.transactions) > 3
    with store.transaction(write=False) as tx:
        assert all(
            tx.get_session(hashlib.sha256(s.token.encode()).hexdigest()) is None for s in sessions
        )
    spy.transactions.clear()
    assert service.purge_expired() == 0


def test_r130_purge_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="purge_batch"):
        replace(FAST, purge_batch=0)
