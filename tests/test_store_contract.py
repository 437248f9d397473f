"""The contract every store adapter passes: each Transaction method, on each store kind.

To run the suite on another adapter, add its kind to ``STORE_KINDS`` (``conftest.make_store``
must know how to make it).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import twostep as ts
from twostep._audit_pages import AuditQuery
from twostep._domain import (
    BackupCodeSet,
    ChallengeKind,
    LoginChallenge,
    RememberedDevice,
    SecurityKey,
    SessionRecord,
    ThrottleKey,
    ThrottleScope,
    ThrottleState,
    TwoFactorState,
)

from .conftest import make_store

STORE_KINDS = ["memory", "sqlite", "postgres"]

T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
USER_U1 = ThrottleKey(ThrottleScope.USER, "u1")


@pytest.fixture(params=STORE_KINDS)
def contract_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ts.Store]:
    store = make_store(request.param, tmp_path)
    yield store
    store.close()


def account(account_id: str = "acc1", **changes: object) -> ts.Account:
    base = ts.Account(id=account_id, name="Acme Ltd", created_at=T0)
    return replace(base, **changes)  # type: ignore[arg-type]


def user(user_id: str, email: str, account_id: str = "acc1", **changes: object) -> ts.User:
    base = ts.User(
        id=user_id,
        account_id=account_id,
        email=email,
        role=ts.Role.MEMBER,
        password_hash="$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
        created_at=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def full_user(user_id: str = "u1", email: str = "Full.User@Example.test") -> ts.User:
    """A user with every field set, 2FA on, a pending secret and a used backup code."""
    return user(
        user_id,
        email,
        role=ts.Role.OWNER,
        active=False,
        created_at=T0 + timedelta(microseconds=1),
        two_factor=TwoFactorState(
            secret="v1:sealed-secret",
            last_step=59_123_456,
            enabled_at=T0 + timedelta(seconds=1, microseconds=654321),
            pending_secret="v1:sealed-pending",
            pending_expires_at=T0 + timedelta(minutes=10, microseconds=7),
        ),
        backup_codes=BackupCodeSet(
            salt=secrets.token_bytes(16),
            digests=tuple(secrets.token_bytes(32) for _ in range(10)),
            used=(False, True, False, False, False, False, False, False, True, False),
        ),
        session_generation=7,
        security_keys=2,
    )


class Boom(Exception):
    """Raised inside a transaction to abort it."""


def abort_after(store: ts.Store, writes: Callable[[ts.Transaction], None]) -> None:
    """Run ``writes`` in a write transaction, then fail it."""
    with store.transaction() as tx:
        writes(tx)
        raise Boom


def seed(store: ts.Store, *users: ts.User, accounts: tuple[str, ...] = ("acc1",)) -> None:
    with store.transaction() as tx:
        for account_id in accounts:
            tx.put_account(account(account_id))
        for u in users:
            tx.add_user(u)


def purge(tx: ts.Transaction, now: datetime, **cutoffs: Any) -> int:
    """A whole purge in batches of 2 rows (R130): how many rows went or were cleared."""
    removed, resume = 0, None
    while True:
        batch = tx.purge_expired(now, limit=2, resume=resume, **cutoffs)
        assert batch.removed <= 2
        removed += batch.removed
        if batch.resume is None:
            return removed
        resume = batch.resume


# -- accounts -------------------------------------------------------------------------------


def test_account_round_trip_and_replace(contract_store: ts.Store) -> None:
    a = account(two_factor_required=True, session_generation=3)
    with contract_store.transaction() as tx:
        assert tx.get_account(a.id) is None
        tx.put_account(a)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_account(a.id) == a
    changed = a.with_requirement(False, T0)
    with contract_store.transaction() as tx:
        tx.put_account(changed)
    with contract_store.transaction(write=False) as tx:
        got = tx.get_account(a.id)
    assert got == changed
    assert got is not None
    assert got.created_at.tzinfo is not None
    assert got.created_at.microsecond == 123456


# -- users ------------------------------------------------------------------------------------


def test_user_round_trip_with_every_field(contract_store: ts.Store) -> None:
    u = full_user()
    seed(contract_store, u)
    with contract_store.transaction(write=False) as tx:
        got = tx.get_user(u.id)
    assert got == u
    assert got is not None
    assert got.backup_codes == u.backup_codes
    assert got.backup_codes_remaining == 8
    assert got.two_factor.pending_secret == "v1:sealed-pending"
    assert got.two_factor.enabled_at == u.two_factor.enabled_at
    assert got.created_at.microsecond == 123457


def test_plain_user_round_trip(contract_store: ts.Store) -> None:
    u = user("u2", "plain@example.test")
    seed(contract_store, u)
    with contract_store.transaction(write=False) as tx:
        got = tx.get_user("u2")
    assert got == u
    assert got is not None
    assert got.backup_codes is None
    assert got.two_factor == TwoFactorState()
    assert got.role is ts.Role.MEMBER


def test_put_user_replaces_every_field(contract_store: ts.Store) -> None:
    u = user("u1", "a@example.test")
    seed(contract_store, u)
    changed = full_user("u1", "a@example.test")
    with contract_store.transaction() as tx:
        tx.put_user(changed)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_user("u1") == changed
    back = changed.without_two_factor(end_sessions=True)
    with contract_store.transaction() as tx:
        tx.put_user(back)
    with contract_store.transaction(write=False) as tx:
        got = tx.get_user("u1")
    assert got == back
    assert got is not None
    assert got.backup_codes is None
    assert got.two_factor.pending_secret is None
    assert got.session_generation == 8


def test_find_user_by_email_key(contract_store: ts.Store) -> None:
    u = full_user(email="Full.User@Example.test")
    seed(contract_store, u)
    with contract_store.transaction(write=False) as tx:
        assert tx.find_user_by_email("full.user@example.test") == u
        assert tx.find_user_by_email("nobody@example.test") is None
        assert tx.get_user("nobody") is None


def test_add_user_refuses_a_taken_email_in_any_case(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "Same@Example.test"), accounts=("acc1", "acc2"))
    with pytest.raises(ts.EmailTaken), contract_store.transaction() as tx:
        tx.add_user(user("u2", "same@example.TEST", account_id="acc2"))
    with contract_store.transaction(write=False) as tx:
        assert tx.get_user("u2") is None
        found = tx.find_user_by_email("same@example.test")
    assert found is not None
    assert found.id == "u1"


def test_r88_put_user_changes_an_email_and_frees_the_old_one(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "Old@Example.test"), user("u2", "other@example.test"))
    with contract_store.transaction() as tx:
        old = tx.get_user("u1")
        assert old is not None
        tx.put_user(replace(old, email="New@Example.test"))
        assert tx.find_user_by_email("old@example.test") is None  # within the transaction
    with contract_store.transaction(write=False) as tx:
        found = tx.find_user_by_email("new@example.test")
        assert found is not None
        assert (found.id, found.email) == ("u1", "New@Example.test")
        assert tx.find_user_by_email("old@example.test") is None
    with contract_store.transaction() as tx:  # the old email is free for anyone
        tx.add_user(user("u3", "OLD@example.test"))
        moved = tx.get_user("u2")
        assert moved is not None
        tx.put_user(replace(moved, email="new.two@example.test"))
    with contract_store.transaction(write=False) as tx:
        assert [tx.find_user_by_email(k) for k in ("old@example.test", "other@example.test")] == [
            user("u3", "OLD@example.test"),
            None,
        ]
        again = tx.find_user_by_email("new.two@example.test")
        assert again is not None
        assert again.id == "u2"


def test_r88_put_user_changes_only_the_case_of_an_email(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "same@example.test"))
    with contract_store.transaction() as tx:
        tx.put_user(user("u1", "Same@EXAMPLE.test"))
    with contract_store.transaction(write=False) as tx:
        found = tx.find_user_by_email("same@example.test")
    assert found is not None
    assert (found.id, found.email) == ("u1", "Same@EXAMPLE.test")


@pytest.mark.parametrize("taken", ["b@example.test", "B@Example.TEST"])
def test_r88_put_user_refuses_another_users_email_in_any_case(
    contract_store: ts.Store, taken: str
) -> None:
    seed(contract_store, user("u1", "a@example.test"), user("u2", "b@example.test"))

    def writes(tx: ts.Transaction) -> None:
        tx.put_account(account("acc2"))
        tx.put_user(user("u1", taken))

    with pytest.raises(ts.EmailTaken), contract_store.transaction() as tx:
        writes(tx)
    with contract_store.transaction(write=False) as tx:  # rolled back, both unchanged
        assert tx.get_account("acc2") is None
        assert tx.get_user("u1") == user("u1", "a@example.test")
        assert tx.find_user_by_email("a@example.test") == user("u1", "a@example.test")
        assert tx.find_user_by_email("b@example.test") == user("u2", "b@example.test")
    with contract_store.transaction() as tx:  # and the store goes on
        tx.put_user(user("u1", "c@example.test"))
    with contract_store.transaction(write=False) as tx:
        assert tx.find_user_by_email("c@example.test") == user("u1", "c@example.test")


def test_users_of_an_account_in_creation_order(contract_store: ts.Store) -> None:
    users = [
        user(f"u{i}", f"u{i}@example.test", created_at=T0 + timedelta(seconds=10 - i))
        for i in range(4)
    ]
    stranger = user("zz", "zz@example.test", account_id="acc2")
    seed(contract_store, *users, stranger, accounts=("acc1", "acc2"))
    with contract_store.transaction(write=False) as tx:
        got = tx.users_of("acc1")
        assert tx.users_of("acc2") == [stranger]
        assert tx.users_of("nothing") == []
    assert [u.id for u in got] == ["u3", "u2", "u1", "u0"]


def test_users_page_orders_by_id_after_a_cursor(contract_store: ts.Store) -> None:
    ids = ["b7", "a1", "c3", "a9", "b2"]
    # Emails and creation times sort the other way round: only the id may order a page.
    made = {
        i: (f"{9 - n}{i}@example.test", T0 - timedelta(seconds=ord(i[0])))
        for n, i in enumerate(sorted(ids))
    }
    seed(
        contract_store,
        *(user(i, made[i][0], created_at=made[i][1]) for i in ids[:3]),
        *(user(i, made[i][0], account_id="acc2", created_at=made[i][1]) for i in ids[3:]),
        accounts=("acc1", "acc2"),
    )
    with contract_store.transaction(write=False) as tx:
        assert [u.id for u in tx.users_page("", 10)] == sorted(ids)
        assert [u.id for u in tx.users_page("", 2)] == ["a1", "a9"]
        assert [u.id for u in tx.users_page("a9", 2)] == ["b2", "b7"]
        assert [u.id for u in tx.users_page("b7", 2)] == ["c3"]
        assert tx.users_page("c3", 2) == []


def sealed(secret: str | None = None, pending: str | None = None) -> TwoFactorState:
    return TwoFactorState(secret=secret, pending_secret=pending)


def test_sealed_key_ids_counts_each_key_and_gives_its_first_user(
    contract_store: ts.Store,
) -> None:
    # A sealed value is `<version>.<key id>.<rest>`: confirmed and pending secrets both count.
    with contract_store.transaction(write=False) as tx:
        assert tx.sealed_key_ids() == {}
    seed(
        contract_store,
        user("u3", "c@example.test", two_factor=sealed(pending="v1.kA.pending-u3")),
        user("u0", "z@example.test"),
        user("u2", "b@example.test", two_factor=sealed("v1.kA.secret-u2", "v1.kA.pending-u2")),
        user("u1", "a@example.test", two_factor=sealed("v1.kB.secret-u1", "v1.kA.pending-u1")),
        user("u4", "d@example.test", two_factor=sealed("v1.k2026x.secret-u4")),
        user("u5", "e@example.test", two_factor=sealed("v1:no-key-id")),
        user("u6", "f@example.test", two_factor=sealed("v2.kA.another-version", "v1..x")),
    )
    with contract_store.transaction(write=False) as tx:
        found = tx.sealed_key_ids()
    assert found == {
        "kA": ts.SealedKeyUse(5, "u1", "v1.kA.pending-u1"),
        "kB": ts.SealedKeyUse(1, "u1", "v1.kB.secret-u1"),
        "k2026x": ts.SealedKeyUse(1, "u4", "v1.k2026x.secret-u4"),
        "": ts.SealedKeyUse(2, "u5", "v1:no-key-id"),  # values that name no key id
    }
    assert "pending" not in repr(found)  # a repr shows no sealed value
    with contract_store.transaction() as tx:
        tx.put_user(user("u1", "a@example.test"))
    with contract_store.transaction(write=False) as tx:
        assert tx.sealed_key_ids()["kA"] == ts.SealedKeyUse(4, "u2", "v1.kA.secret-u2") or (
            tx.sealed_key_ids()["kA"] == ts.SealedKeyUse(4, "u2", "v1.kA.pending-u2")
        )
        assert "kB" not in tx.sealed_key_ids()


# -- challenges, sessions, throttles ---------------------------------------------------------


def test_every_challenge_of_a_user_can_be_deleted_at_once(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"), user("u2", "b@example.test"))
    kinds = [ChallengeKind.CODE, ChallengeKind.ENROLLMENT, ChallengeKind.PASSWORD_RESET]
    made = [
        LoginChallenge(f"{owner}{i}".ljust(64, "x"), owner, kind, T0, T0 + timedelta(minutes=5))
        for owner in ("u1", "u2")
        for i, kind in enumerate(kinds)
    ]
    with contract_store.transaction() as tx:
        for challenge in made:
            tx.put_challenge(challenge)
    with contract_store.transaction() as tx:
        tx.delete_challenges_of("u1")
        tx.delete_challenges_of("nobody")
    with contract_store.transaction(write=False) as tx:
        left = [c for c in made if tx.get_challenge(c.token_hash) is not None]
    assert left == [c for c in made if c.user_id == "u2"]


def test_challenge_round_trip_update_and_delete(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"))
    challenge = LoginChallenge(
        token_hash="h" * 64,
        user_id="u1",
        kind=ChallengeKind.ENROLLMENT,
        created_at=T0,
        expires_at=T0 + timedelta(minutes=5, microseconds=1),
    )
    with contract_store.transaction() as tx:
        assert tx.get_challenge(challenge.token_hash) is None
        tx.put_challenge(challenge)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_challenge(challenge.token_hash) == challenge
    failed = challenge.with_failure().with_failure()
    with contract_store.transaction() as tx:
        tx.put_challenge(failed)
    with contract_store.transaction(write=False) as tx:
        got = tx.get_challenge(challenge.token_hash)
    assert got == failed
    assert got is not None
    assert (got.attempts, got.kind) == (2, ChallengeKind.ENROLLMENT)
    with contract_store.transaction() as tx:
        tx.delete_challenge(challenge.token_hash)
        tx.delete_challenge("never existed")
    with contract_store.transaction(write=False) as tx:
        assert tx.get_challenge(challenge.token_hash) is None


def test_session_round_trip_and_delete(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"))
    session = SessionRecord(
        token_hash="s" * 64,
        user_id="u1",
        account_id="acc1",
        issued_at=T0,
        expires_at=T0 + timedelta(hours=12, microseconds=999999),
        account_generation=4,
        user_generation=2,
    )
    with contract_store.transaction() as tx:
        assert tx.get_session(session.token_hash) is None
        tx.put_session(session)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_session(session.token_hash) == session
    with contract_store.transaction() as tx:
        tx.delete_session(session.token_hash)
        tx.delete_session("never existed")
    with contract_store.transaction(write=False) as tx:
        assert tx.get_session(session.token_hash) is None


@pytest.mark.parametrize("write", [False, True])
def test_a_session_comes_with_its_user_and_account_in_one_read(
    contract_store: ts.Store, write: bool
) -> None:
    holder = full_user()
    seed(contract_store, holder, accounts=("acc1", "acc2"))
    with contract_store.transaction() as tx:
        tx.put_account(account("acc1", two_factor_required=True, session_generation=5))
    session = SessionRecord("s" * 64, "u1", "acc1", T0, T0 + timedelta(hours=1), 5, 7)
    elsewhere = SessionRecord("o" * 64, "u1", "acc2", T0, T0 + timedelta(hours=1), 0, 7)
    with contract_store.transaction() as tx:
        tx.put_session(session)
        tx.put_session(elsewhere)
    with contract_store.transaction(write=write) as tx:
        assert tx.get_session_with_user("never existed") is None
        found = tx.get_session_with_user(session.token_hash)
        other = tx.get_session_with_user(elsewhere.token_hash)
    assert found == (
        session,
        holder,
        account("acc1", two_factor_required=True, session_generation=5),
    )
    assert other == (elsewhere, holder, account("acc2"))


@pytest.mark.parametrize("write", [False, True])
def test_a_session_whose_user_or_account_is_gone_comes_with_none(
    contract_store: ts.Store, write: bool
) -> None:
    seed(contract_store, user("u1", "a@example.test"))
    orphan = SessionRecord("s" * 64, "gone", "acc1", T0, T0 + timedelta(hours=1), 0, 0)
    stray = SessionRecord("t" * 64, "u1", "no-such-account", T0, T0 + timedelta(hours=1), 0, 0)
    with contract_store.transaction() as tx:
        tx.put_session(orphan)
        tx.put_session(stray)
    with contract_store.transaction(write=write) as tx:
        assert tx.get_session_with_user(orphan.token_hash) == (orphan, None, account())
        assert tx.get_session_with_user(stray.token_hash) == (
            stray,
            user("u1", "a@example.test"),
            None,
        )


def test_a_user_read_with_a_session_is_written_back_in_full(contract_store: ts.Store) -> None:
    # SQLite writes back only the columns of a user that changed since it was read: a
    # user read through the session must count as read.
    seed(contract_store, user("u1", "a@example.test"))
    with contract_store.transaction() as tx:
        tx.put_session(SessionRecord("s" * 64, "u1", "acc1", T0, T0 + timedelta(hours=1), 0, 0))
    with contract_store.transaction() as tx:
        found = tx.get_session_with_user("s" * 64)
        assert found is not None
        assert found.user is not None
        tx.put_user(replace(found.user, role=ts.Role.MANAGER, session_generation=3))
    with contract_store.transaction(write=False) as tx:
        assert tx.get_user("u1") == user(
            "u1", "a@example.test", role=ts.Role.MANAGER, session_generation=3
        )


def test_r96_r99_session_keeps_its_members_generation_and_second_factor_time(
    contract_store: ts.Store,
) -> None:
    seed(contract_store, user("u1", "a@example.test"))
    session = SessionRecord(
        "s" * 64, "u1", "acc1", T0, T0 + timedelta(hours=1), 4, 2, 7, T0 + timedelta(seconds=3)
    )
    with contract_store.transaction() as tx:
        tx.put_session(session)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_session(session.token_hash) == session


def test_r95_r96_account_keeps_its_requirement(contract_store: ts.Store) -> None:
    a = account().with_requirement(
        True, T0, of=ts.RequiredOf.ADMINS, grace_period=timedelta(days=7, microseconds=5)
    )
    a = a.with_requirement(True, T0 + timedelta(hours=1), grace_period=timedelta(hours=2))
    assert a.members_required_since is not None  # widened: every field is set
    with contract_store.transaction() as tx:
        tx.put_account(a)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_account(a.id) == a


def device(
    token_hash: str, device_id: str, user_id: str = "u1", **changes: object
) -> RememberedDevice:
    base = RememberedDevice(
        token_hash=token_hash,
        id=device_id,
        user_id=user_id,
        label="Firefox on Linux",
        created_at=T0,
        expires_at=T0 + timedelta(days=30),
        last_used_at=None,
        account_generation=1,
        members_generation=2,
        user_generation=3,
    )
    return base._replace(**changes)


def test_r98_devices_round_trip_list_and_delete(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"), user("u2", "b@example.test"))
    later = device("h2", "d2", created_at=T0 + timedelta(seconds=1), last_used_at=T0)
    first = device("h1", "d1")
    other = device("h3", "d3", user_id="u2")
    with contract_store.transaction() as tx:
        assert tx.get_device("h1") is None
        for d in (later, first, other):
            tx.put_device(d)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_device("h2") == later
        assert tx.devices_of("u1") == [first, later]  # oldest first
        assert tx.devices_of("nobody") == []
    used = first._replace(last_used_at=T0 + timedelta(days=1))
    with contract_store.transaction() as tx:
        tx.put_device(used)  # replaced, not added
        tx.delete_device("h2")
        tx.delete_device("never existed")
    with contract_store.transaction(write=False) as tx:
        assert tx.devices_of("u1") == [used]
    with contract_store.transaction() as tx:
        tx.delete_devices_of("u1")
    with contract_store.transaction(write=False) as tx:
        assert tx.devices_of("u1") == []
        assert tx.get_device("h3") == other


def test_r82_r98_deleting_a_user_forgets_their_devices(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"), user("u2", "b@example.test"))
    with contract_store.transaction() as tx:
        tx.put_device(device("h1", "d1"))
        tx.put_device(device("h2", "d2", user_id="u2"))
        tx.delete_user("u1")
    with contract_store.transaction(write=False) as tx:
        assert tx.get_device("h1") is None
        assert tx.get_device("h2") is not None


def test_r98_purge_deletes_expired_devices(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"))
    now = T0 + timedelta(days=30)
    with contract_store.transaction() as tx:
        for n, expires in enumerate((now - timedelta(seconds=1), now, now + timedelta(seconds=1))):
            tx.put_device(device(f"h{n}", f"d{n}", expires_at=expires))
    with contract_store.transaction() as tx:
        assert purge(tx, now, throttles_before=T0) == 2
    with contract_store.transaction(write=False) as tx:
        assert [d.id for d in tx.devices_of("u1")] == ["d2"]


def test_throttle_round_trip_update_and_delete(contract_store: ts.Store) -> None:
    email = ThrottleKey(ThrottleScope.EMAIL, "a@example.test")
    first = ThrottleState(USER_U1, 1, None, T0)
    with contract_store.transaction() as tx:
        assert tx.get_throttle(first.key) is None
        tx.put_throttle(first)
        tx.put_throttle(ThrottleState(email, 2, None, T0))
    with contract_store.transaction(write=False) as tx:
        assert tx.get_throttle(first.key) == first
    blocked = ThrottleState(USER_U1, 6, T0 + timedelta(seconds=2, microseconds=5), T0)
    with contract_store.transaction() as tx:
        tx.put_throttle(blocked)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_throttle(first.key) == blocked
    with contract_store.transaction() as tx:
        tx.delete_throttle(first.key)
        tx.delete_throttle(ThrottleKey(ThrottleScope.CLIENT, "never existed"))
    with contract_store.transaction(write=False) as tx:
        assert tx.get_throttle(first.key) is None
        assert tx.get_throttle(email) is not None


def test_a_throttle_found_missing_then_written_is_read_back_in_the_same_transaction(
    contract_store: ts.Store,
) -> None:
    state = ThrottleState(USER_U1, 2, None, T0)
    with contract_store.transaction() as tx:
        assert tx.get_throttle(USER_U1) is None
        assert tx.get_throttle(USER_U1) is None  # asked twice, as a code login does
        tx.put_throttle(state)
        assert tx.get_throttle(USER_U1) == state
        tx.delete_throttle(USER_U1)
        assert tx.get_throttle(USER_U1) is None
        tx.put_throttle(state)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_throttle(USER_U1) == state


def test_throttle_keys_of_each_scope_are_separate_counters(contract_store: ts.Store) -> None:
    # One subject under every scope, and subjects that hold the separator (an IPv6
    # client key, an email with a colon): each key is its own counter, and a read
    # gives back the key it was asked for.
    subjects = ["x", "2001:db8::1", "a:b@example.test", ""]
    keys = [ThrottleKey(scope, subject) for scope in ThrottleScope for subject in subjects]
    states = [ThrottleState(key, n + 1, None, T0) for n, key in enumerate(keys)]
    with contract_store.transaction() as tx:
        for state in states:
            tx.put_throttle(state)
    with contract_store.transaction(write=False) as tx:
        found = [tx.get_throttle(key) for key in keys]
    assert found == states
    assert all(state is not None and type(state.key) is ThrottleKey for state in found)
    assert all(state is not None and type(state.key.scope) is ThrottleScope for state in found)
    with contract_store.transaction() as tx:
        tx.delete_throttle(ThrottleKey(ThrottleScope.CLIENT, "2001:db8::1"))
    with contract_store.transaction(write=False) as tx:
        gone = {key for key in keys if tx.get_throttle(key) is None}
    assert gone == {ThrottleKey(ThrottleScope.CLIENT, "2001:db8::1")}


# -- the audit trail ------------------------------------------------------------------------


def event(n: int, account_id: str | None = "acc1", **changes: object) -> ts.AuditEvent:
    base = ts.AuditEvent(
        at=T0 + timedelta(seconds=n // 2, microseconds=n),  # some share a second
        action=f"action_{n}",
        outcome=ts.Outcome.SUCCESS,
        account_id=account_id,
        actor_id="u1",
        target_id=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_audit_round_trip_newest_first_with_limit(contract_store: ts.Store) -> None:
    events = [event(n) for n in range(6)]
    events[2] = event(
        2,
        outcome=ts.Outcome.DENIED,
        target_id="u2",
        reason="owner_only",
        actor="user",
    )
    events[4] = event(4, actor="operator", actor_id=None, outcome=ts.Outcome.THROTTLED)
    with contract_store.transaction() as tx:
        for n, e in enumerate(events):
            tx.add_audit(e)
            tx.add_audit(event(100 + n, account_id="acc2"))
            tx.add_audit(event(200 + n, account_id=None))
    with contract_store.transaction(write=False) as tx:
        assert tx.audit_events("acc1", 100) == events[::-1]
        assert tx.audit_events("acc1", 2) == [events[5], events[4]]
        assert tx.audit_events("acc1", 1) == [events[5]]
        assert len(tx.audit_events("acc2", 100)) == 6
        assert tx.audit_events("nothing", 10) == []


def test_audit_order_is_insertion_order_even_with_equal_times(contract_store: ts.Store) -> None:
    same = [event(0, action=f"same_{n}") for n in range(5)]
    with contract_store.transaction() as tx:
        for e in same:
            tx.add_audit(e)
    with contract_store.transaction(write=False) as tx:
        assert [e.action for e in tx.audit_events("acc1", 10)] == [
            f"same_{n}" for n in reversed(range(5))
        ]


# -- transactions and maintenance ------------------------------------------------------------


def test_an_exception_rolls_everything_back(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"))

    def writes(tx: ts.Transaction) -> None:
        tx.put_account(account("acc2"))
        tx.put_account(account("acc1", two_factor_required=True, session_generation=1))
        tx.add_user(user("u2", "b@example.test", account_id="acc2"))
        tx.put_user(full_user("u1", "a@example.test"))
        tx.put_challenge(
            LoginChallenge("c" * 64, "u1", ChallengeKind.CODE, T0, T0 + timedelta(minutes=5))
        )
        tx.put_session(SessionRecord("s" * 64, "u1", "acc1", T0, T0 + timedelta(hours=1), 0, 0))
        tx.put_throttle(ThrottleState(USER_U1, 3, None, T0))
        tx.add_audit(event(1))

    with pytest.raises(Boom):
        abort_after(contract_store, writes)

    with contract_store.transaction(write=False) as tx:
        assert tx.get_account("acc2") is None
        assert tx.get_account("acc1") == account("acc1")
        assert tx.get_user("u2") is None
        assert tx.find_user_by_email("b@example.test") is None
        assert tx.get_user("u1") == user("u1", "a@example.test")
        assert tx.get_challenge("c" * 64) is None
        assert tx.get_session("s" * 64) is None
        assert tx.get_throttle(USER_U1) is None
        assert tx.audit_events("acc1", 10) == []
        assert [u.id for u in tx.users_of("acc1")] == ["u1"]
    # The store still works after a rollback, and the rolled-back email is free.
    seed(contract_store, user("u2", "b@example.test"), accounts=())


def put_short_lived(
    store: ts.Store, throttle_key: ThrottleKey
) -> tuple[LoginChallenge, SessionRecord, ThrottleState]:
    """A challenge, a session and a throttle row of user u1, all from T0, committed."""
    challenge = LoginChallenge("c" * 64, "u1", ChallengeKind.CODE, T0, T0 + timedelta(minutes=5))
    session = SessionRecord("s" * 64, "u1", "acc1", T0, T0 + timedelta(hours=1), 0, 0)
    throttle = ThrottleState(throttle_key, 3, None, T0)
    with store.transaction() as tx:
        tx.put_challenge(challenge)
        tx.put_session(session)
        tx.put_throttle(throttle)
    return challenge, session, throttle


def test_a_rollback_also_undoes_deletes(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"))
    challenge, session, throttle = put_short_lived(contract_store, USER_U1)

    def writes(tx: ts.Transaction) -> None:
        tx.delete_challenge(challenge.token_hash)
        tx.delete_session(session.token_hash)
        tx.delete_throttle(throttle.key)

    with pytest.raises(Boom):
        abort_after(contract_store, writes)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_challenge(challenge.token_hash) == challenge
        assert tx.get_session(session.token_hash) == session
        assert tx.get_throttle(throttle.key) == throttle


def test_an_email_taken_error_inside_a_transaction_rolls_it_back(
    contract_store: ts.Store,
) -> None:
    seed(contract_store, user("u1", "a@example.test"))

    def writes(tx: ts.Transaction) -> None:
        tx.put_account(account("acc2"))
        tx.add_user(user("u2", "A@example.test", account_id="acc2"))

    with pytest.raises(ts.EmailTaken):
        abort_after(contract_store, writes)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_account("acc2") is None


def test_purge_expired_deletes_only_what_has_expired(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"))
    now = T0 + timedelta(hours=1)
    with contract_store.transaction() as tx:
        for n, expires in enumerate((now - timedelta(seconds=1), now, now + timedelta(seconds=1))):
            tx.put_challenge(
                LoginChallenge(f"c{n}", "u1", ChallengeKind.CODE, T0, expires_at=expires)
            )
            tx.put_session(SessionRecord(f"s{n}", "u1", "acc1", T0, expires, 0, 0))
        tx.put_throttle(ThrottleState(USER_U1, 1, None, T0))
    with contract_store.transaction() as tx:
        assert purge(tx, now, throttles_before=T0) == 4
    with contract_store.transaction(write=False) as tx:
        assert [tx.get_challenge(f"c{n}") is None for n in range(3)] == [True, True, False]
        assert [tx.get_session(f"s{n}") is None for n in range(3)] == [True, True, False]
        assert tx.get_throttle(USER_U1) is not None
        assert tx.get_user("u1") is not None
    with contract_store.transaction() as tx:
        assert purge(tx, now, throttles_before=T0) == 0


def test_r6_purge_deletes_throttle_rows_that_neither_block_nor_count(
    contract_store: ts.Store,
) -> None:
    now = T0 + timedelta(days=3)
    cutoff = now - timedelta(days=1)
    tick = timedelta(microseconds=1)
    email, client, user_ = ThrottleScope.EMAIL, ThrottleScope.CLIENT, ThrottleScope.USER
    states = [
        # dead: not blocking, last failure before the cutoff
        ThrottleState(ThrottleKey(email, "old@example.test"), 4, None, cutoff - tick),
        ThrottleState(
            ThrottleKey(client, "198.51.100.7"),
            30,
            now - timedelta(hours=1),
            cutoff - timedelta(hours=5),
        ),
        ThrottleState(ThrottleKey(user_, "unblocked-now"), 9, now, T0),
        # alive: still blocking, or a failure at or after the cutoff
        ThrottleState(ThrottleKey(user_, "still-blocked"), 40, now + tick, T0),
        ThrottleState(ThrottleKey(email, "at-cutoff@example.test"), 2, None, cutoff),
        ThrottleState(
            ThrottleKey(email, "recent@example.test"),
            7,
            now + timedelta(seconds=8),
            now - timedelta(seconds=1),
        ),
    ]
    rows = {state.key: state for state in states}
    with contract_store.transaction() as tx:
        for state in rows.values():
            tx.put_throttle(state)
    with contract_store.transaction() as tx:
        assert purge(tx, now, throttles_before=cutoff) == 3
    with contract_store.transaction(write=False) as tx:
        kept = {key for key in rows if tx.get_throttle(key) is not None}
        assert all(tx.get_throttle(key) == rows[key] for key in kept)
    assert kept == {
        ThrottleKey(user_, "still-blocked"),
        ThrottleKey(email, "at-cutoff@example.test"),
        ThrottleKey(email, "recent@example.test"),
    }
    with contract_store.transaction() as tx:
        assert purge(tx, now, throttles_before=cutoff) == 0


def _without_pending(u: ts.User) -> ts.User:
    return replace(
        u, two_factor=replace(u.two_factor, pending_secret=None, pending_expires_at=None)
    )


def test_r11_purge_clears_expired_pending_secrets_and_nothing_else_of_the_user(
    contract_store: ts.Store,
) -> None:
    enrolled = full_user("u1", "enrolled@example.test")  # 2FA on, a pending reset
    now = enrolled.two_factor.pending_expires_at
    assert now is not None
    tick = timedelta(microseconds=1)
    lapsed = user("u2", "lapsed@example.test").begin_enrollment("v1:sealed-lapsed", now - tick)
    waiting = user("u3", "waiting@example.test").begin_enrollment("v1:sealed-waiting", now + tick)
    plain = user("u4", "plain@example.test", session_generation=2)
    seed(contract_store, enrolled, lapsed, waiting, plain)

    with contract_store.transaction() as tx:
        assert purge(tx, now, throttles_before=T0) == 2
        assert tx.get_user("u1") == _without_pending(enrolled)  # seen in the same transaction
    with contract_store.transaction(write=False) as tx:
        assert tx.get_user("u1") == _without_pending(enrolled)
        assert tx.get_user("u2") == _without_pending(lapsed)
        assert tx.get_user("u3") == waiting
        assert tx.get_user("u4") == plain
    with contract_store.transaction() as tx:
        assert purge(tx, now, throttles_before=T0) == 0


def test_a_user_written_after_a_purge_in_the_same_transaction_is_stored_as_given(
    contract_store: ts.Store,
) -> None:
    lapsed = user("u1", "lapsed@example.test").begin_enrollment("v1:sealed-lapsed", T0)
    seed(contract_store, lapsed)
    with contract_store.transaction() as tx:
        read = tx.get_user("u1")
        assert read is not None
        assert purge(tx, T0, throttles_before=T0) == 1
        changed = read.accept_step(58_000_001)  # read before the purge: still pending
        tx.put_user(changed)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_user("u1") == changed


def test_a_rolled_back_purge_restores_everything(contract_store: ts.Store) -> None:
    lapsed = full_user("u1", "lapsed@example.test")
    now = T0 + timedelta(days=2)
    seed(contract_store, lapsed)
    challenge, session, throttle = put_short_lived(
        contract_store, ThrottleKey(ThrottleScope.EMAIL, "lapsed@example.test")
    )

    def writes(tx: ts.Transaction) -> None:
        assert purge(tx, now, throttles_before=now - timedelta(days=1)) == 4

    with pytest.raises(Boom):
        abort_after(contract_store, writes)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_challenge(challenge.token_hash) == challenge
        assert tx.get_session(session.token_hash) == session
        assert tx.get_throttle(throttle.key) == throttle
        assert tx.get_user("u1") == lapsed


def test_a_store_reopens_with_its_data(tmp_path: Path) -> None:
    # Only meaningful for stores that persist; the embedded default must.
    store = ts.SQLiteStore(tmp_path / "reopen.db")
    u = full_user()
    seed(store, u)
    store.close()
    again = ts.SQLiteStore(tmp_path / "reopen.db")
    try:
        with again.transaction(write=False) as tx:
            assert tx.get_user(u.id) == u
    finally:
        again.close()


# -- schema version 3: attempts in flight, repeated events, pages, retention -------------------


def test_throttle_attempts_in_flight_round_trip(contract_store: ts.Store) -> None:
    # Every field of the counter is kept, the attempts in flight too, and a write
    # replaces them all: back to none in flight is stored as such.
    flying = ThrottleState(
        USER_U1, 2, T0 + timedelta(seconds=4), T0, in_flight=3, in_flight_at=T0 + timedelta(3)
    )
    with contract_store.transaction() as tx:
        tx.put_throttle(flying)
        assert tx.get_throttle(USER_U1) == flying
    with contract_store.transaction(write=False) as tx:
        assert tx.get_throttle(USER_U1) == flying
    landed = replace(flying, in_flight=0, in_flight_at=None)
    with contract_store.transaction() as tx:
        tx.put_throttle(landed)
    with contract_store.transaction(write=False) as tx:
        assert tx.get_throttle(USER_U1) == landed
    assert ThrottleState(USER_U1, 1, None, T0).in_flight == 0  # the defaults of a new counter


def throttled(n: int, account_id: str | None = "acc1", **changes: object) -> ts.AuditEvent:
    """A throttled login attempt of user u1, ``n`` seconds after T0."""
    base = ts.AuditEvent(
        at=T0 + timedelta(seconds=n),
        action="login",
        outcome=ts.Outcome.THROTTLED,
        account_id=account_id,
        actor_id="u1",
        target_id=None,
        reason="email",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_audit_repeats_round_trip(contract_store: ts.Store) -> None:
    events = [throttled(0, repeats=7), event(1)]
    with contract_store.transaction() as tx:
        for e in events:
            tx.add_audit(e)
    with contract_store.transaction(write=False) as tx:
        assert tx.audit_events("acc1", 10) == events[::-1]
    assert event(1).repeats == 1


def test_r75_a_throttled_repeat_counts_on_the_newest_matching_recent_event(
    contract_store: ts.Store,
) -> None:
    first, second = throttled(0), throttled(10)
    with contract_store.transaction() as tx:
        assert not tx.repeat_audit(first, T0)  # nothing to count on: the caller adds it
        tx.add_audit(first)
        tx.add_audit(event(5))
        tx.add_audit(second)
        assert tx.repeat_audit(throttled(20), T0)  # counts on the newest: second
        assert tx.repeat_audit(throttled(21), T0 + timedelta(seconds=10))  # at since: counts
    with contract_store.transaction() as tx:
        assert tx.repeat_audit(throttled(22), T0)
        trail = tx.audit_events("acc1", 10)
    assert trail == [replace(second, repeats=4), event(5), first]  # times stay the first's


@pytest.mark.parametrize(
    "other",
    [
        {"reason": "client"},
        {"reason": None},
        {"actor_id": "u2"},
        {"actor_id": None, "actor": "anonymous"},
        {"target_id": "u1"},
        {"action": "two_factor_disabled"},
        {"actor": "operator"},
        {"account_id": "acc2"},
        {"account_id": None},
    ],
    ids=lambda other: "-".join(f"{k}={v}" for k, v in other.items()),
)
def test_r75_a_throttled_attempt_counts_only_on_its_own_kind(
    contract_store: ts.Store, other: dict[str, Any]
) -> None:
    seed(contract_store, accounts=("acc1", "acc2"))
    stored = throttled(0)
    with contract_store.transaction() as tx:
        tx.add_audit(stored)
        tx.add_audit(replace(stored, outcome=ts.Outcome.FAILURE, **other))
        assert not tx.repeat_audit(throttled(1, **other), T0)
        assert not tx.repeat_audit(throttled(1), T0 + timedelta(microseconds=1))  # too old
        tx.add_audit(throttled(2, **other))
        assert tx.repeat_audit(throttled(3, **other), T0)
        assert tx.repeat_audit(throttled(4), T0)
    with contract_store.transaction(write=False) as tx:
        assert tx.audit_events("acc1", 10)[-1] == replace(stored, repeats=2)


def test_r75_a_rolled_back_repeat_is_not_counted(contract_store: ts.Store) -> None:
    with contract_store.transaction() as tx:
        tx.add_audit(throttled(0))

    def writes(tx: ts.Transaction) -> None:
        assert tx.repeat_audit(throttled(1), T0)
        tx.add_audit(event(2))
        assert tx.repeat_audit(throttled(3), T0)

    with pytest.raises(Boom):
        abort_after(contract_store, writes)
    with contract_store.transaction(write=False) as tx:
        assert tx.audit_events("acc1", 10) == [throttled(0)]


def positions(found: list[tuple[int, ts.AuditEvent]]) -> list[int]:
    return [position for position, _ in found]


def test_r76_audit_pages_follow_positions_that_only_grow(contract_store: ts.Store) -> None:
    seed(contract_store, accounts=("acc1", "acc2"))
    with contract_store.transaction() as tx:
        for n in range(5):
            tx.add_audit(event(n))
            tx.add_audit(event(100 + n, account_id="acc2"))
            tx.add_audit(event(200 + n, account_id=None))
    with contract_store.transaction(write=False) as tx:
        found = tx.audit_page("acc1", AuditQuery(10))
        assert [e for _, e in found] == [event(n) for n in reversed(range(5))]
        assert positions(found) == sorted(positions(found), reverse=True)
        assert all(p >= 1 for p in positions(found))
        assert len(set(positions(found))) == 5
        first = tx.audit_page("acc1", AuditQuery(2))
        assert first == found[:2]
        after = tx.audit_page("acc1", AuditQuery(2, before=first[-1][0]))
        assert after == found[2:4]
        assert tx.audit_page("acc1", AuditQuery(10, before=found[-1][0])) == []
        assert tx.audit_page("nothing", AuditQuery(10)) == []
    with contract_store.transaction() as tx:  # newer events: the page below is the same
        tx.add_audit(event(5))
    with contract_store.transaction(write=False) as tx:
        assert tx.audit_page("acc1", AuditQuery(2, before=first[-1][0])) == after
        newest = tx.audit_page("acc1", AuditQuery(1))
    assert newest[0][1] == event(5)
    assert newest[0][0] > found[0][0]


def test_r76_audit_page_filters(contract_store: ts.Store) -> None:
    events = [
        event(0, action="login", actor_id="u1"),
        event(1, action="two_factor_reset", actor_id="u2", target_id="u1"),
        event(2, action="login", outcome=ts.Outcome.FAILURE, actor_id="u3"),
        event(3, action="logout", actor_id="u2"),
        throttled(4),
    ]
    with contract_store.transaction() as tx:
        for e in events:
            tx.add_audit(e)

    def page(**filters: object) -> list[ts.AuditEvent]:
        with contract_store.transaction(write=False) as tx:
            return [e for _, e in tx.audit_page("acc1", AuditQuery(10, **filters))]  # type: ignore[arg-type]

    e0, e1, e2, e3, e4 = events
    assert page() == [e4, e3, e2, e1, e0]
    assert page(action="login") == [e4, e2, e0]
    assert page(action="nothing") == []
    assert page(user_id="u1") == [e4, e1, e0]  # as actor or as target
    assert page(user_id="u2") == [e3, e1]
    assert page(outcome="failure") == [e2]
    assert page(outcome="throttled") == [e4]
    assert page(since=e2.at) == [e4, e3, e2]  # since is inclusive
    assert page(until=e2.at) == [e1, e0]  # until is exclusive
    assert page(since=e1.at, until=e3.at) == [e2, e1]
    assert page(action="login", user_id="u1", outcome="success") == [e0]
    with contract_store.transaction(write=False) as tx:
        everything = tx.audit_page("acc1", AuditQuery(10))
        below = everything[1][0]  # before e3
        found = tx.audit_page("acc1", AuditQuery(1, before=below, action="login"))
    assert [e for _, e in found] == [e2]


def test_r77_purge_deletes_audit_events_past_their_retention(contract_store: ts.Store) -> None:
    seed(contract_store, accounts=("acc1", "acc2"))
    day = timedelta(days=1)
    now = T0 + 500 * day
    ages = {"ancient": 401, "old": 399, "recent": 29, "today": 0}
    with contract_store.transaction() as tx:
        for name, age in ages.items():
            at = now - age * day
            tx.add_audit(event(0, at=at, action=name))
            tx.add_audit(event(0, at=at, action=name, account_id="acc2"))
            tx.add_audit(event(0, at=at, action=name, account_id=None))
        tx.add_audit(event(0, at=now - 30 * day, action="at_cutoff", account_id=None))
    with contract_store.transaction() as tx:  # no cutoff given: every event stays
        assert purge(tx, now, throttles_before=T0) == 0
    with contract_store.transaction() as tx:
        # The 3 ancient events (both accounts', and one of no account), and the one of no
        # account past 30 days; the one at the cutoff stays (``at <`` the cutoff goes).
        gone = purge(
            tx,
            now,
            throttles_before=T0,
            audit_before=now - 400 * day,
            anonymous_audit_before=now - 30 * day,
        )
        assert gone == 3 + 1
        for account_id in ("acc1", "acc2"):
            kept = [e.action for e in tx.audit_events(account_id, 10)]
            assert kept == ["today", "recent", "old"]
    with contract_store.transaction() as tx:
        # Of no account: recent and at_cutoff go, today (at == now) stays.
        assert purge(tx, now, throttles_before=T0, anonymous_audit_before=now) == 2
        assert purge(tx, now, throttles_before=T0, audit_before=now + day) == 3 + 3 + 1
    with contract_store.transaction(write=False) as tx:
        assert tx.audit_events("acc1", 10) == []


def test_r77_a_rolled_back_purge_restores_the_audit_trail(contract_store: ts.Store) -> None:
    events = [event(n) for n in range(4)]
    with contract_store.transaction() as tx:
        tx.add_audit(throttled(0))
        for e in events:
            tx.add_audit(e)

    def writes(tx: ts.Transaction) -> None:
        assert tx.repeat_audit(throttled(1), T0)
        tx.add_audit(event(9))
        assert purge(tx, T0, throttles_before=T0, audit_before=T0 + timedelta(days=1)) == 6
        tx.add_audit(event(10))
        assert tx.repeat_audit(throttled(11), T0) is False

    with pytest.raises(Boom):
        abort_after(contract_store, writes)
    with contract_store.transaction(write=False) as tx:
        assert tx.audit_events("acc1", 10) == [*events[::-1], throttled(0)]


# -- the users' life (R82, R83) ------------------------------------------------------------


def test_r83_users_in_pages_an_account_by_creation_then_id_with_filters(
    contract_store: ts.Store,
) -> None:
    from twostep._user_pages import UserQuery

    on = TwoFactorState(secret="v1:sealed")
    seed(
        contract_store,
        user("m2", "m2@example.test", created_at=T0 + timedelta(seconds=2)),
        user("m1", "m1@example.test", created_at=T0 + timedelta(seconds=2), two_factor=on),
        user("o1", "o1@example.test", role=ts.Role.OWNER, two_factor=on),
        user("g1", "g1@example.test", role=ts.Role.MANAGER, active=False),
        user("zz", "zz@example.test", account_id="acc2"),
        accounts=("acc1", "acc2"),
    )
    with contract_store.transaction(write=False) as tx:

        def ids(**query: Any) -> list[str]:
            return [u.id for u in tx.users_in("acc1", UserQuery(**{"limit": 10, **query}))]

        # Created at T0: g1 and o1 (by id), then at T0 + 2 s: m1 and m2 (by id).
        assert ids() == ["g1", "o1", "m1", "m2"]
        assert ids(limit=2) == ["g1", "o1"]
        assert ids(after=(T0, "o1")) == ["m1", "m2"]
        assert ids(after=(T0 + timedelta(seconds=2), "m1")) == ["m2"]
        assert ids(after=(T0 + timedelta(seconds=2), "m2")) == []
        assert ids(role="owner") == ["o1"]
        assert ids(role="member", two_factor=False) == ["m2"]
        assert ids(two_factor=True) == ["o1", "m1"]
        assert ids(active=False) == ["g1"]
        assert ids(active=True, two_factor=False) == ["m2"]
        assert tx.users_in("acc1", UserQuery(10))[1] == user(
            "o1", "o1@example.test", role=ts.Role.OWNER, two_factor=on
        )
        assert [u.id for u in tx.users_in("acc2", UserQuery(10))] == ["zz"]
        assert tx.users_in("nothing", UserQuery(10)) == []


def test_r82_delete_user_removes_the_user_and_their_short_lived_rows(
    contract_store: ts.Store,
) -> None:
    seed(contract_store, user("u1", "A@example.test"), user("u2", "b@example.test"))
    challenge, session, throttle = put_short_lived(contract_store, USER_U1)
    other = SessionRecord("t" * 64, "u2", "acc1", T0, T0 + timedelta(hours=1), 0, 0)
    other_throttle = ThrottleState(ThrottleKey(ThrottleScope.EMAIL, "a@example.test"), 1, None, T0)
    with contract_store.transaction() as tx:
        tx.put_session(other)
        tx.put_throttle(other_throttle)
        tx.add_audit(ts.AuditEvent(T0, "login", ts.Outcome.SUCCESS, "acc1", "u1", None, "otp"))
    with contract_store.transaction() as tx:
        tx.delete_user("u1")
        tx.delete_user("nobody")  # no error
    with contract_store.transaction() as tx:
        assert tx.get_user("u1") is None
        assert tx.find_user_by_email("a@example.test") is None
        assert [u.id for u in tx.users_of("acc1")] == ["u2"]
        assert tx.get_challenge(challenge.token_hash) is None
        assert tx.get_session(session.token_hash) is None
        assert tx.get_throttle(throttle.key) is None
        # Others' rows, the email's counter and the audit trail stay.
        assert tx.get_session(other.token_hash) == other
        assert tx.get_throttle(other_throttle.key) == other_throttle
        assert [e.actor_id for e in tx.audit_events("acc1", 10)] == ["u1"]
        tx.add_user(user("u3", "a@example.test"))  # the email is free again
    with contract_store.transaction(write=False) as tx:
        assert tx.find_user_by_email("a@example.test") == user("u3", "a@example.test")


def test_r82_a_rolled_back_deletion_restores_the_user(contract_store: ts.Store) -> None:
    full = full_user()
    seed(contract_store, full)
    challenge, session, throttle = put_short_lived(contract_store, USER_U1)
    with pytest.raises(Boom):
        abort_after(contract_store, lambda tx: tx.delete_user("u1"))
    with contract_store.transaction(write=False) as tx:
        assert tx.get_user("u1") == full
        assert tx.find_user_by_email(full.email_key) == full
        assert tx.users_of("acc1") == [full]
        assert tx.get_challenge(challenge.token_hash) == challenge
        assert tx.get_session(session.token_hash) == session
        assert tx.get_throttle(throttle.key) == throttle


def test_r130_each_purge_batch_looks_at_no_more_rows_than_its_limit(
    contract_store: ts.Store,
) -> None:
    # 7 rows in each of the 6 tables, 4 of them expired. A batch takes the next 3 keys
    # of one table, so each table takes 3 batches (3 keys, 3 keys, the last one): 18
    # batches in all, none removing more than 3, and all 24 expired rows gone at the end.
    now = T0 + timedelta(days=2)
    ages = [timedelta(days=1)] * 4 + [-timedelta(days=1)] * 3  # 4 expired, 3 not yet
    seed(
        contract_store,
        *(
            user(
                f"u{i}",
                f"u{i}@example.test",
                two_factor=TwoFactorState(pending_secret="v1:p", pending_expires_at=now - age),
            )
            for i, age in enumerate(ages)
        ),
    )
    with contract_store.transaction() as tx:
        for i, age in enumerate(ages):
            token = f"t{i}".ljust(64, "x")
            kind = ChallengeKind.CODE
            tx.put_challenge(LoginChallenge(token, f"u{i}", kind, T0, now - age))
            tx.put_session(SessionRecord(token, f"u{i}", "acc1", T0, now - age, 0, 0))
            tx.put_device(device(token, f"d{i}", f"u{i}", expires_at=now - age))
            key = ThrottleKey(ThrottleScope.USER, f"u{i}")
            tx.put_throttle(ThrottleState(key, 1, None, now - 2 * age))
            tx.add_audit(event(i, at=now - 300 * age))
    cutoffs = {"throttles_before": now, "audit_before": now - timedelta(days=100)}
    batches: list[int] = []
    resume = None
    while True:
        with contract_store.transaction() as tx:  # one transaction per batch, as the service
            batch = tx.purge_expired(now, limit=3, resume=resume, **cutoffs)
        batches.append(batch.removed)
        if batch.resume is None:
            break
        resume = batch.resume
    assert len(batches) == 6 * 3
    assert max(batches) <= 3
    assert sum(batches) == 6 * 4
    with contract_store.transaction() as tx:
        assert purge(tx, now, **cutoffs) == 0
        assert len(tx.audit_events("acc1", 10)) == 3
        assert [d.id for u in ("u4", "u5", "u6") for d in tx.devices_of(u)] == ["d4", "d5", "d6"]
        assert [tx.get_session(f"t{i}".ljust(64, "x")) is None for i in range(7)] == [True] * 4 + [
            False
        ] * 3


# -- security keys (R100-R109) ------------------------------------------------------------------


def security_key(key_id: str, user_id: str = "u1", **changes: object) -> SecurityKey:
    base = SecurityKey(
        id=key_id,
        user_id=user_id,
        name=f"Key {key_id}",
        credential_id=f"cred-{key_id}",
        public_key=secrets.token_bytes(77),
        sign_count=0,
        transports=("nfc", "usb"),
        created_at=T0,
    )
    return base._replace(**changes)  # type: ignore[arg-type]


def test_r101_security_keys_round_trip_in_creation_order(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"), user("u2", "b@example.test"))
    later = security_key("k1", created_at=T0 + timedelta(seconds=1), transports=())
    first = security_key("k2", sign_count=2**40, last_used_at=T0 + timedelta(microseconds=3))
    theirs = security_key("k3", user_id="u2")
    with contract_store.transaction() as tx:
        for key in (later, first, theirs):
            tx.add_security_key(key)
    with contract_store.transaction(write=False) as tx:
        assert tx.security_keys_of("u1") == [first, later]
        assert tx.security_keys_of("u2") == [theirs]
        assert tx.security_keys_of("nobody") == []
        assert tx.find_security_key("cred-k2") == first
        assert tx.find_security_key("cred-k3") == theirs
        assert tx.find_security_key("cred-k9") is None
    assert "cred-k2" not in repr(first)  # R108: no credential material in a repr
    assert repr(first.public_key) not in repr(first)


def test_r104_put_security_key_records_its_use(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"))
    key = security_key("k1")
    with contract_store.transaction() as tx:
        tx.add_security_key(key)
    used = key.used(7, T0 + timedelta(minutes=1))
    with contract_store.transaction() as tx:
        tx.put_security_key(used)
    with contract_store.transaction(write=False) as tx:
        assert tx.find_security_key(key.credential_id) == used
    assert used.sign_count == 7


def test_r106_security_keys_are_deleted_one_or_all(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"), user("u2", "b@example.test"))
    keys = [security_key("k1"), security_key("k2"), security_key("k3", user_id="u2")]
    with contract_store.transaction() as tx:
        for key in keys:
            tx.add_security_key(key)
    with contract_store.transaction() as tx:
        tx.delete_security_key("k1")
        tx.delete_security_key("nothing")  # no error
    with contract_store.transaction() as tx:
        assert tx.security_keys_of("u1") == [keys[1]]
        assert tx.find_security_key("cred-k1") is None
        tx.delete_security_keys_of("u1")
    with contract_store.transaction(write=False) as tx:
        assert tx.security_keys_of("u1") == []
        assert tx.security_keys_of("u2") == [keys[2]]


def test_r101_a_rolled_back_key_change_is_undone(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"))
    key = security_key("k1")
    with contract_store.transaction() as tx:
        tx.add_security_key(key)

    def change(tx: ts.Transaction) -> None:
        tx.add_security_key(security_key("k2"))
        tx.put_security_key(key.used(3, T0))
        tx.delete_security_keys_of("u1")

    with pytest.raises(Boom):
        abort_after(contract_store, change)
    with contract_store.transaction(write=False) as tx:
        assert tx.security_keys_of("u1") == [key]
        assert tx.find_security_key("cred-k2") is None


def test_r82_delete_user_removes_their_security_keys(contract_store: ts.Store) -> None:
    seed(contract_store, user("u1", "a@example.test"), user("u2", "b@example.test"))
    with contract_store.transaction() as tx:
        tx.add_security_key(security_key("k1"))
        tx.add_security_key(security_key("k2", user_id="u2"))
    with contract_store.transaction() as tx:
        tx.delete_user("u1")
    with contract_store.transaction(write=False) as tx:
        assert tx.security_keys_of("u1") == []
        assert tx.find_security_key("cred-k1") is None
        assert [k.id for k in tx.security_keys_of("u2")] == ["k2"]


def test_r102_a_user_with_only_security_keys_lists_as_having_2fa(
    contract_store: ts.Store,
) -> None:
    from twostep._user_pages import UserQuery

    keyed = user("u1", "a@example.test", security_keys=1)
    plain = user("u2", "b@example.test", created_at=T0 + timedelta(seconds=1))
    seed(contract_store, keyed, plain)
    with contract_store.transaction(write=False) as tx:
        on = tx.users_in("acc1", UserQuery(limit=10, two_factor=True))
        off = tx.users_in("acc1", UserQuery(limit=10, two_factor=False))
    assert [u.id for u in on] == ["u1"]
    assert [u.id for u in off] == ["u2"]
    assert on[0].has_second_factor
    assert on[0].second_factors == ("security_key",)
