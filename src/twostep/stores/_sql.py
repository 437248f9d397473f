"""What the SQL stores share: their column lists, row mapping and the purge.

The schema these columns live in, and its migrations, are in ``_migrations``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from .._audit import AuditEvent, Outcome
from .._audit_pages import AuditQuery
from .._domain import (
    Account,
    BackupCodeSet,
    ChallengeKind,
    LoginChallenge,
    RememberedDevice,
    RequiredOf,
    Role,
    SecurityKey,
    SessionRecord,
    ThrottleKey,
    ThrottleState,
    TwoFactorState,
    User,
)
from .._store import PurgeBatch

if TYPE_CHECKING:
    from .._user_pages import UserQuery  # which imports this module

__all__ = [
    "ACCOUNT_COLUMNS",
    "AUDIT_COLUMNS",
    "CHALLENGE_COLUMNS",
    "DEVICE_COLUMNS",
    "KEY_COLUMNS",
    "SESSION_COLUMNS",
    "THROTTLE_COLUMNS",
    "USER_COLUMNS",
    "account_of",
    "account_row",
    "audit_filters",
    "audit_of",
    "audit_row",
    "challenge_of",
    "challenge_row",
    "device_of",
    "device_row",
    "from_us",
    "key_of",
    "key_row",
    "opt_dt",
    "opt_us",
    "prefixed",
    "purge_batch",
    "repeat_conditions",
    "session_of",
    "session_row",
    "session_with_user_of",
    "user_part",
    "throttle_of",
    "throttle_row",
    "to_us",
    "user_filters",
    "user_of",
    "user_row",
]

#: The columns of each table, in the order of its row tuples (``*_row``, ``*_of``).
ACCOUNT_COLUMNS = (
    "id, name, created_at, two_factor_required, session_generation, required_of, "
    "grace_period, required_since, members_required_since, members_generation"
)
USER_COLUMNS = (
    "id, account_id, email, email_key, role, password_hash, created_at, active, "
    "totp_secret, last_step, enabled_at, pending_secret, pending_expires_at, "
    "backup_salt, backup_digests, backup_used, session_generation, security_keys"
)
KEY_COLUMNS = (
    "id, credential_id, user_id, name, public_key, sign_count, transports, created_at, last_used_at"
)
CHALLENGE_COLUMNS = "token_hash, user_id, kind, created_at, expires_at, attempts"
SESSION_COLUMNS = (
    "token_hash, user_id, account_id, issued_at, expires_at, account_generation, user_generation, "
    "members_generation, second_factor_at"
)
DEVICE_COLUMNS = (
    "token_hash, id, user_id, label, created_at, expires_at, last_used_at, "
    "account_generation, members_generation, user_generation"
)
THROTTLE_COLUMNS = "key, failures, blocked_until, last_failure_at, in_flight, in_flight_at"
AUDIT_COLUMNS = "at, account_id, actor, actor_id, action, target_id, outcome, reason, repeats"

_SESSION_WIDTH = len(SESSION_COLUMNS.split(","))
_USER_END = _SESSION_WIDTH + len(USER_COLUMNS.split(","))


def prefixed(alias: str, columns: str) -> str:
    """A column list with each column named through a table alias: ``s.token_hash, ...``."""
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


@functools.lru_cache(maxsize=4096)
def session_with_user_of(row: tuple[Any, ...]) -> tuple[SessionRecord, User | None, Account | None]:
    """A session row joined with its user's and its account's, as values.

    The user's and the account's columns are all ``NULL`` when the joined row is
    missing. Every request of a session reads the same row again until something in it
    changes, and the values are immutable: each distinct row is decoded once (for the
    last 4,096 rows), and the store is still read every time.
    """
    session, user, account = row[:_SESSION_WIDTH], row[_SESSION_WIDTH:_USER_END], row[_USER_END:]
    return (
        session_of(session),
        None if user[0] is None else user_of(user),
        None if account[0] is None else account_of(account),
    )


def user_part(row: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The user's columns of a joined session row (``None`` if the user is gone)."""
    user = row[_SESSION_WIDTH:_USER_END]
    return None if user[0] is None else user


class _Stage(NamedTuple):
    """A table a purge goes through: its key, what it does to a row, and to which."""

    table: str
    key: str
    change: str
    condition: str
    args: tuple[Any, ...]


