"""The embedded default store: SQLite from the standard library, in WAL mode.

A write transaction starts with ``BEGIN IMMEDIATE``, which takes the database's
write lock at once: two app-server processes that race to use the same code are
serialised, and the second sees what the first wrote (R4, R5). Reads
(``write=False``) take no write lock and run beside writers, as WAL allows.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

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
from ._migrations import MIGRATIONS, SCHEMA_VERSION, SQLITE, ensure_schema
from ._sealed import sqlite_sealed_key_ids
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

__all__ = ["SQLiteStore"]


def _placeholders(columns: str) -> str:
    return ", ".join("?" for _ in columns.split(","))


def _upsert(table: str, columns: str) -> str:
    # An upsert updates the row in place: INSERT OR REPLACE would delete and re-insert
    # it, and with foreign keys on, that visits every row that references it (an
    # account's users), making the cost grow with the account.
    names = [c.strip() for c in columns.split(",")]
    updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({_placeholders(columns)}) "
        f"ON CONFLICT ({names[0]}) DO UPDATE SET {updates}"
    )


# Built once: the hot path only binds values (sqlite3 caches the prepared statements).
_GET_ACCOUNT = f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?"
_PUT_ACCOUNT = _upsert("accounts", ACCOUNT_COLUMNS)
_GET_USER = f"SELECT {USER_COLUMNS} FROM users WHERE id = ?"
_FIND_USER = f"SELECT {USER_COLUMNS} FROM users WHERE email_key = ?"
_ADD_USER = f"INSERT INTO users ({USER_COLUMNS}) VALUES ({_placeholders(USER_COLUMNS)})"
_GET_CHALLENGE = f"SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE token_hash = ?"
_PUT_CHALLENGE = (
    f"INSERT OR REPLACE INTO challenges ({CHALLENGE_COLUMNS}) "
    f"VALUES ({_placeholders(CHALLENGE_COLUMNS)})"
)
_GET_SESSION = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?"
# A left join: a session whose user or account is gone still comes back, with NULLs.
_GET_SESSION_WITH_USER = (
    "SELECT {}, {}, {} FROM sessions AS s "
    "LEFT JOIN users AS u ON u.id = s.user_id "
    "LEFT JOIN accounts AS a ON a.id = s.account_id "
    "WHERE s.token_hash = ?"
).format(
    *(
        _sql.prefixed(p, c)
        for p, c in (("s", SESSION_COLUMNS), ("u", USER_COLUMNS), ("a", ACCOUNT_COLUMNS))
    )
)
_PUT_SESSION = (
    f"INSERT OR REPLACE INTO sessions ({SESSION_COLUMNS}) VALUES ({_placeholders(SESSION_COLUMNS)})"
)
_GET_DEVICE = f"SELECT {DEVICE_COLUMNS} FROM remembered_devices WHERE token_hash = ?"
_PUT_DEVICE = (
    f"INSERT OR REPLACE INTO remembered_devices ({DEVICE_COLUMNS}) "
    f"VALUES ({_placeholders(DEVICE_COLUMNS)})"
)
_GET_THROTTLE = f"SELECT {THROTTLE_COLUMNS} FROM throttles WHERE key = ?"
_PUT_THROTTLE = (
    f"INSERT OR REPLACE INTO throttles ({THROTTLE_COLUMNS}) "
    f"VALUES ({_placeholders(THROTTLE_COLUMNS)})"
)
# The id of an audit event counts its account's events: the write lock makes max + 1 safe.
# (A scalar subquery: SQLite answers it with one seek at the end of the account's range.)
_ADD_AUDIT = (
    f"INSERT INTO audit (id, {AUDIT_COLUMNS}) VALUES ("
    "coalesce((SELECT max(id) FROM audit WHERE account_id = ?2), 0) + 1, "
    f"{', '.join(f'?{i}' for i in range(1, len(AUDIT_COLUMNS.split(',')) + 1))})"
)
_NO_ACCOUNT = ""  # the audit key of events that belong to no account


_USER_NAMES = [c.strip() for c in USER_COLUMNS.split(",")]
#: Every column of a user but its id (column 0): what a user not read before is written.
_USER_FIELDS = tuple(range(1, len(_USER_NAMES)))


@functools.lru_cache(maxsize=64)
def _update_user(columns: tuple[int, ...]) -> str:
    """An UPDATE of only these columns (indexes into ``USER_COLUMNS``)."""
    return "UPDATE users SET {} WHERE id = ?".format(
        ", ".join(f"{_USER_NAMES[i]} = ?" for i in columns)
    )


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db.cursor()  # one cursor for the whole transaction: rows are read at once
        # Throttle keys (as stored: ``key.stored``) this transaction found without a
        # row and has not written since: nothing to read again, nothing to delete. The
        # text is at hand for the query anyway, and it hashes cheaper than a ThrottleKey.
        self._no_throttle: set[str] = set()
        # Users as read in this transaction (the write lock keeps them current), so
        # that put_user writes only the columns that changed: a login changes one, and
        # leaving the indexed columns alone keeps their index pages out of the commit.
        self._users: dict[str, tuple[Any, ...]] = {}

    def _user(self, row: tuple[Any, ...] | None) -> User | None:
        if row is None:
            return None
        self._users[row[0]] = row
        return _sql.user_of(row)

    def _one(self, sql: str, args: tuple[object, ...]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db.execute(sql, args).fetchone()
        return row

    def get_account(self, account_id: str) -> Account | None:
        row = self._one(_GET_ACCOUNT, (account_id,))
        return None if row is None else _sql.account_of(row)

    def put_account(self, account: Account) -> None:
        self._db.execute(_PUT_ACCOUNT, _sql.account_row(account))

    def get_user(self, user_id: str) -> User | None:
        return self._user(self._one(_GET_USER, (user_id,)))

    def find_user_by_email(self, email_key: str) -> User | None:
        return self._user(self._one(_FIND_USER, (email_key,)))

    def users_of(self, account_id: str) -> list[User]:
        rows = self._db.execute(
            f"SELECT {USER_COLUMNS} FROM users WHERE account_id = ? ORDER BY created_at, id",
            (account_id,),
        )
        return [_sql.user_of(r) for r in rows]

    def add_user(self, user: User) -> None:
        try:
            self._db.execute(_ADD_USER, _sql.user_row(user))
        except sqlite3.IntegrityError as error:
            if "email_key" in str(error):
                msg = "a user with this email already exists"
                raise EmailTaken(msg) from None
            raise

    def put_user(self, user: User) -> None:
        row = _sql.user_row(user)
        old = self._users.get(user.id)
        changed = (
            _USER_FIELDS if old is None else tuple(i for i in _USER_FIELDS if row[i] != old[i])
        )
        if changed:
            try:
                self._db.execute(_update_user(changed), (*(row[i] for i in changed), row[0]))
            except sqlite3.IntegrityError as error:  # a new email another user has (R88)
                if "email_key" in str(error):
                    msg = "a user with this email already exists"
                    raise EmailTaken(msg) from None
                raise
        self._users[user.id] = row

    def users_in(self, account_id: str, query: UserQuery) -> list[User]:
        # The index users_account (account_id, created_at) gives the order.
        filters, args = _sql.user_filters(query, "?")
        rows = self._db.execute(
            f"SELECT {USER_COLUMNS} FROM users WHERE account_id = ?{filters} "
            "ORDER BY created_at, id LIMIT ?",
            (account_id, *args, query.limit),
        )
        return [_sql.user_of(r) for r in rows]

    def delete_user(self, user_id: str) -> None:
        # Sessions and challenges have no index on user_id (every login would write its
        # pages): a deletion, now and then, scans them.
        self._db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        self._db.execute("DELETE FROM challenges WHERE user_id = ?", (user_id,))
        self.delete_devices_of(user_id)
        self._db.execute(
            "DELETE FROM throttles WHERE key = ?",
            (ThrottleKey(ThrottleScope.USER, user_id).stored,),
        )
        self._db.execute("DELETE FROM security_keys WHERE user_id = ?", (user_id,))
        self._db.execute("DELETE FROM users WHERE id = ?", (user_id,))
        self._users.pop(user_id, None)

    def users_page(self, after_id: str, limit: int) -> list[User]:
        rows = self._db.execute(
            f"SELECT {USER_COLUMNS} FROM users WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [_sql.user_of(r) for r in rows]

    def sealed_key_ids(self) -> dict[str, SealedKeyUse]:
        return sqlite_sealed_key_ids(self._db)

    def security_keys_of(self, user_id: str) -> list[SecurityKey]:
        # The unique index on (user_id, name) finds them.
        rows = self._db.execute(
            f"SELECT {KEY_COLUMNS} FROM security_keys WHERE user_id = ? ORDER BY created_at, id",
            (user_id,),
        )
        return [_sql.key_of(r) for r in rows]

    def find_security_key(self, credential_id: str) -> SecurityKey | None:
        row = self._one(
            f"SELECT {KEY_COLUMNS} FROM security_keys WHERE credential_id = ?", (credential_id,)
        )
        return None if row is None else _sql.key_of(row)

    def add_security_key(self, key: SecurityKey) -> None:
        self._db.execute(
            f"INSERT INTO security_keys ({KEY_COLUMNS}) VALUES ({_placeholders(KEY_COLUMNS)})",
            _sql.key_row(key),
        )

    def put_security_key(self, key: SecurityKey) -> None:
        row = _sql.key_row(key)
        self._db.execute(
            "UPDATE security_keys SET sign_count = ?, last_used_at = ? WHERE id = ?",
            (row[5], row[8], row[0]),
        )

    def delete_security_key(self, key_id: str) -> None:
        self._db.execute("DELETE FROM security_keys WHERE id = ?", (key_id,))

    def delete_security_keys_of(self, user_id: str) -> None:
        self._db.execute("DELETE FROM security_keys WHERE user_id = ?", (user_id,))

    def get_challenge(self, token_hash: str) -> LoginChallenge | None:
        row = self._one(_GET_CHALLENGE, (token_hash,))
        return None if row is None else _sql.challenge_of(row)

    def put_challenge(self, challenge: LoginChallenge) -> None:
        self._db.execute(_PUT_CHALLENGE, _sql.challenge_row(challenge))

    def delete_challenge(self, token_hash: str) -> None:
        self._db.execute("DELETE FROM challenges WHERE token_hash = ?", (token_hash,))

    def delete_challenges_of(self, user_id: str) -> None:
        # A scan (no index on user_id, see delete_user): rare, and the table is short-lived.
        self._db.execute("DELETE FROM challenges WHERE user_id = ?", (user_id,))

    def get_session(self, token_hash: str) -> SessionRecord | None:
        row = self._one(_GET_SESSION, (token_hash,))
        return None if row is None else _sql.session_of(row)

    def get_session_with_user(self, token_hash: str) -> SessionWithUser | None:
        row = self._one(_GET_SESSION_WITH_USER, (token_hash,))
        if row is None:
            return None
        user = _sql.user_part(row)
        if user is not None:
            self._users[user[0]] = user  # read: put_user writes only what changes
        return SessionWithUser._make(_sql.session_with_user_of(row))

    def put_session(self, session: SessionRecord) -> None:
        self._db.execute(_PUT_SESSION, _sql.session_row(session))

    def delete_session(self, token_hash: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    def get_device(self, token_hash: str) -> RememberedDevice | None:
        row = self._one(_GET_DEVICE, (token_hash,))
        return None if row is None else _sql.device_of(row)

    def put_device(self, device: RememberedDevice) -> None:
        self._db.execute(_PUT_DEVICE, _sql.device_row(device))

    def devices_of(self, user_id: str) -> list[RememberedDevice]:
        rows = self._db.execute(
            f"SELECT {DEVICE_COLUMNS} FROM remembered_devices WHERE user_id = ? "
            "ORDER BY created_at, id",
            (user_id,),
        ).fetchall()
        return [_sql.device_of(r) for r in rows]

    def delete_device(self, token_hash: str) -> None:
        self._db.execute("DELETE FROM remembered_devices WHERE token_hash = ?", (token_hash,))

    def delete_devices_of(self, user_id: str) -> None:
        self._db.execute("DELETE FROM remembered_devices WHERE user_id = ?", (user_id,))

    def get_throttle(self, key: ThrottleKey) -> ThrottleState | None:
        stored = key.stored
        if stored in self._no_throttle:
            # Found without a row earlier in this transaction, and not written since: a
            # code login reads its user's counter to gate the attempt, then to settle it.
            return None
        row = self._one(_GET_THROTTLE, (stored,))
        if row is None:
            self._no_throttle.add(stored)
            return None
        return _sql.throttle_of(key, row)

    def put_throttle(self, state: ThrottleState) -> None:
        row = _sql.throttle_row(state)
        self._no_throttle.discard(row[0])
        self._db.execute(_PUT_THROTTLE, row)

    def delete_throttle(self, key: ThrottleKey) -> None:
        # The write lock is held since the read: a key found without a row still has none.
        stored = key.stored
        if stored not in self._no_throttle:
            self._db.execute("DELETE FROM throttles WHERE key = ?", (stored,))

    def add_audit(self, event: AuditEvent) -> None:
        row = _sql.audit_row(event)
        if row[1] is None:
            row = (row[0], _NO_ACCOUNT, *row[2:])
        self._db.execute(_ADD_AUDIT, row)

    def repeat_audit(self, event: AuditEvent, since: datetime) -> bool:
        # R75: the write lock is held, so the event found is the one that is bumped.
        # INDEXED BY: left to itself, the planner walks the account's events newest first
        # (the primary key gives ORDER BY id) instead of the few throttled ones at hand.
        match, args = _sql.repeat_conditions(event, "?", since)
        account = _NO_ACCOUNT if event.account_id is None else event.account_id
        bumped = self._db.execute(
            "UPDATE audit SET repeats = repeats + 1 WHERE account_id = ? AND id = ("
            "SELECT id FROM audit INDEXED BY audit_throttled "
            f"WHERE account_id = ? AND {match} ORDER BY id DESC LIMIT 1)",
            (account, account, *args),
        )
        return bumped.rowcount > 0

    def audit_events(self, account_id: str, limit: int) -> list[AuditEvent]:
        rows = self._db.execute(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE account_id = ? ORDER BY id DESC LIMIT ?",
            (account_id, limit),
        )
        return [_sql.audit_of(r) for r in rows]

    def audit_page(self, account_id: str, query: AuditQuery) -> list[tuple[int, AuditEvent]]:
        # The position is the account's own audit id (see _ADD_AUDIT).
        filters, args = _sql.audit_filters(query, "?")
        rows = self._db.execute(
            f"SELECT id, {AUDIT_COLUMNS} FROM audit WHERE account_id = ?{filters} "
            "ORDER BY id DESC LIMIT ?",
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
        batch = _sql.purge_batch(
            self._one,
            lambda sql, args: self._db.execute(sql, args).rowcount,
            "?",
            now,
            throttles_before,
            audit_before=audit_before,
            anonymous_audit_before=anonymous_audit_before,
            limit=limit,
            resume=resume,
            audit_key="account_id, id",
            no_account=f"account_id = '{_NO_ACCOUNT}'",
        )
        if batch.removed:
            self._users.clear()  # rows read before may be stale: put_user writes them whole
        return batch


class _Transaction:
    """One transaction of a :class:`SQLiteStore` as a context manager.

    (A class rather than a generator: every request with a session pays for one.)
    """

    __slots__ = ("_db", "_store", "_write")

    def __init__(self, store: SQLiteStore, write: bool) -> None:
        self._store = store
        self._write = write

    def __enter__(self) -> _Tx:
        store = self._store
        db = self._db = store._connection()  # noqa: SLF001 (the store's own transaction)
        try:
            db.execute("BEGIN IMMEDIATE" if self._write else "BEGIN")
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as error:
            store._abandon(db)  # noqa: SLF001
            raise store_error(error, _ROLLED_BACK) from None
        if version != SCHEMA_VERSION:
            store._abandon(db)  # noqa: SLF001
            msg = (
                f"the database schema changed to version {version} while this process "
                f"ran with version {SCHEMA_VERSION}; nothing was written: restart the "
                "application with the twostep release that migrated it"
            )
            raise StoreError(msg, reason="schema_changed")
        return _Tx(db)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        db = self._db
        if error is not None:
            self._store._abandon(db)  # noqa: SLF001
            if isinstance(error, sqlite3.Error):
                raise store_error(error, _ROLLED_BACK) from None
            return
        try:
            db.execute("COMMIT")
        except sqlite3.Error as failed:
            # A commit that failed (a full disk, an I/O error) may leave the transaction
            # open: roll it back, so that nothing of it lands later.
            self._store._abandon(db)  # noqa: SLF001
            raise store_error(failed, _ROLLED_BACK) from None


#: SQLite's primary result codes, and what a StoreError says for each: (reason, words).
_FAULTS: dict[int, tuple[str, str]] = {
    sqlite3.SQLITE_FULL: ("full", "the database or its disk is full"),
    sqlite3.SQLITE_NOTADB: ("not_a_database", "the file is not a database"),
    sqlite3.SQLITE_CORRUPT: ("corrupt", "the database file is corrupt"),
    sqlite3.SQLITE_BUSY: ("locked", "the database stayed locked by another connection"),
    sqlite3.SQLITE_LOCKED: ("locked", "the database stayed locked by another connection"),
    sqlite3.SQLITE_IOERR: ("io", "disk I/O error"),
    sqlite3.SQLITE_CANTOPEN: ("cannot_open", "the database file cannot be opened"),
    sqlite3.SQLITE_PERM: ("cannot_open", "access to the database file is denied"),
    sqlite3.SQLITE_READONLY: ("read_only", "the database is read-only"),
}
_ROLLED_BACK = "; nothing was written"


def store_error(error: sqlite3.Error, context: str = "") -> StoreError:
    """``error`` as a :class:`StoreError` with a stable ``reason``, and never a row's values.

    The message names the fault and SQLite's error code (``SQLITE_FULL``...); only an
    unexpected error (``reason="store"``) repeats SQLite's own text, which names
    tables and columns but holds no bound value. ``context`` is added at the end.
    """
    code = getattr(error, "sqlite_errorcode", None)
    name = getattr(error, "sqlite_errorname", None) or type(error).__name__
    known = _FAULTS.get(code & 0xFF) if code is not None else None
    if known is None:
        return StoreError(f"SQLite: {type(error).__name__} ({name}): {error}{context}")
    reason, words = known
    return StoreError(f"SQLite: {words} ({name}){context}", reason=reason)


def _create_private(path: str) -> None:
    """Create a new database file readable by its owner only (0600, whatever the umask).

    SQLite creates the ``-wal`` and ``-shm`` files with the mode of the database file,
    so they are private too. An existing file keeps the mode its operator gave it.
    """
    if path in {"", ":memory:"}:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        msg = f"SQLite: cannot create the database file {path}: {error.strerror}"
        raise StoreError(msg, reason="cannot_open") from None
    try:
        if hasattr(os, "fchmod"):  # the umask can only have narrowed it: be exact
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class SQLiteStore:
    """A SQLite database file (or ``":memory:"`` for one connection's lifetime).

    Each thread gets its own connection. ``synchronous`` is SQLite's setting. The
    default, ``"FULL"``, syncs the write-ahead log to disk at every commit: a commit
    survives a loss of power or an operating-system crash, so a backup code used, an
    OTP step accepted or a session revoked cannot come back. ``"NORMAL"`` skips that
    sync (a commit then survives a crash of the application, not of the machine: the
    last commits before a power loss may be lost, and with them a used backup code or
    a revocation) for a cheaper commit; docs/performance.md measures the difference.
    ``checkpoint_pages`` is the WAL size (in 4 KiB pages) at which a commit copies the
    WAL back into the database file. SQLite's default, 1,000 pages, makes the logins
    that hit a checkpoint pay for copying pages that later commits would write again;
    10,000 pages (a WAL of up to about 40 MB) copies each hot page (the newest audit
    and session pages, a busy user's row) once per 10,000 pages written, not ten times.
    The schema is created or migrated forward on open unless ``migrate=False``.

    A new database file is created with mode 0600, and SQLite gives its ``-wal`` and
    ``-shm`` files the same mode. Every failure of SQLite is a
    :class:`~twostep.StoreError` whose ``reason`` says which (``"full"``, ``"io"``,
    ``"locked"``, ``"not_a_database"``, ``"corrupt"``, ``"cannot_open"``,
    ``"read_only"``, else ``"store"``), after the transaction was rolled back. Each
    transaction first checks that the schema is still the version this code knows:
    after a newer twostep migrated the database, it raises ``reason="schema_changed"``
    and touches nothing.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 10.0,
        migrate: bool = True,
        checkpoint_pages: int = 10_000,
    ) -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            msg = "synchronous must be OFF, NORMAL, FULL or EXTRA"
            raise ValueError(msg)
        if isinstance(checkpoint_pages, bool) or not isinstance(checkpoint_pages, int):
            msg = "checkpoint_pages must be an int"
            raise TypeError(msg)
        if checkpoint_pages < 1:
            msg = "checkpoint_pages must be at least 1"
            raise ValueError(msg)
        self._checkpoint_pages = checkpoint_pages
        self.path = str(path)
        self._synchronous = synchronous.upper()
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        try:
            _create_private(self.path)
            version = self.schema_version()
            ensure_schema(version, migrate=migrate, apply=self.migrate)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout,
                    isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                    check_same_thread=False,
                    cached_statements=256,
                )
            except sqlite3.Error as error:
                raise store_error(error, f": {self.path}") from None
            try:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute(f"PRAGMA synchronous = {self._synchronous}")
                db.execute(f"PRAGMA wal_autocheckpoint = {self._checkpoint_pages}")
                db.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as error:
                db.close()
                raise store_error(error, f": {self.path}") from None
            self._local.db = db
            with self._all_lock:
                self._all.append(db)
        return db

    def _abandon(self, db: sqlite3.Connection) -> None:
        """Roll back ``db``'s transaction, if SQLite has not already; else drop ``db``.

        After some errors (a full disk, an I/O error) SQLite has rolled the transaction
        back itself. A connection that cannot roll back is closed, which rolls back,
        and this thread gets a new one at its next transaction.
        """
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error:
            with self._all_lock:
                if db in self._all:
                    self._all.remove(db)
            if getattr(self._local, "db", None) is db:
                del self._local.db
            with suppress(sqlite3.Error):  # closing rolls back; the connection is gone
                db.close()

    def schema_version(self) -> int:
        """The newest migration this database has had (0 for an empty one)."""
        db = self._connection()
        try:
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as error:
            raise store_error(error, f": {self.path}") from None
        return version

    def migrate(self) -> int:
        """Apply the migrations this database lacks, all in one transaction."""
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            current = db.execute("PRAGMA user_version").fetchone()[0]
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in SQLITE.statements(statements):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {int(version)}")
            db.execute("COMMIT")
        except sqlite3.Error as error:
            self._abandon(db)
            raise store_error(error, "; the migration was rolled back") from None
        except BaseException:
            self._abandon(db)
            raise
        return SCHEMA_VERSION

    def transaction(self, *, write: bool = True) -> _Transaction:
        """A unit of work on this thread's connection; writers take the write lock at once.

        It starts by reading the schema version (``PRAGMA user_version``, in the page
        the transaction reads anyway): a database that another twostep migrated since
        this store was opened is refused before anything is read or written.
        """
        return _Transaction(self, write)

    def close(self) -> None:
        """Close the connections of every thread."""
        with self._all_lock:
            for db in self._all:
                with suppress(sqlite3.Error):  # closed either way
                    db.close()
            self._all.clear()
        self._local = threading.local()
