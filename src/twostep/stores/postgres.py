"""PostgreSQL, for installations with several app servers: ``pip install 'twostep[postgres]'``.

A write transaction runs at READ COMMITTED and locks every row it reads that a
later write depends on: users, login challenges and throttle counters with
``FOR UPDATE``, the account with ``FOR SHARE``. So "check the code, record that it
was used, issue the session" happens once for two racing requests on any number of
servers: the second waits for the first, then reads what it committed (R4, R5).
A throttle counter that does not exist yet has no row to lock, so every access to
a counter first takes a transaction-scoped advisory lock on its key: parallel
failures lose no increment (R6). Changing the account requirement takes the
account row exclusively, which waits for the logins that read it (R21). Read
transactions (``write=False``) take no lock and see one snapshot.

docs/postgres.md explains the choice, and what each store does for each guarantee.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from .._audit import AuditEvent
from .._audit_pages import AuditQuery
from .._domain import (
    Account,
    LoginChallenge,
    RememberedDevice,
    SecurityKey,
    SessionRecord,
    ThrottleKey,
    ThrottleScope,
    ThrottleState,
    User,
)
from .._errors import EmailTaken, StoreError
from .._store import PurgeBatch, PurgeResume, SealedKeyUse, SessionWithUser
from .._user_pages import UserQuery
from . import _sql
from ._migrations import MIGRATIONS, POSTGRES, SCHEMA_VERSION, ensure_schema, refuse_newer
from ._sql import (
    ACCOUNT_COLUMNS,
    AUDIT_COLUMNS,
    CHALLENGE_COLUMNS,
    DEVICE_COLUMNS,
    KEY_COLUMNS,
    SESSION_COLUMNS,
    THROTTLE_COLUMNS,
    USER_COLUMNS,
)

__all__ = ["PostgresStore"]

Conn = psycopg.Connection[tuple[Any, ...]]

#: The table that records which migrations a database has had.
VERSION_TABLE = "twostep_schema_version"
#: First key of twostep's advisory locks (the two-int form keeps them apart from a
#: host application's one-bigint locks). Second key: 0 for migrations, or a hash.
LOCK_MIGRATIONS = 0x74737470  # "tstp"
LOCK_THROTTLES = 0x74737471


def _placeholders(columns: str) -> str:
    return ", ".join("%s" for _ in columns.split(","))


def _upsert(table: str, columns: str) -> str:
    names = [c.strip() for c in columns.split(",")]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names[1:])
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({_placeholders(columns)}) "
        f"ON CONFLICT ({names[0]}) DO UPDATE SET {updates}"
    )


_PUT_ACCOUNT = _upsert("accounts", ACCOUNT_COLUMNS)
_PUT_CHALLENGE = _upsert("challenges", CHALLENGE_COLUMNS)
_PUT_SESSION = _upsert("sessions", SESSION_COLUMNS)
_PUT_DEVICE = _upsert("remembered_devices", DEVICE_COLUMNS)
_PUT_THROTTLE = _upsert("throttles", THROTTLE_COLUMNS)
# An inner join, so that a write transaction can lock the user and the account it
# reads (PostgreSQL locks no row on the nullable side of an outer join).
_GET_SESSION_WITH_USER = (
    "SELECT {}, {}, {} FROM sessions AS s "
    "JOIN users AS u ON u.id = s.user_id "
    "JOIN accounts AS a ON a.id = s.account_id "
    "WHERE s.token_hash = %s"
).format(
    *(
        _sql.prefixed(alias, columns)
        for alias, columns in (("s", SESSION_COLUMNS), ("u", USER_COLUMNS), ("a", ACCOUNT_COLUMNS))
    )
)
_UPDATE_USER = "UPDATE users SET {} WHERE id = %s".format(
    ", ".join(f"{c.strip()} = %s" for c in USER_COLUMNS.split(",")[1:])
)


class _Tx:
    """One transaction on one pooled connection; ``write`` decides what is locked."""

    def __init__(self, conn: Conn, *, write: bool) -> None:
        self._conn = conn
        self._write = write
        # Rows read by a write transaction are locked until it ends (see module doc).
        self._update = " FOR UPDATE" if write else ""
        self._share = " FOR SHARE" if write else ""

    def _one(self, sql: str, args: tuple[object, ...]) -> tuple[Any, ...] | None:
        return self._conn.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, args).fetchall()

    def get_account(self, account_id: str) -> Account | None:
        # FOR SHARE: logins of one account run side by side, but a change of the
        # requirement (an UPDATE) waits for them, and they wait for it (R21).
        row = self._one(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = %s{self._share}", (account_id,)
        )
        return None if row is None else _sql.account_of(row)

    def put_account(self, account: Account) -> None:
        self._conn.execute(_PUT_ACCOUNT, _sql.account_row(account))

    def get_user(self, user_id: str) -> User | None:
        row = self._one(f"SELECT {USER_COLUMNS} FROM users WHERE id = %s{self._update}", (user_id,))
        return None if row is None else _sql.user_of(row)

    def find_user_by_email(self, email_key: str) -> User | None:
        row = self._one(
            f"SELECT {USER_COLUMNS} FROM users WHERE email_key = %s{self._update}", (email_key,)
        )
        return None if row is None else _sql.user_of(row)

    def users_of(self, account_id: str) -> list[User]:
        # A listing for display (R50): no write depends on it, so it locks nothing.
        rows = self._all(
            f"SELECT {USER_COLUMNS} FROM users WHERE account_id = %s ORDER BY created_at, id",
            (account_id,),
        )
        return [_sql.user_of(r) for r in rows]

    def add_user(self, user: User) -> None:
        try:
            # A savepoint: a refused insert must not abort the whole transaction.
            with self._conn.transaction():
                self._conn.execute(
                    f"INSERT INTO users ({USER_COLUMNS}) VALUES ({_placeholders(USER_COLUMNS)})",
                    _sql.user_row(user),
                )
        except errors.UniqueViolation as error:
            if "email_key" in (error.diag.constraint_name or ""):
                msg = "a user with this email already exists"
                raise EmailTaken(msg) from None
            raise

    def put_user(self, user: User) -> None:
        row = _sql.user_row(user)
        try:
            self._conn.execute(_UPDATE_USER, (*row[1:], row[0]))
        except errors.UniqueViolation as error:  # a new email another user has (R88)
            # No savepoint on this hot path: the transaction is aborted, and rolls back.
            if "email_key" in (error.diag.constraint_name or ""):
                msg = "a user with this email already exists"
                raise EmailTaken(msg) from None
            raise

    def users_in(self, account_id: str, query: UserQuery) -> list[User]:
        # Locks nothing: the stories that count owners lock the account first.
        filters, args = _sql.user_filters(query, "%s")
        rows = self._all(
            f"SELECT {USER_COLUMNS} FROM users WHERE account_id = %s{filters} "
            "ORDER BY created_at, id LIMIT %s",
            (account_id, *args, query.limit),
        )
        return [_sql.user_of(r) for r in rows]

    def delete_user(self, user_id: str) -> None:
        # Sessions and challenges have no index on user_id (every login would write its
        # pages): a deletion, now and then, scans them.
        self._conn.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))
        self._conn.execute("DELETE FROM challenges WHERE user_id = %s", (user_id,))
        self.delete_devices_of(user_id)
        self.delete_throttle(ThrottleKey(ThrottleScope.USER, user_id))
        self._conn.execute("DELETE FROM security_keys WHERE user_id = %s", (user_id,))
        self._conn.execute("DELETE FROM users WHERE id = %s", (user_id,))

    def users_page(self, after_id: str, limit: int) -> list[User]:
        # Locked: a batch job (re-sealing secrets) writes these users back.
        rows = self._all(
            f"SELECT {USER_COLUMNS} FROM users WHERE id > %s ORDER BY id LIMIT %s{self._update}",
            (after_id, limit),
        )
        return [_sql.user_of(r) for r in rows]

    def sealed_key_ids(self) -> dict[str, SealedKeyUse]:
        # Not locked: a read at start-up. A value with fewer than two dots has no key id.
        rows = self._all(
            "WITH sealed (id, value) AS ("
            " SELECT id, totp_secret FROM users WHERE totp_secret IS NOT NULL"
            " UNION ALL SELECT id, pending_secret FROM users WHERE pending_secret IS NOT NULL"
            "), keyed AS ("
            " SELECT CASE WHEN value LIKE '%%.%%.%%' THEN split_part(value, '.', 2) ELSE '' END"
            " AS key_id, id, value FROM sealed"
            ") SELECT DISTINCT ON (key_id) key_id, count(*) OVER (PARTITION BY key_id), id, value"
            " FROM keyed ORDER BY key_id, id",
            (),
        )
        return {r[0]: SealedKeyUse(r[1], r[2], r[3]) for r in rows}

    def security_keys_of(self, user_id: str) -> list[SecurityKey]:
        # A listing, or the keys of a user whose row the transaction has locked.
        rows = self._all(
            f"SELECT {KEY_COLUMNS} FROM security_keys WHERE user_id = %s ORDER BY created_at, id",
            (user_id,),
        )
        return [_sql.key_of(r) for r in rows]

    def find_security_key(self, credential_id: str) -> SecurityKey | None:
        # FOR UPDATE: two uses of one key are serialised, its sign count only grows (R104).
        row = self._one(
            f"SELECT {KEY_COLUMNS} FROM security_keys WHERE credential_id = %s{self._update}",
            (credential_id,),
        )
        return None if row is None else _sql.key_of(row)

    def add_security_key(self, key: SecurityKey) -> None:
        self._conn.execute(
            f"INSERT INTO security_keys ({KEY_COLUMNS}) VALUES ({_placeholders(KEY_COLUMNS)})",
            _sql.key_row(key),
        )

    def put_security_key(self, key: SecurityKey) -> None:
        row = _sql.key_row(key)
        self._conn.execute(
            "UPDATE security_keys SET sign_count = %s, last_used_at = %s WHERE id = %s",
            (row[5], row[8], row[0]),
        )

    def delete_security_key(self, key_id: str) -> None:
        self._conn.execute("DELETE FROM security_keys WHERE id = %s", (key_id,))

    def delete_security_keys_of(self, user_id: str) -> None:
        self._conn.execute("DELETE FROM security_keys WHERE user_id = %s", (user_id,))

    def get_challenge(self, token_hash: str) -> LoginChallenge | None:
        row = self._one(
            f"SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE token_hash = %s{self._update}",
            (token_hash,),
        )
        return None if row is None else _sql.challenge_of(row)

    def put_challenge(self, challenge: LoginChallenge) -> None:
        self._conn.execute(_PUT_CHALLENGE, _sql.challenge_row(challenge))

    def delete_challenge(self, token_hash: str) -> None:
        self._conn.execute("DELETE FROM challenges WHERE token_hash = %s", (token_hash,))

    def delete_challenges_of(self, user_id: str) -> None:
        # A scan (no index on user_id, see delete_user): rare, and the table is short-lived.
        self._conn.execute("DELETE FROM challenges WHERE user_id = %s", (user_id,))

    def get_session(self, token_hash: str) -> SessionRecord | None:
        # Sessions are only ever inserted and deleted, never updated: nothing to lock.
        row = self._one(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = %s", (token_hash,)
        )
        return None if row is None else _sql.session_of(row)

    def get_session_with_user(self, token_hash: str) -> SessionWithUser | None:
        # The locks of get_user and get_account: the user FOR UPDATE, the account FOR SHARE.
        locks = " FOR UPDATE OF u FOR SHARE OF a" if self._write else ""
        row = self._one(_GET_SESSION_WITH_USER + locks, (token_hash,))
        if row is None:
            # No session, or one whose user or account is gone: read them one by one.
            record = self.get_session(token_hash)
            if record is None:
                return None
            return SessionWithUser(
                record, self.get_user(record.user_id), self.get_account(record.account_id)
            )
        return SessionWithUser._make(_sql.session_with_user_of(row))

    def put_session(self, session: SessionRecord) -> None:
        self._conn.execute(_PUT_SESSION, _sql.session_row(session))

    def delete_session(self, token_hash: str) -> None:
        self._conn.execute("DELETE FROM sessions WHERE token_hash = %s", (token_hash,))

    def get_device(self, token_hash: str) -> RememberedDevice | None:
        row = self._one(
            f"SELECT {DEVICE_COLUMNS} FROM remembered_devices WHERE token_hash = %s",
            (token_hash,),
        )
        return None if row is None else _sql.device_of(row)

    def put_device(self, device: RememberedDevice) -> None:
        self._conn.execute(_PUT_DEVICE, _sql.device_row(device))

    def devices_of(self, user_id: str) -> list[RememberedDevice]:
        rows = self._all(
            f"SELECT {DEVICE_COLUMNS} FROM remembered_devices WHERE user_id = %s "
            "ORDER BY created_at, id",
            (user_id,),
        )
        return [_sql.device_of(r) for r in rows]

    def delete_device(self, token_hash: str) -> None:
        self._conn.execute("DELETE FROM remembered_devices WHERE token_hash = %s", (token_hash,))

    def delete_devices_of(self, user_id: str) -> None:
        self._conn.execute("DELETE FROM remembered_devices WHERE user_id = %s", (user_id,))

    def _lock_throttle(self, stored: str) -> None:
        # FOR UPDATE on a counter that does not exist yet locks nothing, and two first
        # failures would both write 1. The advisory lock exists whether or not the row
        # does; it is held until the transaction ends. It hashes the key as stored
        # (``key.stored``), so servers of older versions take the same lock. A hash
        # collision only makes two keys wait for each other.
        if self._write:
            self._conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_THROTTLES, stored)
            )

    def get_throttle(self, key: ThrottleKey) -> ThrottleState | None:
        stored = key.stored
        self._lock_throttle(stored)
        row = self._one(f"SELECT {THROTTLE_COLUMNS} FROM throttles WHERE key = %s", (stored,))
        return None if row is None else _sql.throttle_of(key, row)

    def put_throttle(self, state: ThrottleState) -> None:
        row = _sql.throttle_row(state)
        self._lock_throttle(row[0])
        self._conn.execute(_PUT_THROTTLE, row)

    def delete_throttle(self, key: ThrottleKey) -> None:
        stored = key.stored
        self._lock_throttle(stored)
        self._conn.execute("DELETE FROM throttles WHERE key = %s", (stored,))

    def add_audit(self, event: AuditEvent) -> None:
        self._conn.execute(
            f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({_placeholders(AUDIT_COLUMNS)})",
            _sql.audit_row(event),
        )

    def repeat_audit(self, event: AuditEvent, since: datetime) -> bool:
        # R75: the attempts a throttled event stands for are those of one throttle key,
        # whose advisory lock this transaction holds: they take turns. Were two to race,
        # the UPDATE waits for the other's and counts on the row as it committed it.
        match, args = _sql.repeat_conditions(event, "%s", since)
        account, account_args = (
            ("account_id IS NULL", ())
            if event.account_id is None
            else ("account_id = %s", (event.account_id,))
        )
        bumped = self._conn.execute(
            "UPDATE audit SET repeats = repeats + 1 WHERE id = ("
            f"SELECT id FROM audit WHERE {account} AND {match} ORDER BY id DESC LIMIT 1)",
            (*account_args, *args),
        )
        return bumped.rowcount > 0

    def audit_events(self, account_id: str, limit: int) -> list[AuditEvent]:
        rows = self._all(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE account_id = %s ORDER BY id DESC LIMIT %s",
            (account_id, limit),
        )
        return [_sql.audit_of(r) for r in rows]

    def audit_page(self, account_id: str, query: AuditQuery) -> list[tuple[int, AuditEvent]]:
        # The position is the global audit id (BIGSERIAL). An id is drawn at the insert
        # and seen at the commit, so an event committed while a reader pages may land
        # on a page already read: a walk gives every event committed before it began
        # exactly once, and any later one at most once.
        filters, args = _sql.audit_filters(query, "%s")
        rows = self._all(
            f"SELECT id, {AUDIT_COLUMNS} FROM audit WHERE account_id = %s{filters} "
            "ORDER BY id DESC LIMIT %s",
            (account_id, *args, query.limit),
        )
        return [(r[0], _sql.audit_of(r[1:])) for r in rows]

    def purge_expired(
        self,
        now: datetime,
        *,
        throttles_before: datetime,
        audit_before: datetime | None = None,
        anonymous_audit_before: datetime | None = None,
        limit: int,
        resume: PurgeResume | None = None,
    ) -> PurgeBatch:
        # No advisory locks: a login that read a throttle row this deletes writes its
        # count with an upsert, which recreates the row, as if it had run before the
        # purge; a login that wrote the row holds its lock, and the condition is
        # checked after it ends.
        return _sql.purge_batch(
            self._one,
            lambda sql, args: self._conn.execute(sql, args).rowcount,
            "%s",
            now,
            throttles_before,
            audit_before=audit_before,
            anonymous_audit_before=anonymous_audit_before,
            limit=limit,
            resume=resume,
            audit_key="id",
            no_account="account_id IS NULL",
        )


#: SQLSTATEs (or their two-character class) and the ``reason`` a StoreError gives them.
_REASONS = {
    "08": "unavailable",  # connection exception
    "57P01": "unavailable",  # admin shutdown: the server is stopping
    "57P02": "unavailable",  # crash shutdown
    "57P03": "unavailable",  # cannot connect now: the server is starting
    "53300": "unavailable",  # too many connections
    "53100": "full",  # disk full
    "40001": "conflict",  # serialization failure
    "40P01": "conflict",  # deadlock detected
    "55P03": "locked",  # lock not available (lock_timeout)
    "25006": "read_only",  # read-only transaction: a standby, or default_transaction_read_only
    "XX001": "corrupt",  # data corrupted
    "XX002": "corrupt",  # index corrupted
}


def _store_error(error: psycopg.Error) -> StoreError:
    """A driver error as a ``StoreError``: its class and SQLSTATE, never row values.

    ``reason`` is ``"unavailable"`` (the server cannot be reached, went away or is
    shutting down), ``"conflict"`` (deadlock, serialization failure: nothing was
    written, retry), ``"locked"`` (``lock_timeout``), ``"full"``, ``"read_only"``,
    ``"corrupt"``, else ``"store"``.
    """
    state = getattr(error, "sqlstate", None)
    reason = _REASONS.get(state or "") or _REASONS.get((state or "")[:2])
    if reason is None and state is None and isinstance(error, psycopg.OperationalError):
        reason = "unavailable"  # no answer from a server: refused, lost, timed out
    hint = ""
    if reason in {"conflict", "locked"}:
        hint = "; nothing was written, the request may be retried"
    elif reason == "unavailable":
        hint = "; the server cannot be reached or went away"
    where = f" (SQLSTATE {state})" if state else ""
    return StoreError(f"PostgreSQL: {type(error).__name__}{where}{hint}", reason=reason)


#: The first statements of each transaction, sent in one round trip. Writers commit
#: synchronously whatever the server's default (a used backup code or a revoked
#: session must survive a crash of the server); both read the schema version.
_BEGIN_WRITE = (
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE; "
    "SET LOCAL synchronous_commit = on; "
    f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}"
)
_BEGIN_READ = (
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; "
    f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}"
)
#: While no connection is free and the pool may grow, a request asks the pool again
#: this often: each time, the pool tries a new connection at once.
_RETRY_EVERY = 0.1


class PostgresStore:
    """A PostgreSQL database named by a libpq ``dsn``, through a pool of connections.

    ``min_size``/``max_size`` bound the pool of each app server. ``timeout`` (seconds)
    bounds how long a request waits for a connection: a free one from the pool, or a
    new one while the server is down, after which it raises
    :class:`~twostep.StoreError` with ``reason="unavailable"``. Each connection is
    checked (one round trip) when a request takes it from the pool: a dead one (a
    restarted server, a failover) is dropped and replaced at once, and the request
    goes on with another. New connections are made on demand, not retried in the
    background, so the first request after an outage finds the server as soon as it
    is back. Unless the DSN sets it, libpq's ``connect_timeout`` is ``timeout``
    rounded up (libpq waits 2 s at least) for a server that does not answer at all.

    Write transactions commit with ``synchronous_commit = on`` whatever the server's
    setting. Each transaction checks the schema version first: after a newer twostep
    migrated the database, it raises ``StoreError(reason="schema_changed")``. The
    schema is migrated forward on open unless ``migrate=False``, in which case an old
    schema is an error (run ``twostep migrate``). Several servers may open the same
    database at once: the migrations run under an advisory lock.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        migrate: bool = True,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            msg = "need 0 <= min_size <= max_size and max_size >= 1"
            raise ValueError(msg)
        if not timeout > 0:
            msg = "timeout must be a positive number of seconds"
            raise ValueError(msg)
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            msg = "not a valid PostgreSQL DSN"
            raise StoreError(msg) from None
        # What repr shows: where the database is, never a password.
        self._where = ", ".join(
            f"{k}={params[k]}" for k in ("host", "port", "dbname") if params.get(k) is not None
        )
        self._timeout = timeout
        self._max_size = max_size
        connect = {} if "connect_timeout" in params else {"connect_timeout": math.ceil(timeout)}
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            dsn,
            kwargs=connect,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            # Checked by _checkout, which drops a dead connection without the pool's
            # pause of a second or more before the next one.
            check=None,
            # A failed connection attempt is not retried in the background with growing
            # pauses (a request waiting for one would wait for the pause): requests ask
            # for new connections while they wait (see _checkout).
            reconnect_timeout=0.0,
            name="twostep",
        )
        try:
            self._pool.open(wait=False)
            version = self.schema_version()
            ensure_schema(version, migrate=migrate, apply=self.migrate)
        except BaseException:
            self._pool.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self._where})"

    def _checkout(self) -> Conn:
        """A pooled connection that answers, within ``timeout``, else ``"unavailable"``."""
        deadline = time.monotonic() + self._timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                msg = (
                    f"PostgreSQL: no connection within {self._timeout:g} s: the server "
                    f"cannot be reached, or all {self._max_size} connections stayed busy"
                )
                raise StoreError(msg, reason="unavailable")
            # A pool that may grow is asked again every _RETRY_EVERY: each time it
            # tries a new connection at once. A full pool is waited on in one go.
            full = self._pool.get_stats().get("pool_size", 0) >= self._max_size
            try:
                conn = self._pool.getconn(timeout=left if full else min(left, _RETRY_EVERY))
            except PoolTimeout:
                continue
            except psycopg.Error as error:  # e.g. the store was closed
                raise _store_error(error) from None
            try:
                ConnectionPool.check_connection(conn)
            except psycopg.Error:
                self._pool.putconn(conn)  # dead: the pool closes it and opens another now
                continue
            return conn

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        conn = self._checkout()
        try:
            yield conn
        except psycopg.Error as error:
            raise _store_error(error) from None
        finally:
            self._pool.putconn(conn)

    @staticmethod
    def _version(conn: Conn) -> int:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
        if exists is None or not exists[0]:
            return 0
        row = conn.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}").fetchone()
        return 0 if row is None else int(row[0])

    def schema_version(self) -> int:
        """The newest migration this database has had (0 for an empty one)."""
        with self._connection() as conn, conn.transaction():
            return self._version(conn)

    def migrate(self) -> int:
        """Apply the migrations this database lacks, in one transaction; returns the version.

        The advisory lock makes app servers that start together take turns: the
        first applies the migrations, the others then find nothing left to do.
        """
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_MIGRATIONS,))
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
                "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            current = self._version(conn)
            refuse_newer(current)  # another server may have migrated further meanwhile
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in POSTGRES.statements(statements):
                        conn.execute(statement.encode())
                    conn.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)", (version,))
        return SCHEMA_VERSION

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[_Tx]:
        """A unit of work on a pooled connection: READ COMMITTED to write, a snapshot to read."""
        with self._connection() as conn, conn.transaction():
            # Set explicitly: a server may default to another level. Writers lock what
            # they read (see the module doc); readers get one consistent snapshot.
            cursor = conn.execute(_BEGIN_WRITE if write else _BEGIN_READ)
            for _ in range(2 if write else 1):
                cursor.nextset()  # to the last statement's result: the schema version
            row = cursor.fetchone()
            version = 0 if row is None else int(row[0])
            if version != SCHEMA_VERSION:
                msg = (
                    f"the database schema changed to version {version} while this process "
                    f"ran with version {SCHEMA_VERSION}; nothing was written: restart the "
                    "application with the twostep release that migrated it"
                )
                raise StoreError(msg, reason="schema_changed")
            yield _Tx(conn, write=write)

    def close(self) -> None:
        """Close the pool and its connections."""
        self._pool.close()