def purge_batch(
    query: Callable[[str, tuple[Any, ...]], tuple[Any, ...] | None],
    execute: Callable[[str, tuple[Any, ...]], int],
    mark: str,
    now: datetime,
    throttles_before: datetime,
    *,
    audit_before: datetime | None,
    anonymous_audit_before: datetime | None,
    limit: int,
    resume: tuple[Any, ...] | None,
    audit_key: str,
    no_account: str,
) -> PurgeBatch:
    """One batch of ``purge_expired`` (R130), for a driver whose placeholder is ``mark``.

    ``query`` runs a statement and returns its first row, ``execute`` one and returns
    its row count. A batch takes the next ``limit`` keys of one table (a range of its
    primary key, so it looks at no more rows than that) and changes the expired rows
    in that range. ``resume`` is ``(stage, last key)``. ``audit_key`` is the audit
    table's primary key; ``no_account`` the condition of events of no account (R77).
    """
    at = to_us(now)
    stages = [
        _Stage(
            "challenges", "token_hash", "DELETE FROM challenges", f"expires_at <= {mark}", (at,)
        ),
        _Stage("sessions", "token_hash", "DELETE FROM sessions", f"expires_at <= {mark}", (at,)),
        _Stage(
            "remembered_devices",
            "token_hash",
            "DELETE FROM remembered_devices",
            f"expires_at <= {mark}",
            (at,),
        ),
        _Stage(
            "throttles",
            "key",
            "DELETE FROM throttles",
            f"last_failure_at < {mark} AND (blocked_until IS NULL OR blocked_until <= {mark})",
            (to_us(throttles_before), at),
        ),
        _Stage(
            "users",
            "id",
            "UPDATE users SET pending_secret = NULL, pending_expires_at = NULL",
            f"pending_expires_at <= {mark}",
            (at,),
        ),
    ]
    expired: list[str] = []
    args: list[Any] = []
    if audit_before is not None:
        expired.append(f"at < {mark}")
        args.append(to_us(audit_before))
    if anonymous_audit_before is not None:
        expired.append(f"({no_account} AND at < {mark})")
        args.append(to_us(anonymous_audit_before))
    if expired:
        stages.append(
            _Stage("audit", audit_key, "DELETE FROM audit", " OR ".join(expired), tuple(args))
        )
    stage, after = resume if resume is not None else (0, None)
    table, key, change, condition, condition_args = stages[stage]
    marks = ", ".join(mark for _ in key.split(","))
    lower, lower_args = ("", ()) if after is None else (f"({key}) > ({marks})", tuple(after))
    last = query(
        f"SELECT {key} FROM {table}{' WHERE ' + lower if lower else ''} "
        f"ORDER BY {key} LIMIT 1 OFFSET {mark}",
        (*lower_args, limit - 1),
    )
    ranges = [lower] if lower else []
    if last is not None:
        ranges.append(f"({key}) <= ({marks})")
    removed = execute(
        f"{change} WHERE {' AND '.join([*ranges, f'({condition})'])}",
        (*lower_args, *(last or ()), *condition_args),
    )
    if last is not None:
        return PurgeBatch(removed, (stage, tuple(last)))
    return PurgeBatch(removed, (stage + 1, None) if stage + 1 < len(stages) else None)


DIGEST = 32  # bytes of one backup-code digest


def to_us(at: datetime) -> int:
    """A datetime as whole microseconds since the epoch (exact, and it sorts)."""
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)  # exact: timedelta holds whole microseconds


def opt_us(at: datetime | None) -> int | None:
    return None if at is None else to_us(at)


