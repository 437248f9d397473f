"""An in-memory store: real, thread-safe, transactional; for tests and demos."""

from __future__ import annotations

import bisect
import heapq
import threading
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from .._audit import AuditEvent, Outcome
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
from .._errors import EmailTaken
from .._store import PurgeBatch, PurgeResume, SealedKeyUse, SessionWithUser, sealed_key_id
from .._user_pages import UserQuery

__all__ = ["InMemoryStore"]

_MISSING: Any = object()
#: An audit event as the store keeps it: its position (R76), then the event.
_Positioned = tuple[int, AuditEvent]


class _Tx:
    """Writes go straight to the store's dicts; an undo log restores them on rollback.

    It is its own context manager: entering takes the store's lock, leaving on an
    error rolls back, and leaving releases the lock.
    """

    # Undo of what changes audit events already there (appends are undone by cutting
    # the list back to _audit_len): each count raised (R75), as its index and the
    # event before; the list as it was before a purge (R77), and how many counts were
    # raised before it. Made when first needed: most transactions need neither.
    _audit_repeats: list[tuple[int, _Positioned]] | None = None
    _audit_saved: tuple[list[_Positioned], int] | None = None

    def __init__(self, store: InMemoryStore) -> None:
        self._s = store
        self._undo: list[tuple[dict[Any, Any], Any, Any]] = []
        self._audit_len = 0

    def __enter__(self) -> Self:
        self._s._lock.acquire()  # noqa: SLF001 (the store's own transaction)
        self._audit_len = len(self._s.audit)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if error is not None:
                self.rollback()
        finally:
            self._s._lock.release()  # noqa: SLF001 (the store's own transaction)

    def _set(self, table: dict[Any, Any], key: object, value: object) -> None:
        self._undo.append((table, key, table.get(key, _MISSING)))
        if value is _MISSING:
            table.pop(key, None)
        else:
            table[key] = value

    def rollback(self) -> None:
        for table, key, old in reversed(self._undo):
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old
        audit = self._s.audit
        repeats = self._audit_repeats or []
        if self._audit_saved is not None:
            saved, before_purge = self._audit_saved
            audit[:] = saved
            del repeats[before_purge:]
        for index, old in reversed(repeats):
            audit[index] = old
        del audit[self._audit_len :]

    def get_account(self, account_id: str) -> Account | None:
        return self._s.accounts.get(account_id)

    def put_account(self, account: Account) -> None:
        self._set(self._s.accounts, account.id, account)

    def get_user(self, user_id: str) -> User | None:
        return self._s.users.get(user_id)

    def find_user_by_email(self, email_key: str) -> User | None:
        user_id = self._s.emails.get(email_key)
        return None if user_id is None else self._s.users[user_id]

    def users_of(self, account_id: str) -> list[User]:
        ids = self._s.members.get(account_id, set())
        return sorted((self._s.users[i] for i in ids), key=lambda u: u.created_at)

    def add_user(self, user: User) -> None:
        if user.email_key in self._s.emails:
            msg = "a user with this email already exists"
            raise EmailTaken(msg)
        self._set(self._s.emails, user.email_key, user.id)
        members = set(self._s.members.get(user.account_id, set()))
        members.add(user.id)
        self._set(self._s.members, user.account_id, members)
        self._set(self._s.users, user.id, user)

    def put_user(self, user: User) -> None:
        old = self._s.users.get(user.id)
        # A new email (R88, R89); comparing the text first spares every login two casefolds.
        if old is not None and old.email != user.email and old.email_key != user.email_key:
            if self._s.emails.get(user.email_key, user.id) != user.id:
                msg = "a user with this email already exists"
                raise EmailTaken(msg)
            if self._s.emails.get(old.email_key) == user.id:
                self._set(self._s.emails, old.email_key, _MISSING)
            self._set(self._s.emails, user.email_key, user.id)
        self._set(self._s.users, user.id, user)

    def users_in(self, account_id: str, query: UserQuery) -> list[User]:
        users = sorted(
            (self._s.users[i] for i in self._s.members.get(account_id, set())),
            key=lambda u: (u.created_at, u.id),
        )
        return [
            u
            for u in users
            if (query.after is None or (u.created_at, u.id) > query.after)
            and (query.role is None or u.role == query.role)
            and (query.two_factor is None or u.has_second_factor == query.two_factor)
            and (query.active is None or u.active == query.active)
        ][: query.limit]

    def delete_user(self, user_id: str) -> None:
        user = self._s.users.get(user_id)
        if user is None:
            return
        if self._s.emails.get(user.email_key) == user_id:
            self._set(self._s.emails, user.email_key, _MISSING)
        members = set(self._s.members.get(user.account_id, set()))
        members.discard(user_id)
        self._set(self._s.members, user.account_id, members)
        self._set(self._s.users, user_id, _MISSING)
        for key, session in list(self._s.sessions.items()):
            if session.user_id == user_id:
                self._set(self._s.sessions, key, _MISSING)
        for key, challenge in list(self._s.challenges.items()):
            if challenge.user_id == user_id:
                self._set(self._s.challenges, key, _MISSING)
        self.delete_devices_of(user_id)
        self.delete_throttle(ThrottleKey(ThrottleScope.USER, user_id))
        self.delete_security_keys_of(user_id)

    def users_page(self, after_id: str, limit: int) -> list[User]:
        ids = sorted(i for i in self._s.users if i > after_id)[:limit]
        return [self._s.users[i] for i in ids]

    def sealed_key_ids(self) -> dict[str, SealedKeyUse]:
        found: dict[str, SealedKeyUse] = {}
        for user_id in sorted(self._s.users, reverse=True):  # the first user by id wins
            state = self._s.users[user_id].two_factor
            for sealed in (state.pending_secret, state.secret):
                if sealed is not None:
                    key_id = sealed_key_id(sealed)
                    seen = found.get(key_id)
                    found[key_id] = SealedKeyUse(1 + (seen.secrets if seen else 0), user_id, sealed)
        return found

    def security_keys_of(self, user_id: str) -> list[SecurityKey]:
        keys = (k for k in self._s.security_keys.values() if k.user_id == user_id)
        return sorted(keys, key=lambda k: (k.created_at, k.id))

    def find_security_key(self, credential_id: str) -> SecurityKey | None:
        key_id = self._s.credentials.get(credential_id)
        return None if key_id is None else self._s.security_keys[key_id]

    def add_security_key(self, key: SecurityKey) -> None:
        self._set(self._s.credentials, key.credential_id, key.id)
        self._set(self._s.security_keys, key.id, key)

    def put_security_key(self, key: SecurityKey) -> None:
        self._set(self._s.security_keys, key.id, key)

    def delete_security_key(self, key_id: str) -> None:
        key = self._s.security_keys.get(key_id)
        if key is not None:
            self._set(self._s.credentials, key.credential_id, _MISSING)
            self._set(self._s.security_keys, key_id, _MISSING)

    def delete_security_keys_of(self, user_id: str) -> None:
        for key in self.security_keys_of(user_id):
            self.delete_security_key(key.id)

    def get_challenge(self, token_hash: str) -> LoginChallenge | None:
        return self._s.challenges.get(token_hash)

    def put_challenge(self, challenge: LoginChallenge) -> None:
        self._set(self._s.challenges, challenge.token_hash, challenge)

    def delete_challenge(self, token_hash: str) -> None:
        self._set(self._s.challenges, token_hash, _MISSING)

    def delete_challenges_of(self, user_id: str) -> None:
        for key, challenge in list(self._s.challenges.items()):
            if challenge.user_id == user_id:
                self._set(self._s.challenges, key, _MISSING)

    def get_session(self, token_hash: str) -> SessionRecord | None:
        return self._s.sessions.get(token_hash)

    def get_session_with_user(self, token_hash: str) -> SessionWithUser | None:
        record = self._s.sessions.get(token_hash)
        if record is None:
            return None
        return SessionWithUser(
            record, self._s.users.get(record.user_id), self._s.accounts.get(record.account_id)
        )

    def put_session(self, session: SessionRecord) -> None:
        self._set(self._s.sessions, session.token_hash, session)

    def delete_session(self, token_hash: str) -> None:
        self._set(self._s.sessions, token_hash, _MISSING)

    def get_device(self, token_hash: str) -> RememberedDevice | None:
        return self._s.devices.get(token_hash)

    def put_device(self, device: RememberedDevice) -> None:
        self._set(self._s.devices, device.token_hash, device)

    def devices_of(self, user_id: str) -> list[RememberedDevice]:
        mine = (d for d in self._s.devices.values() if d.user_id == user_id)
        return sorted(mine, key=lambda d: (d.created_at, d.id))

    def delete_device(self, token_hash: str) -> None:
        self._set(self._s.devices, token_hash, _MISSING)

    def delete_devices_of(self, user_id: str) -> None:
        for device in self.devices_of(user_id):
            self.delete_device(device.token_hash)

    def get_throttle(self, key: ThrottleKey) -> ThrottleState | None:
        return self._s.throttles.get(key)

    def put_throttle(self, state: ThrottleState) -> None:
        self._set(self._s.throttles, state.key, state)

    def delete_throttle(self, key: ThrottleKey) -> None:
        if key in self._s.throttles:
            self._set(self._s.throttles, key, _MISSING)

    def add_audit(self, event: AuditEvent) -> None:
        # One more than the newest event's position, as SQLite numbers an account's.
        audit = self._s.audit
        audit.append((audit[-1][0] + 1 if audit else 1, event))

    def repeat_audit(self, event: AuditEvent, since: datetime) -> bool:
        key = _repeat_key(event)
        audit = self._s.audit
        for index in range(len(audit) - 1, -1, -1):
            position, stored = audit[index]
            if (
                stored.outcome == Outcome.THROTTLED
                and stored.at >= since
                and _repeat_key(stored) == key
            ):
                if self._audit_repeats is None:
                    self._audit_repeats = []
                self._audit_repeats.append((index, audit[index]))
                audit[index] = (position, replace(stored, repeats=stored.repeats + 1))
                return True
        return False

    def audit_events(self, account_id: str, limit: int) -> list[AuditEvent]:
        return [event for _, event in self.audit_page(account_id, AuditQuery(limit))]

    def audit_page(self, account_id: str, query: AuditQuery) -> list[tuple[int, AuditEvent]]:
        found: list[tuple[int, AuditEvent]] = []
        for position, event in reversed(self._s.audit):
            if (
                event.account_id == account_id
                and (query.before is None or position < query.before)
                and _matches(event, query)
            ):
                found.append((position, event))
                if len(found) >= query.limit:
                    break
        return found

    def _purge_audit(
        self, start: int, stop: int, before: datetime | None, anonymous_before: datetime | None
    ) -> int:
        """Delete the expired events among ``audit[start:stop]``; how many went."""
        audit = self._s.audit

        def expired(event: AuditEvent) -> bool:
            return (before is not None and event.at < before) or (
                anonymous_before is not None
                and event.account_id is None
                and event.at < anonymous_before
            )

        kept = [item for item in audit[start:stop] if not expired(item[1])]
        gone = stop - start - len(kept)
        if gone:
            if self._audit_saved is None:
                self._audit_saved = (list(audit), len(self._audit_repeats or ()))
            audit[start:stop] = kept
        return gone

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
        # The stages of the SQL stores: each table in the order of its key, ``limit``
        # keys per batch; the audit trail by position.
        stage, after = resume if resume is not None else (0, None)
        if _STAGES[stage] == "audit":
            audit = self._s.audit
            start = 0 if after is None else bisect.bisect_right(audit, after, key=_position)
            stop = min(start + limit, len(audit))
            last = audit[stop - 1][0] if stop > start else None
            removed = self._purge_audit(start, stop, audit_before, anonymous_audit_before)
            more = stop - start == limit
            return PurgeBatch(removed, (stage, last) if more else None)
        table: dict[Any, Any] = getattr(self._s, _STAGES[stage])
        keys = heapq.nsmallest(
            limit, (k for k in table if after is None or _order(k) > after), key=_order
        )
        removed = sum(self._purge_one(_STAGES[stage], key, now, throttles_before) for key in keys)
        if len(keys) == limit:
            return PurgeBatch(removed, (stage, _order(keys[-1])))
        done = (
            _STAGES[stage + 1] == "audit"
            and audit_before is None
            and anonymous_audit_before is None
        )
        return PurgeBatch(removed, None if done else (stage + 1, None))

    def _purge_one(
        self,
        table: str,
        key: Any,  # noqa: ANN401 (a key of that table)
        now: datetime,
        throttles_before: datetime,
    ) -> int:
        """Remove (or clear) the row under ``key`` in ``table`` if it expired; 1 if so."""
        if table == "throttles":
            t = self._s.throttles[key]
            if t.last_failure_at < throttles_before and (
                t.blocked_until is None or t.blocked_until <= now
            ):
                self.delete_throttle(key)
                return 1
        elif table == "users":
            user = self._s.users[key]
            lapsed = user.two_factor.pending_expires_at
            if lapsed is not None and lapsed <= now:
                state = replace(user.two_factor, pending_secret=None, pending_expires_at=None)
                self.put_user(replace(user, two_factor=state))
                return 1
        elif getattr(self._s, table)[key].expires_at <= now:  # challenges, sessions, devices
            self._set(getattr(self._s, table), key, _MISSING)
            return 1
        return 0


