"""The SQL stores' schema: versioned, forward-only migrations and the version check.

A released migration is never edited: its SQL is what databases of that version
were made with, and tests/test_sqlite.py pins every statement. A change of the
schema is the next migration, and the stores' row mapping (``_sql``) follows it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._errors import StoreError

__all__ = [
    "MIGRATIONS",
    "POSTGRES",
    "SCHEMA_VERSION",
    "SQLITE",
    "Dialect",
    "Only",
    "Statement",
    "ensure_schema",
    "refuse_newer",
]


class Dialect:
    """The few type names on which SQLite and PostgreSQL differ."""

    def __init__(self, name: str, *, blob: str, bigint: str, serial: str) -> None:
        self.name = name
        self.types = {"blob": blob, "bigint": bigint, "serial": serial}

    def render(self, sql: str) -> str:
        return sql.format(**self.types)

    def statements(self, migration: Sequence[Statement]) -> list[str]:
        """The statements of a migration that apply to this dialect, rendered."""
        return [
            self.render(s if isinstance(s, str) else s.sql)
            for s in migration
            if isinstance(s, str) or s.dialect == self.name
        ]


class Only:
    """A statement for one dialect only (e.g. a SQLite storage layout)."""

    def __init__(self, dialect: str, sql: str) -> None:
        self.dialect = dialect
        self.sql = sql


Statement = str | Only

SQLITE = Dialect(
    "sqlite", blob="BLOB", bigint="INTEGER", serial="INTEGER PRIMARY KEY AUTOINCREMENT"
)
POSTGRES = Dialect("postgres", blob="BYTEA", bigint="BIGINT", serial="BIGSERIAL PRIMARY KEY")


def _sqlite_rebuild(
    table: str, columns: str, create: str, *indexes: str, select: str | None = None
) -> list[Only]:
    """SQLite cannot change a table's layout in place: copy it into a new one.

    ``create`` is the new table's ``CREATE TABLE`` statement, naming it ``<table>_new``;
    ``select`` the old table's values for ``columns`` (by default the same columns).
    """
    return [
        Only("sqlite", create),
        Only(
            "sqlite",
            f"INSERT INTO {table}_new ({columns}) SELECT {select or columns} FROM {table}",
        ),
        Only("sqlite", f"DROP TABLE {table}"),
        Only("sqlite", f"ALTER TABLE {table}_new RENAME TO {table}"),
        *(Only("sqlite", index) for index in indexes),
    ]


# The columns as migration 2 copies them (as ``_sql``'s lists were when it was released):
# frozen here, so that a later column of a table cannot change a released migration.
_V2_CHALLENGE_COLUMNS = "token_hash, user_id, kind, created_at, expires_at, attempts"
_V2_SESSION_COLUMNS = (
    "token_hash, user_id, account_id, issued_at, expires_at, account_generation, user_generation"
)
_V2_THROTTLE_COLUMNS = "key, failures, blocked_until, last_failure_at"
_V2_AUDIT_COLUMNS = "at, account_id, actor, actor_id, action, target_id, outcome, reason"

#: Forward-only: a migration is never edited once released; add the next one instead.
MIGRATIONS: Sequence[tuple[int, Sequence[Statement]]] = (
    (
        1,
        (
            """CREATE TABLE accounts (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                created_at {bigint} NOT NULL,
                two_factor_required INTEGER NOT NULL,
                session_generation {bigint} NOT NULL
            )""",
            """CREATE TABLE users (
                id TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                email TEXT NOT NULL,
                email_key TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                created_at {bigint} NOT NULL,
                active INTEGER NOT NULL,
                totp_secret TEXT,
                last_step {bigint},
                enabled_at {bigint},
                pending_secret TEXT,
                pending_expires_at {bigint},
                backup_salt {blob},
                backup_digests {blob},
                backup_used TEXT,
                session_generation {bigint} NOT NULL
            )""",
            "CREATE INDEX users_account ON users (account_id, created_at)",
            """CREATE TABLE challenges (
                token_hash TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                created_at {bigint} NOT NULL,
                expires_at {bigint} NOT NULL,
                attempts INTEGER NOT NULL
            )""",
            "CREATE INDEX challenges_expiry ON challenges (expires_at)",
            """CREATE TABLE sessions (
                token_hash TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                account_id TEXT NOT NULL,
                issued_at {bigint} NOT NULL,
                expires_at {bigint} NOT NULL,
                account_generation {bigint} NOT NULL,
                user_generation {bigint} NOT NULL
            )""",
            "CREATE INDEX sessions_expiry ON sessions (expires_at)",
            """CREATE TABLE throttles (
                key TEXT PRIMARY KEY,
                failures INTEGER NOT NULL,
                blocked_until {bigint},
                last_failure_at {bigint} NOT NULL
            )""",
            """CREATE TABLE audit (
                id {serial},
                at {bigint} NOT NULL,
                account_id TEXT,
                actor TEXT NOT NULL,
                actor_id TEXT,
                action TEXT NOT NULL,
                target_id TEXT,
                outcome TEXT NOT NULL,
                reason TEXT
            )""",
            "CREATE INDEX audit_account ON audit (account_id, id)",
        ),
    ),
    (
        # SQLite: fewer pages written per login. The tables found by a text key keep
        # their rows in that key's b-tree (WITHOUT ROWID) instead of a rowid table plus
        # an index; challenges (minutes-lived, few) lose their expiry index. The audit
        # trail, read per account, is kept in one b-tree ordered by (account, id),
        # where id counts each account's events (events of no account: ''); it no
        # longer has a global rowid, an index, nor sqlite_sequence to update on every
        # insert. PostgreSQL is unchanged.
        2,
        (
            *_sqlite_rebuild(
                "challenges",
                _V2_CHALLENGE_COLUMNS,
                """CREATE TABLE challenges_new (
                    token_hash TEXT PRIMARY KEY,
                    user_id TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    attempts INTEGER NOT NULL
                ) WITHOUT ROWID""",
            ),
            *_sqlite_rebuild(
                "sessions",
                _V2_SESSION_COLUMNS,
                """CREATE TABLE sessions_new (
                    token_hash TEXT PRIMARY KEY,
                    user_id TEXT NOT NULL,
                    account_id TEXT NOT NULL,
                    issued_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL,
                    account_generation INTEGER NOT NULL,
                    user_generation INTEGER NOT NULL
                ) WITHOUT ROWID""",
                "CREATE INDEX sessions_expiry ON sessions (expires_at)",
            ),
            *_sqlite_rebuild(
                "throttles",
                _V2_THROTTLE_COLUMNS,
                """CREATE TABLE throttles_new (
                    key TEXT PRIMARY KEY,
                    failures INTEGER NOT NULL,
                    blocked_until INTEGER,
                    last_failure_at INTEGER NOT NULL
                ) WITHOUT ROWID""",
            ),
            *_sqlite_rebuild(
                "audit",
                "id, " + _V2_AUDIT_COLUMNS,
                """CREATE TABLE audit_new (
                    account_id TEXT NOT NULL,
                    id INTEGER NOT NULL,
                    at INTEGER NOT NULL,
                    actor TEXT NOT NULL,
                    actor_id TEXT,
                    action TEXT NOT NULL,
                    target_id TEXT,
                    outcome TEXT NOT NULL,
                    reason TEXT,
                    PRIMARY KEY (account_id, id)
                ) WITHOUT ROWID""",
                select="id, " + _V2_AUDIT_COLUMNS.replace("account_id", "coalesce(account_id, '')"),
            ),
            # Both: purge_expired finds expired enrolments without reading every user. Only
            # users with a pending enrolment are in it: it stays small, and writing a user
            # without one (most logins) leaves it alone.
            # Throttles get no index on last_failure_at: every failed attempt (and every
            # password login, counted in advance) would write one more page, while the
            # purge's scan of the table (about 0.1 s per million rows on SQLite) runs
            # only now and then.
            (
                "CREATE INDEX users_pending_expiry ON users (pending_expires_at) "
                "WHERE pending_expires_at IS NOT NULL"
            ),
        ),
    ),
    (
        # Both dialects, columns added in place (every row keeps its values; SQLite and
        # PostgreSQL 11+ write no row for a column with a constant default).
        # Throttles: the attempts admitted and not yet settled under a key, and when the
        # latest was admitted (R6, ThrottleState.in_flight / in_flight_at).
        # Audit: how many attempts an event stands for, since throttled attempts that
        # repeat are counted on one event (R75). The index holds only throttled events
        # (a login that is not throttled writes no page of it): it finds the recent
        # event of an actor that a throttled attempt counts on. The filters of the trail
        # (R76) get no index: every login would pay for one in pages written, for a read
        # that scans one account's events, now and then; likewise the purge of old
        # events (R77) scans the table.
        3,
        (
            "ALTER TABLE throttles ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE throttles ADD COLUMN in_flight_at {bigint}",
            "ALTER TABLE audit ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1",
            (
                "CREATE INDEX audit_throttled ON audit (account_id, actor_id, at) "
                "WHERE outcome = 'throttled'"
            ),
        ),
    ),
    (
        # Both dialects, columns added in place.
        # Accounts: whom the requirement covers, its grace period (in microseconds) and
        # since when it covers owners and managers, and members; and the generation that
        # ends the members' sessions alone (R95, R96).
        # Sessions: the members' generation they were issued under, and when a second
        # factor was last passed in them (R96, R99).
        # Remembered devices (R98): found by their token's hash; listed per user.
        4,
        (
            "ALTER TABLE accounts ADD COLUMN required_of TEXT NOT NULL DEFAULT 'everyone'",
            "ALTER TABLE accounts ADD COLUMN grace_period {bigint}",
            "ALTER TABLE accounts ADD COLUMN required_since {bigint}",
            "ALTER TABLE accounts ADD COLUMN members_required_since {bigint}",
            "ALTER TABLE accounts ADD COLUMN members_generation {bigint} NOT NULL DEFAULT 0",
            "ALTER TABLE sessions ADD COLUMN members_generation {bigint} NOT NULL DEFAULT 0",
            "ALTER TABLE sessions ADD COLUMN second_factor_at {bigint}",
            # Members now answer to members_generation alone: it starts where the one
            # generation was, so that a session revoked before stays revoked.
            "UPDATE accounts SET members_generation = session_generation",
            "UPDATE sessions SET members_generation = account_generation",
            """CREATE TABLE remembered_devices (
                token_hash TEXT PRIMARY KEY,
                id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                label TEXT NOT NULL,
                created_at {bigint} NOT NULL,
                expires_at {bigint} NOT NULL,
                last_used_at {bigint},
                account_generation {bigint} NOT NULL,
                members_generation {bigint} NOT NULL,
                user_generation {bigint} NOT NULL
            )""",
            "CREATE INDEX remembered_devices_user ON remembered_devices (user_id, created_at)",
            "CREATE INDEX remembered_devices_expiry ON remembered_devices (expires_at)",
        ),
    ),
    (
        # Security keys (WebAuthn) as a second factor (R100-R109). Found by twostep's id
        # (removal), by the credential id an assertion names (unique across the
        # installation), and by user (listing; a user's names are unique). The user row
        # counts its keys, so that checking a session needs no other read (R102).
        5,
        (
            "ALTER TABLE users ADD COLUMN security_keys INTEGER NOT NULL DEFAULT 0",
            """CREATE TABLE security_keys (
                id TEXT PRIMARY KEY,
                credential_id TEXT NOT NULL UNIQUE,
                user_id TEXT NOT NULL REFERENCES users(id),
                name TEXT NOT NULL,
                public_key {blob} NOT NULL,
                sign_count {bigint} NOT NULL,
                transports TEXT NOT NULL,
                created_at {bigint} NOT NULL,
                last_used_at {bigint},
                UNIQUE (user_id, name)
            )""",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def refuse_newer(version: int) -> None:
    """Refuse a database whose schema is newer than this code knows."""
    if version > SCHEMA_VERSION:
        msg = (
            f"the database has schema version {version}, newer than this twostep "
            f"knows ({SCHEMA_VERSION}): upgrade twostep"
        )
        raise StoreError(msg)


def ensure_schema(version: int, *, migrate: bool, apply: Callable[[], object]) -> None:
    """Refuse a newer schema than this code knows; bring an older one forward or refuse."""
    refuse_newer(version)
    if version < SCHEMA_VERSION:
        if not migrate:
            msg = f"the database has schema version {version}; run `twostep migrate`"
            raise StoreError(msg)
        apply()
