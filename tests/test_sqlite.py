"""The SQLite store's own layout: its migrations keep every row, and a login writes little.

The behaviour every store shares is in test_store_contract.py; this file checks what
only SQLite does: the schema's layout and migrations, and writing only the changed columns.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import twostep as ts
from twostep._audit import AuditEvent, Outcome
from twostep._domain import (
    Account,
    BackupCodeSet,
    ChallengeKind,
    LoginChallenge,
    Role,
    SessionRecord,
    ThrottleKey,
    ThrottleScope,
    ThrottleState,
    TwoFactorState,
    User,
)
from twostep.stores import _migrations, _sql
from twostep.stores.sqlite import _Tx

T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


#: The columns every version since 1 has, as it was made (later columns are checked apart).
V1_THROTTLE_COLUMNS = "key, failures, blocked_until, last_failure_at"
V1_AUDIT_COLUMNS = "at, account_id, actor, actor_id, action, target_id, outcome, reason"
V1_USER_COLUMNS = (
    "id, account_id, email, email_key, role, password_hash, created_at, active, "
    "totp_secret, last_step, enabled_at, pending_secret, pending_expires_at, "
    "backup_salt, backup_digests, backup_used, session_generation"
)
V1_ACCOUNT_COLUMNS = "id, name, created_at, two_factor_required, session_generation"
V1_SESSION_COLUMNS = (
    "token_hash, user_id, account_id, issued_at, expires_at, account_generation, user_generation"
)
COLUMNS = {
    "accounts": V1_ACCOUNT_COLUMNS,
    "users": V1_USER_COLUMNS,
    "challenges": _sql.CHALLENGE_COLUMNS,
    "sessions": V1_SESSION_COLUMNS,
    "throttles": V1_THROTTLE_COLUMNS,
    # Events of no account are kept under '' since version 2; the trail reads the same.
    "audit": "id, at, coalesce(account_id, ''), actor, actor_id, action, target_id, outcome, "
    "reason",
}
#: What version 3 added, with the value every row had before it.
VERSION_3_COLUMNS = {"throttles": "in_flight, in_flight_at", "audit": "repeats"}
#: What version 4 added, likewise.
VERSION_4_COLUMNS = {
    "accounts": "required_of, grace_period, required_since, members_required_since, "
    "members_generation",
    "sessions": "members_generation, second_factor_at",
}
#: What version 5 added (R102): the users' count of security keys.
VERSION_5_COLUMNS = {"users": "security_keys"}


def _rows(db: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {
        t: sorted(db.execute(f"SELECT {c} FROM {t}").fetchall())  # noqa: S608
        for t, c in COLUMNS.items()
    }


EVENTS = [
    *(
        AuditEvent(T0, action, Outcome.SUCCESS, "a1", "u1", "u1", "otp")
        for action in ("user_created", "login", "logout")
    ),
    AuditEvent(T0, "login", Outcome.FAILURE, None, None, None, "invalid_credentials"),
]


THROTTLE = ThrottleState(ThrottleKey(ThrottleScope.USER, "u1"), 3, T0 + timedelta(seconds=8), T0)


ACCOUNT = Account("a1", "Acme", T0, two_factor_required=True, session_generation=2)
SESSION = SessionRecord("s" * 64, "u1", "a1", T0, T0 + timedelta(hours=12), 2, 4)
#: Issued before the requirement went on (generation 1 < 2): revoked (R21).
OLD_SESSION = SessionRecord("o" * 64, "u1", "a1", T0, T0 + timedelta(hours=12), 1, 4)


def _fill(tx: _Tx, *, audit: bool = True, throttle: bool = True, old: bool = False) -> None:
    """One row of every kind, with every optional field set (``old``: as version 1 has)."""
    if old:
        tx._db.execute(
            f"INSERT INTO accounts ({V1_ACCOUNT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",  # noqa: S608
            _sql.account_row(ACCOUNT)[:5],
        )
    else:
        tx.put_account(ACCOUNT)
    user = User(
        id="u1",
        account_id="a1",
        email="Ann@Example.com",
        role=Role.OWNER,
        password_hash="$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA",
        created_at=T0,
        two_factor=TwoFactorState(
            secret="v1.k.sealed",
            last_step=58_000_000,
            enabled_at=T0,
            pending_secret="v1.k.pending",
            pending_expires_at=T0 + timedelta(minutes=10),
        ),
        backup_codes=BackupCodeSet(
            salt=b"s" * 16, digests=(b"d" * 32, b"e" * 32), used=(True, False)
        ),
        session_generation=4,
    )
    if old:
        tx._db.execute(
            f"INSERT INTO users ({V1_USER_COLUMNS}) VALUES ({', '.join('?' * 17)})",  # noqa: S608
            _sql.user_row(user)[:17],
        )
    else:
        tx.add_user(user)
    tx.put_challenge(
        LoginChallenge("c" * 64, "u1", ChallengeKind.CODE, T0, T0 + timedelta(minutes=5), 2)
    )
    for session in (SESSION, OLD_SESSION):
        if old:
            tx._db.execute(
                f"INSERT INTO sessions ({V1_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                _sql.session_row(session)[:7],
            )
        else:
            tx.put_session(session)
    if throttle:
        tx.put_throttle(THROTTLE)
    for event in EVENTS if audit else []:
        tx.add_audit(event)


def _old_database(path: Path, version: int) -> None:
    """A database made by the migrations up to ``version``, with rows as it held them."""
    db = sqlite3.connect(path, isolation_level=None)
    for _, statements in _migrations.MIGRATIONS[:version]:
        for statement in _migrations.SQLITE.statements(statements):
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {version}")
    db.execute("BEGIN")
    _fill(_Tx(db), audit=False, throttle=False, old=True)
    db.execute(
        f"INSERT INTO throttles ({V1_THROTTLE_COLUMNS}) VALUES (?, ?, ?, ?)",  # noqa: S608
        _sql.throttle_row(THROTTLE)[:4],
    )
    for n, event in enumerate(EVENTS, start=1):
        row = _sql.audit_row(event)[:8]
        if version == 1:  # version 1 numbered events across accounts
            db.execute(
                f"INSERT INTO audit ({V1_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                row,
            )
        else:  # version 2 numbers each account's events, and keeps no account as ''
            db.execute(
                f"INSERT INTO audit (id, {V1_AUDIT_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (n if event.account_id else 1, row[0], row[1] or "", *row[2:]),
            )
    db.execute("COMMIT")
    db.close()


def _version_1_database(path: Path) -> None:
    _old_database(path, 1)


def _trail(account_id: str) -> list[AuditEvent]:
    """The trail of ``account_id`` that EVENTS make: newest first."""
    return [e for e in reversed(EVENTS) if e.account_id == account_id]


#: SHA-256 of each released migration's statements as each dialect runs them. A released
#: migration is never edited (databases were made with it): add the next one instead,
#: and its digests here once it is released.
RELEASED_MIGRATIONS = {
    ("sqlite", 1): "8176c09104743b22171f48cdf6c8d2e821579a899a7b0f92f5f743d4c4645162",
    ("sqlite", 2): "258de59a71e8ad7702ed25c4c891b7b540d78534bb2069f2721945d7f0caca9c",
    ("postgres", 1): "234a9404d700334d1ff8207c8ec2c3a9dd63eca663be1114918e249905eef39e",
    ("postgres", 2): "8bd1ece08c8774498ce1b8e7604db01d28e9fdef16b1289c3aaf6faa9409d1d6",
    ("sqlite", 3): "084388e841ca2e1eb46fa2259cd2aca116b890026b1b788dc37c34e7a2257027",
    ("postgres", 3): "3337c49eff4ce38e44456715e3193ffa6678c450f113742861d48d931f8a9575",
    ("sqlite", 4): "174e1199eb11949f041888f42204fcaa2904ca4c30be66060291e285babb1397",
    ("postgres", 4): "9f1a0e235cb84790ce855e80c71a3a2660dde204635784fa2c0055356d46f882",
    ("sqlite", 5): "fdc837b0e617cacb3b715f32e190f14e2e25b4c6b33a906d082596ea1cec3995",
    ("postgres", 5): "d75408e58ac18be395f8620c07b62eba45d5f5e6c0a674a9930370611b7a0302",
}


def test_released_migrations_are_never_edited() -> None:
    # Both dialects: this needs no PostgreSQL server, only the SQL it would be sent.
    found = {
        (dialect.name, version): hashlib.sha256(
            "\n;\n".join(dialect.statements(statements)).encode()
        ).hexdigest()
        for dialect in (_migrations.SQLITE, _migrations.POSTGRES)
        for version, statements in _migrations.MIGRATIONS
        if (dialect.name, version) in RELEASED_MIGRATIONS
    }
    assert found == RELEASED_MIGRATIONS


def test_migrating_from_version_1_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _version_1_database(path)
    with sqlite3.connect(path) as db:
        before = _rows(db)
    assert all(before.values())  # the check below would pass on empty tables
    assert len(_trail("a1")) == 3

    with pytest.raises(ts.StoreError, match="schema version 1"):
        ts.SQLiteStore(path, migrate=False)  # never migrated behind the operator's back
    store = ts.SQLiteStore(path)
    assert store.schema_version() == _migrations.SCHEMA_VERSION == 5
    store.close()

    with sqlite3.connect(path) as db:
        assert _rows(db) == before
        assert _Tx(db).audit_events("a1", 10) == _trail("a1")
        layout = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert db.execute("SELECT count(*) FROM sqlite_sequence").fetchone() == (0,)
    for table in ("challenges", "sessions", "throttles", "audit"):
        assert layout[table].rstrip().endswith("WITHOUT ROWID"), table
    assert {"users_account", "sessions_expiry"} <= indexes
    assert not indexes & {"challenges_expiry", "audit_account"}
    assert not any(name.endswith("_new") for name in layout)


def test_audit_ids_keep_counting_each_accounts_events_after_the_migration(
    tmp_path: Path,
) -> None:
    # R60: the trail is read newest first; ids give that order within an account.
    path = tmp_path / "old.db"
    _version_1_database(path)
    store = ts.SQLiteStore(path)
    with store.transaction() as tx:
        tx.put_account(Account("a2", "Other", T0))
        tx.add_audit(AuditEvent(T0, "logout", Outcome.SUCCESS, "a1", "u1", None))
        tx.add_audit(AuditEvent(T0, "user_created", Outcome.SUCCESS, "a2", None, "u2"))
        tx.add_audit(AuditEvent(T0, "login", Outcome.FAILURE, None, None, None, "wrong"))
        newest = tx.audit_events("a1", 10)
        other = tx.audit_events("a2", 10)
    store.close()
    with sqlite3.connect(path) as db:
        ids = db.execute("SELECT account_id, id FROM audit ORDER BY account_id, id").fetchall()
    assert ids == [("", 4), ("", 5), ("a1", 1), ("a1", 2), ("a1", 3), ("a1", 4), ("a2", 1)]
    assert [e.action for e in newest] == ["logout", "logout", "login", "user_created"]
    assert [(e.action, e.account_id) for e in other] == [("user_created", "a2")]


def test_migrating_from_version_2_keeps_every_row(tmp_path: Path) -> None:
    # Version 3 adds columns in place: every row keeps its values, and the new columns
    # hold what the rows meant before them (nothing in flight, one attempt per event).
    path = tmp_path / "old.db"
    _old_database(path, 2)
    with sqlite3.connect(path) as db:
        before = _rows(db)
        ids = db.execute("SELECT account_id, id FROM audit ORDER BY 1, 2").fetchall()
    assert all(before.values())

    with pytest.raises(ts.StoreError, match="schema version 2"):
        ts.SQLiteStore(path, migrate=False)
    store = ts.SQLiteStore(path)
    assert store.schema_version() == _migrations.SCHEMA_VERSION
    with store.transaction(write=False) as tx:
        assert tx.get_throttle(THROTTLE.key) == THROTTLE
        assert tx.audit_events("a1", 10) == _trail("a1")
        # Version 4's columns mean what the rows meant before them (R95, R96, R99): a
        # requirement of everyone, no grace period, no second factor in the session, and
        # the members' generation where the one generation was.
        assert tx.get_account("a1") == replace(ACCOUNT, members_generation=2)
        assert tx.get_session(SESSION.token_hash) == replace(SESSION, members_generation=2)
        old = tx.get_session(OLD_SESSION.token_hash)
        account = tx.get_account("a1")
        member = tx.get_user("u1")
    store.close()
    # R21: a member's session revoked before the upgrade stays revoked after it.
    assert old is not None
    assert member is not None
    with pytest.raises(ts.SessionInvalid, match="revoked"):
        old.check_valid(T0, timedelta(hours=12), replace(member, role=Role.MEMBER), account)

    with sqlite3.connect(path) as db:
        assert _rows(db) == before
        assert db.execute("SELECT account_id, id FROM audit ORDER BY 1, 2").fetchall() == ids
        added = {
            table: set(db.execute(f"SELECT {columns} FROM {table}"))  # noqa: S608
            for table, columns in VERSION_3_COLUMNS.items()
        }
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert added == {"throttles": {(0, None)}, "audit": {(1,)}}
    assert "audit_throttled" in indexes
    with sqlite3.connect(path) as db:
        added = {
            table: set(db.execute(f"SELECT {columns} FROM {table}"))  # noqa: S608
            for table, columns in VERSION_4_COLUMNS.items()
        }
        assert db.execute("SELECT count(*) FROM remembered_devices").fetchone() == (0,)
    assert added == {
        "accounts": {("everyone", None, None, None, 2)},
        "sessions": {(2, None), (1, None)},
    }


def test_migrating_from_version_4_keeps_every_row(tmp_path: Path) -> None:
    # Version 5 (R100-R109) adds the users' count of security keys in place, 0 for every
    # user (nobody had a key), and an empty table of keys.
    path = tmp_path / "old.db"
    _old_database(path, 4)
    with sqlite3.connect(path) as db:
        before = _rows(db)
    assert all(before.values())
    with pytest.raises(ts.StoreError, match="schema version 4"):
        ts.SQLiteStore(path, migrate=False)
    store = ts.SQLiteStore(path)
    assert store.schema_version() == _migrations.SCHEMA_VERSION == 5
    with store.transaction(write=False) as tx:
        user = tx.get_user("u1")
        assert tx.security_keys_of("u1") == []
    store.close()
    assert user is not None
    assert (user.security_keys, user.has_second_factor) == (0, True)
    with sqlite3.connect(path) as db:
        assert _rows(db) == before
        added = {
            table: set(db.execute(f"SELECT {columns} FROM {table}"))  # noqa: S608
            for table, columns in VERSION_5_COLUMNS.items()
        }
        keys = db.execute("SELECT count(*) FROM security_keys").fetchone()
    assert added == {"users": {(0,)}}
    assert keys == (0,)


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_a_database_made_at_the_current_version_has_the_same_layout_as_a_migrated_one(
    tmp_path: Path, version: int
) -> None:
    _old_database(tmp_path / "old.db", version)
    ts.SQLiteStore(tmp_path / "old.db").close()
    ts.SQLiteStore(tmp_path / "new.db").close()

    def layout(path: Path) -> set[tuple[str, str, str]]:
        with sqlite3.connect(path) as db:
            return set(db.execute("SELECT type, name, sql FROM sqlite_master"))

    assert layout(tmp_path / "old.db") == layout(tmp_path / "new.db")


def test_a_throttle_key_is_stored_as_the_same_text_as_before(tmp_path: Path) -> None:
    # The column holds ``key.stored``, as when keys were strings: rows written by an
    # older twostep are found, and no migration was needed.
    store = ts.SQLiteStore(tmp_path / "t.db")
    old = ThrottleKey(ThrottleScope.EMAIL, "ann@example.com")
    with store.transaction() as tx:
        tx._db.execute(
            "INSERT INTO throttles (key, failures, blocked_until, last_failure_at) "
            "VALUES ('email:ann@example.com', 2, NULL, ?)",
            (_sql.to_us(T0),),
        )
        tx.put_throttle(ThrottleState(ThrottleKey(ThrottleScope.CLIENT, "::1"), 1, None, T0))
    with store.transaction(write=False) as tx:
        assert tx.get_throttle(old) == ThrottleState(old, 2, None, T0)
        keys = sorted(r[0] for r in tx._db.execute("SELECT key FROM throttles"))
    store.close()
    assert keys == ["client:::1", "email:ann@example.com"]


# -- what a login writes ----------------------------------------------------------------------


@pytest.fixture
def traced(tmp_path: Path) -> tuple[ts.SQLiteStore, list[str]]:
    store = ts.SQLiteStore(tmp_path / "t.db")
    with store.transaction() as tx:
        _fill(tx)
    statements: list[str] = []
    store._connection().set_trace_callback(statements.append)
    return store, statements


def _user(store: ts.SQLiteStore) -> User:
    with store.transaction(write=False) as tx:
        user = tx.get_user("u1")
    assert user is not None
    return user


def test_a_user_read_in_the_transaction_is_written_back_by_its_changed_columns_only(
    traced: tuple[ts.SQLiteStore, list[str]],
) -> None:
    # R4: recording the step of a used OTP is one column; the indexed email_key and
    # account_id are not rewritten, so their index pages stay out of the commit.
    store, statements = traced
    with store.transaction() as tx:
        user = tx.get_user("u1")
        assert user is not None
        tx.put_user(user.accept_step(58_000_001))
    updates = [s for s in statements if s.startswith("UPDATE")]
    assert updates == ["UPDATE users SET last_step = 58000001 WHERE id = 'u1'"]
    assert _user(store).two_factor.last_step == 58_000_001


def test_an_unchanged_user_is_not_written_and_a_user_not_read_is_written_whole(
    traced: tuple[ts.SQLiteStore, list[str]],
) -> None:
    store, statements = traced
    user = _user(store)
    with store.transaction() as tx:
        assert tx.get_user("u1") == user
        tx.put_user(user)
    assert not [s for s in statements if s.startswith("UPDATE")]

    changed = user.use_backup_code(1)
    with store.transaction() as tx:  # read in another transaction: nothing to compare with
        tx.put_user(changed)
    (update,) = [s for s in statements if s.startswith("UPDATE")]
    assert "email_key = " in update
    assert _user(store) == changed


def test_two_changes_to_one_user_in_a_transaction_both_land(
    traced: tuple[ts.SQLiteStore, list[str]],
) -> None:
    store, _ = traced
    with store.transaction() as tx:
        user = tx.find_user_by_email("ann@example.com")
        assert user is not None
        first = user.accept_step(58_000_001)
        tx.put_user(first)
        second = first.use_backup_code(1)
        tx.put_user(second)
        tx.put_user(first.use_backup_code(1).accept_step(58_000_002))
    stored = _user(store)
    assert stored.two_factor.last_step == 58_000_002
    assert stored.backup_codes is not None
    assert stored.backup_codes.used == (True, True)


def test_a_rolled_back_partial_update_leaves_the_user_as_it_was(
    traced: tuple[ts.SQLiteStore, list[str]],
) -> None:
    store, _ = traced
    before = _user(store)

    def crash() -> None:
        with store.transaction() as tx:
            user = tx.get_user("u1")
            assert user is not None
            tx.put_user(user.accept_step(58_000_001))
            raise RuntimeError("crash before the commit")

    with pytest.raises(RuntimeError):
        crash()
    assert _user(store) == before


def test_a_throttle_found_missing_is_not_deleted_but_one_written_since_is(
    traced: tuple[ts.SQLiteStore, list[str]],
) -> None:
    store, statements = traced
    key = ThrottleKey(ThrottleScope.USER, "nobody")
    with store.transaction() as tx:
        assert tx.get_throttle(key) is None
        tx.delete_throttle(key)  # found missing under the write lock: no statement
    assert not [s for s in statements if s.startswith("DELETE")]
    with store.transaction() as tx:
        assert tx.get_throttle(key) is None
        tx.put_throttle(ThrottleState(key, 1, None, T0))
        tx.delete_throttle(key)
    assert [s for s in statements if s.startswith("DELETE")] == [
        "DELETE FROM throttles WHERE key = 'user:nobody'"
    ]
    with store.transaction(write=False) as tx:
        assert tx.get_throttle(key) is None