#: The tables a purge goes through, in order (as the store's attributes), then the trail.
_STAGES = ("challenges", "sessions", "devices", "throttles", "users", "audit")


def _order(key: str | ThrottleKey) -> str:
    """The order of a key in its table: throttle keys as stored, as the SQL stores sort them."""
    return key.stored if isinstance(key, ThrottleKey) else key


def _position(item: _Positioned) -> int:
    return item[0]


def _repeat_key(e: AuditEvent) -> tuple[object, ...]:
    """What a throttled attempt shares with the event it counts on (R75), but the time."""
    return (e.account_id, e.action, e.actor, e.actor_id, e.target_id, e.reason)


def _matches(e: AuditEvent, query: AuditQuery) -> bool:
    """Whether ``e`` passes the filters of ``query`` (R76); its position is checked apart."""
    return (
        (query.action is None or e.action == query.action)
        and (query.user_id is None or query.user_id in {e.actor_id, e.target_id})
        and (query.outcome is None or e.outcome == query.outcome)
        and (query.since is None or e.at >= query.since)
        and (query.until is None or e.at < query.until)
    )


class InMemoryStore:
    """Everything in dicts of immutable values, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.users: dict[str, User] = {}
        self.emails: dict[str, str] = {}
        self.members: dict[str, set[str]] = {}
        self.challenges: dict[str, LoginChallenge] = {}
        self.sessions: dict[str, SessionRecord] = {}
        self.devices: dict[str, RememberedDevice] = {}
        self.throttles: dict[ThrottleKey, ThrottleState] = {}
        #: Security keys by twostep's id, and their ids by credential id (R101).
        self.security_keys: dict[str, SecurityKey] = {}
        self.credentials: dict[str, str] = {}
        #: Every audit event with its position (R76), oldest first.
        self.audit: list[tuple[int, AuditEvent]] = []

    def __repr__(self) -> str:
        return f"InMemoryStore(accounts={len(self.accounts)}, users={len(self.users)})"

    def transaction(self, *, write: bool = True) -> _Tx:
        """A transaction: it holds the store's lock from entry to exit."""
        del write  # one lock serves reads and writes alike
        return _Tx(self)

    def close(self) -> None:
        """Nothing to release: the state lives as long as the store."""
