"""What the SQLite store does when its database fails, or changes under it.

Every failure of SQLite is a :class:`~twostep.StoreError` with a stable ``reason``,
and leaves the database as it was before the flow: a full database or disk, a file
that is not a database, a lock held too long, a schema migrated by a newer twostep
while this process runs. Commits are durable by default, and the files are private.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

import twostep as ts
from twostep.stores._migrations import SCHEMA_VERSION
from twostep.testing import FAST, ManualClock, Phone

from .conftest import PASSWORD, store_snapshot
from .store_faults import files_cannot_grow, fill_sqlite, make_room


@dataclass
class Installation:
    """An owner with 2FA, half-way through a login; a member half-way through enrolling."""

    store: ts.SQLiteStore
    service: ts.TwoStep
    clock: ManualClock
    owner_phone: Phone
    challenge: ts.CodeRequired
    member_session: ts.Session
    member_phone: Phone


def _installation(path: Path, **options: object) -> Installation:
    store = ts.SQLiteStore(path, **options)  # type: ignore[arg-type]
    clock = ManualClock()
    service = ts.TwoStep(
        store, issuer="Acme", clock=clock, settings=FAST, cipher=ts.AESGCMKeyring.generate()
    )
    account = service.create_account("Acme")
    service.create_user(account.id, "owner@acme.test", PASSWORD, ts.Role.OWNER)
    service.create_user(account.id, "member@acme.test", PASSWORD, ts.Role.MEMBER)
    owner = service.login("owner@acme.test", PASSWORD)
    assert isinstance(owner, ts.LoggedIn)
    enrollment = service.begin_enrollment(owner.session)
    owner_phone = Phone(enrollment.secret, clock)
    service.confirm_enrollment(owner.session, owner_phone.code())
    clock.advance(30)
    challenge = service.login("owner@acme.test", PASSWORD)
    assert isinstance(challenge, ts.CodeRequired)
    member = service.login("member@acme.test", PASSWORD)
    assert isinstance(member, ts.LoggedIn)
    member_phone = Phone(service.begin_enrollment(member.session).secret, clock)
    return Installation(store, service, clock, owner_phone, challenge, member.session, member_phone)


def _refused_flows(site: Installation, reason: str) -> None:
    """An enrolment confirmation and both steps of a login raise StoreError(reason)."""
    flows = {
        "confirm_enrollment": lambda: site.service.confirm_enrollment(
            site.member_session, site.member_phone.code()
        ),
        "login": lambda: site.service.login("owner@acme.test", PASSWORD),
        "complete_login": lambda: site.service.complete_login(
            site.challenge, site.owner_phone.code()
        ),
    }
    for name, flow in flows.items():
        with pytest.raises(ts.StoreError) as caught:
            flow()
        error = caught.value
        assert error.reason == reason, (name, error)
        for value in ("owner@acme.test", "member@acme.test", site.member_session.user_id):
            assert value not in str(error), (name, error)


def _flows_work_again(site: Installation) -> None:
    codes = site.service.confirm_enrollment(site.member_session, site.member_phone.code())
    assert len(codes) == FAST.backup_code_count
    done = site.service.complete_login(site.challenge, site.owner_phone.code())
    assert done.session.user_id
    assert isinstance(site.service.login("owner@acme.test", PASSWORD), ts.CodeRequired)


# -- full --------------------------------------------------------------------------


def test_a_full_database_refuses_enrolment_and_login_and_changes_nothing(tmp_path: Path) -> None:
    # NORMAL: the filling commits many small transactions; durability is not the point.
    site = _installation(tmp_path / "twostep.db", synchronous="NORMAL")
    fill_sqlite(site.store)
    before = store_snapshot(site.store)
    _refused_flows(site, "full")
    assert store_snapshot(site.store) == before
    assert not site.store._connection().in_transaction
    make_room(site.store)  # space returns: the same flows go through
    _flows_work_again(site)
    site.store.close()


def test_a_commit_that_cannot_be_written_rolls_back_and_changes_nothing(tmp_path: Path) -> None:
    # A full disk fails the COMMIT itself: every statement ran, the log cannot grow.
    site = _installation(tmp_path / "twostep.db")
    before = store_snapshot(site.store)
    with files_cannot_grow():
        _refused_flows(site, "io")
        assert not site.store._connection().in_transaction
    assert store_snapshot(site.store) == before
    _flows_work_again(site)
    site.store.close()


def test_a_full_database_says_so_in_one_store_error(tmp_path: Path) -> None:
    store = ts.SQLiteStore(tmp_path / "twostep.db")
    fill_sqlite(store)
    before = store_snapshot(store)
    big = ts.Account(id="a" * 8, name="x" * 100_000, created_at=ts.SystemClock().now())
    with pytest.raises(ts.StoreError, match="full") as caught, store.transaction() as tx:
        tx.put_account(big)
    assert caught.value.reason == "full"
    assert "x" * 10 not in str(caught.value)  # never a value of a row
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert store_snapshot(store) == before
    make_room(store)
    with store.transaction() as tx:
        tx.put_account(big)
    store.close()


# -- not a database, locked, cannot open -------------------------------------------------


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    content = b"these are not the pages of a database\n" * 200
    path.write_bytes(content)
    with pytest.raises(ts.StoreError) as caught:
        ts.SQLiteStore(path)
    assert caught.value.reason == "not_a_database"
    assert "not a database" in str(caught.value)
    assert path.read_bytes() == content  # left as it was
    assert not Path(f"{path}-wal").exists()


def test_a_database_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(ts.StoreError) as caught:
        ts.SQLiteStore(tmp_path / "no such directory" / "twostep.db")
    assert caught.value.reason == "cannot_open"
    with pytest.raises(ts.StoreError) as caught:
        ts.SQLiteStore(tmp_path)  # a directory
    assert caught.value.reason == "cannot_open"


def test_a_write_lock_held_too_long_is_a_locked_store_error(tmp_path: Path) -> None:
    store = ts.SQLiteStore(tmp_path / "twostep.db", busy_timeout=0.05)
    other = sqlite3.connect(tmp_path / "twostep.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(ts.StoreError) as caught, store.transaction() as tx:
            tx.get_account("a1")
        assert caught.value.reason == "locked"
        assert not store._connection().in_transaction
    finally:
        other.execute("ROLLBACK")
        other.close()
    with store.transaction() as tx:
        assert tx.get_account("a1") is None
    store.close()


def test_an_error_inside_a_transaction_rolls_it_back_and_the_store_goes_on(tmp_path: Path) -> None:
    store = ts.SQLiteStore(tmp_path / "twostep.db")
    now = ts.SystemClock().now()

    def fail_after_a_write() -> None:
        with store.transaction() as tx:
            tx.put_account(ts.Account(id="a1", name="Acme", created_at=now))
            tx._db.execute("SELECT * FROM no_such_table")  # what an unknown failure looks like

    with pytest.raises(ts.StoreError, match="no such table") as caught:
        fail_after_a_write()
    assert caught.value.reason == "store"
    assert not store._connection().in_transaction
    with store.transaction() as tx:
        assert tx.get_account("a1") is None
    store.close()


# -- the schema changed under a running process --------------------------------------------


def _bump_version(path: Path, version: int) -> None:
    """What a newer twostep's `twostep migrate` leaves: a newer schema version."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA user_version = {version}")
    db.close()


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, SCHEMA_VERSION - 1])
def test_a_write_after_the_schema_changed_is_refused_and_writes_nothing(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "twostep.db"
    site = _installation(path)
    before_write = store_snapshot(site.store)
    _bump_version(path, version)
    before = store_snapshot(site.store)
    assert before == before_write
    with pytest.raises(ts.StoreError, match="restart") as caught:
        site.service.login("owner@acme.test", PASSWORD)
    assert caught.value.reason == "schema_changed"
    with pytest.raises(ts.StoreError) as caught:
        site.service.create_account("Other")
    assert caught.value.reason == "schema_changed"
    with pytest.raises(ts.StoreError) as caught:  # reads too: rows may mean other things
        site.service.check_session(site.member_session)
    assert caught.value.reason == "schema_changed"
    assert store_snapshot(site.store) == before
    assert not site.store._connection().in_transaction
    site.store.close()


def test_a_schema_changed_by_a_newer_twostep_on_another_thread_is_seen_too(
    tmp_path: Path,
) -> None:
    path = tmp_path / "twostep.db"
    store = ts.SQLiteStore(path)
    _bump_version(path, SCHEMA_VERSION + 1)
    errors: list[ts.StoreError] = []

    def write() -> None:  # a thread of its own: a connection of its own
        try:
            with store.transaction() as tx:
                tx.put_account(ts.Account(id="a1", name="Acme", created_at=ts.SystemClock().now()))
        except ts.StoreError as error:
            errors.append(error)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert [e.reason for e in errors] == ["schema_changed"]
    store.close()


# -- durability ---------------------------------------------------------------------------


def _synchronous(store: ts.SQLiteStore) -> int:
    value: int = store._connection().execute("PRAGMA synchronous").fetchone()[0]
    return value


def test_commits_are_durable_by_default_and_normal_is_an_explicit_choice(tmp_path: Path) -> None:
    full, normal = 2, 1  # PRAGMA synchronous's values
    store = ts.SQLiteStore(tmp_path / "a.db")
    assert _synchronous(store) == full
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(_synchronous(store)))
    thread.start()
    thread.join()
    assert seen == [full]  # every thread's connection
    store.close()
    store = ts.SQLiteStore(tmp_path / "b.db", synchronous="normal")
    assert _synchronous(store) == normal
    store.close()


# -- files -----------------------------------------------------------------------------


def test_the_database_and_its_wal_and_shm_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "twostep.db"
    old = os.umask(0o022)  # the usual umask, which would make them 0644
    try:
        store = ts.SQLiteStore(path)
        with store.transaction() as tx:
            tx.put_account(ts.Account(id="a1", name="Acme", created_at=ts.SystemClock().now()))
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
        store.close()
    finally:
        os.umask(old)


def test_an_existing_database_keeps_the_mode_its_operator_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "twostep.db"
    ts.SQLiteStore(path).close()
    path.chmod(0o640)
    ts.SQLiteStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