def opt_dt(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Enum members by value: a dict lookup is several times cheaper than calling the enum.
_ROLES = {role.value: role for role in Role}
_KINDS = {kind.value: kind for kind in ChallengeKind}


def account_row(a: Account) -> tuple[Any, ...]:
    return (
        a.id,
        a.name,
        to_us(a.created_at),
        int(a.two_factor_required),
        a.session_generation,
        a.required_of.value,
        None if a.grace_period is None else a.grace_period // _MICROSECOND,
        opt_us(a.required_since),
        opt_us(a.members_required_since),
        a.members_generation,
    )


def account_of(r: Sequence[Any]) -> Account:
    return Account(
        id=r[0],
        name=r[1],
        created_at=from_us(r[2]),
        two_factor_required=bool(r[3]),
        session_generation=r[4],
        required_of=RequiredOf(r[5]),
        grace_period=None if r[6] is None else timedelta(microseconds=r[6]),
        required_since=opt_dt(r[7]),
        members_required_since=opt_dt(r[8]),
        members_generation=r[9],
    )


def user_row(u: User) -> tuple[Any, ...]:
    t, codes = u.two_factor, u.backup_codes
    return (
        u.id,
        u.account_id,
        u.email,
        u.email_key,
        u.role.value,
        u.password_hash,
        to_us(u.created_at),
        int(u.active),
        t.secret,
        t.last_step,
        opt_us(t.enabled_at),
        t.pending_secret,
        opt_us(t.pending_expires_at),
        None if codes is None else codes.salt,
        None if codes is None else b"".join(codes.digests),
        None if codes is None else "".join("1" if used else "0" for used in codes.used),
        u.session_generation,
        u.security_keys,
    )


def user_of(r: Sequence[Any]) -> User:
    # Positional, in the fields' order: every login and every session check reads a user.
    codes = None
    if r[13] is not None:
        blob = bytes(r[14])
        codes = BackupCodeSet(
            bytes(r[13]),
            tuple(map(blob.__getitem__, _DIGEST_SLICES[len(blob) // DIGEST])),
            tuple(map("1".__eq__, r[15])),
        )
    enabled_at, pending_expires_at = r[10], r[12]
    return User(
        r[0],
        r[1],
        r[2],
        _ROLES[r[4]],
        r[5],
        from_us(r[6]),
        bool(r[7]),
        TwoFactorState(
            r[8],
            r[9],
            None if enabled_at is None else from_us(enabled_at),
            r[11],
            None if pending_expires_at is None else from_us(pending_expires_at),
        ),
        codes,
        r[16],
        r[17],
    )


def key_row(k: SecurityKey) -> tuple[Any, ...]:
    return (
        k.id,
        k.credential_id,
        k.user_id,
        k.name,
        k.public_key,
        k.sign_count,
        " ".join(k.transports),
        to_us(k.created_at),
        opt_us(k.last_used_at),
    )


def key_of(r: Sequence[Any]) -> SecurityKey:
    return SecurityKey(
        id=r[0],
        credential_id=r[1],
        user_id=r[2],
        name=r[3],
        public_key=bytes(r[4]),
        sign_count=r[5],
        transports=tuple(r[6].split()),
        created_at=from_us(r[7]),
        last_used_at=opt_dt(r[8]),
    )


class _Slices(dict[int, tuple[slice, ...]]):
    """The slices that cut a blob of ``n`` digests, made once per ``n``."""

    def __missing__(self, n: int) -> tuple[slice, ...]:
        cuts = self[n] = tuple(slice(i * DIGEST, (i + 1) * DIGEST) for i in range(n))
        return cuts


_DIGEST_SLICES = _Slices()


def challenge_row(c: LoginChallenge) -> tuple[Any, ...]:
    return (
        c.token_hash,
        c.user_id,
        c.kind.value,
        to_us(c.created_at),
        to_us(c.expires_at),
        c.attempts,
    )


def challenge_of(r: Sequence[Any]) -> LoginChallenge:
    return LoginChallenge(
        token_hash=r[0],
        user_id=r[1],
        kind=_KINDS[r[2]],
        created_at=from_us(r[3]),
        expires_at=from_us(r[4]),
        attempts=r[5],
    )


def session_row(s: SessionRecord) -> tuple[Any, ...]:
    return (
        s.token_hash,
        s.user_id,
        s.account_id,
        to_us(s.issued_at),
        to_us(s.expires_at),
        s.account_generation,
        s.user_generation,
        s.members_generation,
        opt_us(s.second_factor_at),
    )


def session_of(r: Sequence[Any]) -> SessionRecord:
    return SessionRecord(
        r[0], r[1], r[2], from_us(r[3]), from_us(r[4]), r[5], r[6], r[7], opt_dt(r[8])
    )


def device_row(d: RememberedDevice) -> tuple[Any, ...]:
    return (
        d.token_hash,
        d.id,
        d.user_id,
        d.label,
        to_us(d.created_at),
        to_us(d.expires_at),
        opt_us(d.last_used_at),
        d.account_generation,
        d.members_generation,
        d.user_generation,
    )


def device_of(r: Sequence[Any]) -> RememberedDevice:
    return RememberedDevice(
        token_hash=r[0],
        id=r[1],
        user_id=r[2],
        label=r[3],
        created_at=from_us(r[4]),
        expires_at=from_us(r[5]),
        last_used_at=opt_dt(r[6]),
        account_generation=r[7],
        members_generation=r[8],
        user_generation=r[9],
    )


def throttle_row(t: ThrottleState) -> tuple[Any, ...]:
    """The row of a counter: its key is stored as ``key.stored``, e.g. ``"user:u1"``."""
    return (
        t.key.stored,
        t.failures,
        opt_us(t.blocked_until),
        to_us(t.last_failure_at),
        t.in_flight,
        opt_us(t.in_flight_at),
    )


def throttle_of(key: ThrottleKey, r: Sequence[Any]) -> ThrottleState:
    """The counter read under ``key`` (a ``THROTTLE_COLUMNS`` row found by ``key.stored``).

    The state gets the key that was asked for: the stored text is never parsed back.
    """
    return ThrottleState(
        key=key,
        failures=r[1],
        blocked_until=opt_dt(r[2]),
        last_failure_at=from_us(r[3]),
        in_flight=r[4],
        in_flight_at=opt_dt(r[5]),
    )


def audit_row(e: AuditEvent) -> tuple[Any, ...]:
    return (
        to_us(e.at),
        e.account_id,
        e.actor,
        e.actor_id,
        e.action,
        e.target_id,
        e.outcome.value,
        e.reason,
        e.repeats,
    )


def audit_of(r: Sequence[Any]) -> AuditEvent:
    return AuditEvent(
        at=from_us(r[0]),
        account_id=r[1],
        actor=r[2],
        actor_id=r[3],
        action=r[4],
        target_id=r[5],
        outcome=Outcome(r[6]),
        reason=r[7],
        repeats=r[8],
    )


def audit_filters(query: AuditQuery, mark: str) -> tuple[str, tuple[Any, ...]]:
    """The conditions of a page of the trail beyond its account (R76), and their values.

    Each starts with `` AND ``, to follow ``account_id = ...``; positions are the ``id``
    column.
    """
    conditions: list[str] = []
    args: list[Any] = []
    if query.before is not None:
        conditions.append(f"id < {mark}")
        args.append(query.before)
    if query.action is not None:
        conditions.append(f"action = {mark}")
        args.append(query.action)
    if query.user_id is not None:
        conditions.append(f"(actor_id = {mark} OR target_id = {mark})")
        args += [query.user_id, query.user_id]
    if query.outcome is not None:
        conditions.append(f"outcome = {mark}")
        args.append(query.outcome)
    if query.since is not None:
        conditions.append(f"at >= {mark}")
        args.append(to_us(query.since))
    if query.until is not None:
        conditions.append(f"at < {mark}")
        args.append(to_us(query.until))
    return "".join(f" AND {c}" for c in conditions), tuple(args)


def user_filters(query: UserQuery, mark: str) -> tuple[str, tuple[Any, ...]]:
    """The conditions of a page of users beyond its account (R83), and their values.

    Each starts with `` AND ``, to follow ``account_id = ...``. 2FA is on when a
    confirmed secret is stored or the user has a security key (``User.has_second_factor``).
    """
    conditions: list[str] = []
    args: list[Any] = []
    if query.after is not None:
        at, user_id = query.after
        conditions.append(f"(created_at > {mark} OR (created_at = {mark} AND id > {mark}))")
        args += [to_us(at), to_us(at), user_id]
    if query.role is not None:
        conditions.append(f"role = {mark}")
        args.append(query.role)
    if query.two_factor is not None:
        on = "(totp_secret IS NOT NULL OR security_keys > 0)"
        conditions.append(on if query.two_factor else f"NOT {on}")
    if query.active is not None:
        conditions.append(f"active = {mark}")
        args.append(int(query.active))
    return "".join(f" AND {c}" for c in conditions), tuple(args)


def repeat_conditions(e: AuditEvent, mark: str, since: datetime) -> tuple[str, tuple[Any, ...]]:
    """The conditions that find the events a throttled attempt ``e`` counts on (R75).

    Beyond the account's: a throttled event (a literal, so that the partial index
    ``audit_throttled`` serves it) of the same action, actor, actor id, target and
    reason, at or after ``since``. A missing value is matched with ``IS NULL``, which
    both databases answer from an index.
    """
    conditions = [
        "outcome = 'throttled'",
        f"action = {mark}",
        f"actor = {mark}",
        f"at >= {mark}",
    ]
    args: list[Any] = [e.action, e.actor, to_us(since)]
    for column, value in (
        ("actor_id", e.actor_id),
        ("target_id", e.target_id),
        ("reason", e.reason),
    ):
        if value is None:
            conditions.append(f"{column} IS NULL")
        else:
            conditions.append(f"{column} = {mark}")
            args.append(value)
    return " AND ".join(conditions), tuple(args)
