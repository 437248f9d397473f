"""What is particular to ``PostgresStore``: migrations, connections, and its transactions.

The shared store contract and the race tests (test_concurrency.py) run on it too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import twostep as ts
from tests import pgserver
from twostep._audit import AuditEvent, Outcome
from twostep._audit_pages import AuditQuery
from twostep._domain import (
    Account,
    Role,
    SessionRecord,
    ThrottleKey,
    ThrottleScope,
    ThrottleState,
    User,
)
from twostep.stores import _sql
from twostep.stores._migrations import MIGRATIONS, POSTGRES, SCHEMA_VERSION
from twostep.stores.postgres import LOCK_THROTTLES, PostgresStore

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
def dsn() -> Iterator[str]:
    """An empty schema of its own on the test server."""
    where, schema = pgserver.new_schema()
    yield where
    pgserver.drop_schema(schema)


def _versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM twostep_schema_version ORDER BY 1")]


def _user(uid: str, email: str) -> User:
    return User(
        id=uid,
        account_id="a1",
        email=email,
        role=Role.MEMBER,
        password_hash="$argon2id$not-a-real-hash",
        created_at=NOW,
    )


def test_a_new_database_gets_every_migration_once(dsn: str) -> None:
    store = PostgresStore(dsn)
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    PostgresStore(dsn).close()  # opening again applies nothing twice
    assert _versions(dsn) == [version for version, _ in MIGRATIONS]


def test_servers_starting_together_migrate_once(dsn: str) -> None:
    stores: list[PostgresStore] = []
    problems: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait(timeout=30)
        try:
            stores.append(PostgresStore(dsn))
        except BaseException as error:  # noqa: BLE001  # pragma: no cover - reported below
            problems.append(error)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    assert problems == []
    assert len(stores) == 6
    assert _versions(dsn) == [version for version, _ in MIGRATIONS]


def test_a_newer_schema_than_the_code_knows_is_a_clear_error(dsn: str) -> None:
    PostgresStore(dsn).close()
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO twostep_schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,)
        )
    with pytest.raises(ts.StoreError, match=r"newer than this twostep knows.*upgrade twostep"):
        PostgresStore(dsn)


def test_without_migrate_an_old_schema_asks_for_twostep_migrate(dsn: str) -> None:
    with pytest.raises(ts.StoreError, match="twostep migrate"):
        PostgresStore(dsn, migrate=False)
    PostgresStore(dsn).close()
    store = PostgresStore(dsn, migrate=False)  # now up to date: opens
    assert store.schema_version() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION
    store.close()


def test_repr_and_errors_never_show_the_password(dsn: str) -> None:
    secret = "pw-that-must-not-leak"
    store = PostgresStore(f"{dsn} password={secret}")
    assert secret not in repr(store)
    assert "host=127.0.0.1" in repr(store)
    store.close()
    with pytest.raises(ts.StoreError) as info:
        PostgresStore(f"host=127.0.0.1 port=1 password={secret} connect_timeout=2", timeout=3)
    assert secret not in str(info.value)
    with pytest.raises(ts.StoreError, match="not a valid PostgreSQL DSN"):
        PostgresStore(f"password={secret} this is not a dsn")


def test_read_transactions_cannot_write(dsn: str) -> None:
    store = PostgresStore(dsn)
    event = AuditEvent(NOW, "probe", Outcome.SUCCESS, None, None, None)
    with (
        pytest.raises(ts.StoreError, match="ReadOnlySqlTransaction"),
        store.transaction(write=False) as tx,
    ):
        tx.add_audit(event)
    store.close()


def test_a_taken_email_leaves_the_transaction_usable(dsn: str) -> None:
    store = PostgresStore(dsn)
    with store.transaction() as tx:
        tx.put_account(ts.Account(id="a1", name="Acme", created_at=NOW))
        tx.add_user(_user("u1", "a@example.test"))
    with store.transaction() as tx:
        with pytest.raises(ts.EmailTaken):
            tx.add_user(_user("u2", "A@Example.test"))
        tx.add_user(_user("u3", "b@example.test"))  # the same transaction goes on
    with store.transaction(write=False) as tx:
        assert [u.id for u in tx.users_of("a1")] == ["u1", "u3"]
    store.close()


def test_a_throttle_key_is_stored_and_locked_as_the_same_text_as_before(dsn: str) -> None:
    # The column holds ``key.stored`` and the advisory lock hashes that text, as when
    # keys were strings: servers of both versions find the same rows and take the same
    # locks during a rolling upgrade.
    store = PostgresStore(dsn)
    key = ThrottleKey(ThrottleScope.USER, "u1")
    with store.transaction() as tx:
        tx.put_throttle(ThrottleState(key, 3, None, NOW))
    with store.transaction() as tx:
        assert tx.get_throttle(key) == ThrottleState(key, 3, None, NOW)
        held = tx._conn.execute(
            "SELECT classid::bigint, objid::bigint, objsubid FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchall()
        expected = tx._conn.execute(
            "SELECT %s::bigint, hashtext('user:u1')::bigint & 4294967295", (LOCK_THROTTLES,)
        ).fetchone()
        stored = tx._conn.execute("SELECT key FROM throttles").fetchall()
    store.close()
    assert expected is not None
    assert held == [(*expected, 2)]
    assert stored == [("user:u1",)]


def test_write_transactions_are_read_committed_whatever_the_server_default(dsn: str) -> None:
    options = conninfo_to_dict(dsn).get("options") or ""
    strict = make_conninfo(dsn, options=f"{options} -c default_transaction_isolation=serializable")
    store = PostgresStore(strict)
    with store.transaction() as tx:
        level = tx._conn.execute("SHOW transaction_isolation").fetchone()
    assert level == ("read committed",)
    with store.transaction(write=False) as tx:
        level = tx._conn.execute("SHOW transaction_isolation").fetchone()
    assert level == ("repeatable read",)
    store.close()


def test_a_dropped_connection_is_replaced(dsn: str) -> None:
    store = PostgresStore(dsn, min_size=1, max_size=1)
    with store.transaction() as tx:
        row = tx._conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))
    with store.transaction(write=False) as tx:  # the pool notices, and reconnects
        assert tx.get_account("nobody") is None
    store.close()


def test_a_deadlock_is_a_store_error_that_says_nothing_was_written(dsn: str) -> None:
    store = PostgresStore(dsn)
    with store.transaction() as tx:
        tx.put_account(ts.Account(id="a1", name="Acme", created_at=NOW))
        tx.add_user(_user("u1", "a@example.test"))
        tx.add_user(_user("u2", "b@example.test"))
    both = threading.Barrier(2)
    failures: list[ts.StoreError] = []

    def lock(first: str, second: str) -> None:
        try:
            with store.transaction() as tx:
                tx.get_user(first)
                both.wait(timeout=30)
                tx.get_user(second)
        except ts.StoreError as error:
            failures.append(error)

    threads = [
        threading.Thread(target=lock, args=("u1", "u2")),
        threading.Thread(target=lock, args=("u2", "u1")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert len(failures) == 1
    assert "DeadlockDetected" in str(failures[0])
    assert "may be retried" in str(failures[0])


def test_without_postgresql_the_tests_skip_unless_it_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pgserver, "_base", None)
    monkeypatch.setattr(pgserver, "_bindir", lambda: None)
    monkeypatch.delenv(pgserver.DSN_ENV, raising=False)
    monkeypatch.setenv(pgserver.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="TWOSTEP_REQUIRE_POSTGRES=1"):
        pgserver.base_dsn()
    monkeypatch.delenv(pgserver.REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL"):
        pgserver.base_dsn()
    monkeypatch.setenv(pgserver.DSN_ENV, "host=db.example dbname=twostep")
    assert pgserver.base_dsn() == "host=db.example dbname=twostep"


def test_migrating_from_version_2_keeps_every_row(dsn: str) -> None:
    # Version 3 adds columns in place: every row keeps its values and its audit id (the
    # position of the trail's pages), and the new columns hold what the rows meant
    # before them: nothing in flight, one attempt per event.
    key = ThrottleKey(ThrottleScope.USER, "u1")
    throttle = ThrottleState(key, 3, NOW + timedelta(seconds=8), NOW)
    account = Account("a1", "Acme", NOW, two_factor_required=True, session_generation=2)
    session = SessionRecord("s" * 64, "u1", "a1", NOW, NOW + timedelta(hours=1), 2, 3)
    events = [
        AuditEvent(NOW, "login", Outcome.SUCCESS, "a1", "u1", None, "otp"),
        AuditEvent(NOW, "login", Outcome.THROTTLED, "a1", "u1", None, "email"),
        AuditEvent(NOW, "login", Outcome.FAILURE, None, None, None, "invalid_credentials"),
        AuditEvent(NOW, "logout", Outcome.SUCCESS, "a1", "u1", None),
    ]
    audit_before_3 = (  # the columns version 2 has
        "SELECT id, at, account_id, actor, actor_id, action, target_id, outcome, reason "
        "FROM audit ORDER BY id"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE twostep_schema_version ("
            "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, statements in MIGRATIONS[:2]:
            for statement in POSTGRES.statements(statements):
                conn.execute(statement.encode())
            conn.execute("INSERT INTO twostep_schema_version (version) VALUES (%s)", (version,))
        conn.execute(
            "INSERT INTO throttles (key, failures, blocked_until, last_failure_at) "
            "VALUES (%s, %s, %s, %s)",
            _sql.throttle_row(throttle)[:4],
        )
        for event in events:
            conn.execute(
                "INSERT INTO audit (at, account_id, actor, actor_id, action, target_id, "
                "outcome, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                _sql.audit_row(event)[:8],
            )
        before = conn.execute(audit_before_3).fetchall()
        # Rows as version 2 has them: version 4 gives them the meaning they had (R95, R96,
        # R99): a requirement of everyone with no grace, no second factor in the session.
        conn.execute(
            "INSERT INTO accounts (id, name, created_at, two_factor_required, "
            "session_generation) VALUES (%s, %s, %s, %s, %s)",
            _sql.account_row(account)[:5],
        )
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, account_id, issued_at, expires_at, "
            "account_generation, user_generation) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            _sql.session_row(session)[:7],
        )

    with pytest.raises(ts.StoreError, match="twostep migrate"):
        PostgresStore(dsn, migrate=False)
    store = PostgresStore(dsn)
    assert store.schema_version() == SCHEMA_VERSION == 5
    with store.transaction(write=False) as tx:
        assert tx.get_throttle(key) == throttle
        found = tx.audit_page("a1", AuditQuery(10))
        # The members' generation starts where the one generation was (R21, R96).
        assert tx.get_account("a1") == replace(account, members_generation=2)
        assert tx.get_session(session.token_hash) == replace(session, members_generation=2)
    store.close()
    assert [e for _, e in found] == [events[3], events[1], events[0]]
    assert [position for position, _ in found] == [before[3][0], before[1][0], before[0][0]]
    with psycopg.connect(dsn) as conn:
        assert conn.execute(audit_before_3).fetchall() == before
        assert conn.execute("SELECT DISTINCT repeats FROM audit").fetchall() == [(1,)]
        assert conn.execute("SELECT in_flight, in_flight_at FROM throttles").fetchall() == [
            (0, None)
        ]
        indexes = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'audit'")
        assert "audit_throttled" in {row[0] for row in indexes}


def test_migrating_from_version_4_gives_every_user_no_security_key(dsn: str) -> None:
    # Version 5 (R100-R109) adds the users' count of security keys in place, and their
    # table: a user of version 4 has no key, and keeps every other value.
    old_columns = ", ".join(_sql.USER_COLUMNS.split(", ")[:17])
    user = _user("u1", "a@example.test")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE twostep_schema_version ("
            "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, statements in MIGRATIONS[:4]:
            for statement in POSTGRES.statements(statements):
                conn.execute(statement.encode())
            conn.execute("INSERT INTO twostep_schema_version (version) VALUES (%s)", (version,))
        conn.execute(
            "INSERT INTO accounts (id, name, created_at, two_factor_required, "
            "session_generation) VALUES ('a1', 'Acme', 0, 0, 0)"
        )
        conn.execute(
            f"INSERT INTO users ({old_columns}) VALUES ({', '.join(['%s'] * 17)})".encode(),  # noqa: S608
            _sql.user_row(user)[:17],
        )
    with pytest.raises(ts.StoreError, match="twostep migrate"):
        PostgresStore(dsn, migrate=False)
    store = PostgresStore(dsn)
    assert store.schema_version() == SCHEMA_VERSION == 5
    with store.transaction(write=False) as tx:
        assert tx.get_user("u1") == user
        assert tx.security_keys_of("u1") == []
    store.close()
