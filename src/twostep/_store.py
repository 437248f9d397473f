"""The store port: what ``twostep`` needs from a database, and nothing more.

Every operation of the service runs inside one :meth:`Store.transaction`. A write
transaction is *serialisable with respect to every other write transaction that
touches the same user*: the adapter takes the locks it needs (SQLite takes the
database's write lock at ``BEGIN IMMEDIATE``, PostgreSQL locks the rows it reads,
the in-memory store holds one lock). That is what makes "check the code, record
that it was used, issue the session" happen exactly once for two racing requests.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ._audit import AuditEvent
from ._domain import (
    Account,
    LoginChallenge,
    RememberedDevice,
    SecurityKey,
    SessionRecord,
    ThrottleKey,
    ThrottleState,
    User,
)

if TYPE_CHECKING:
    from ._audit_pages import AuditQuery  # loaded on first use: see its module
    from ._user_pages import UserQuery  # likewise

__all__ = [
    "PurgeBatch",
    "PurgeResume",
    "SealedKeyUse",
    "SessionWithUser",
    "Store",
    "Transaction",
    "sealed_key_id",
]

#: Where the next batch of a purge starts, as the store that returned it says: the
#: caller hands it back as it is.
PurgeResume = tuple[Any, ...]


class PurgeBatch(NamedTuple):
    """What one batch of :meth:`Transaction.purge_expired` did."""

    #: Rows deleted, or users whose expired enrolment was cleared.
    removed: int
    #: Where the next batch starts; ``None``: the purge is done.
    resume: PurgeResume | None


class SessionWithUser(NamedTuple):
    """A session with its user and account: see :meth:`Transaction.get_session_with_user`."""

    record: SessionRecord
    #: ``None`` if the user is gone (the session is then revoked).
    user: User | None
    #: ``None`` if the account is gone.
    account: Account | None


class SealedKeyUse(NamedTuple):
    """How the stored TOTP secrets use one key id: see :meth:`Transaction.sealed_key_ids`."""

    #: How many sealed values (confirmed and pending secrets) name the key id.
    secrets: int
    #: The first user, by id, holding one of them.
    user_id: str
    #: That user's value sealed under the key id (to try the key on); left out of repr.
    sealed: str

    def __repr__(self) -> str:
        return f"SealedKeyUse(secrets={self.secrets!r}, user_id={self.user_id!r})"


def sealed_key_id(sealed: str) -> str:
    """The key id a sealed value names (``<version>.<key id>.<rest>``); ``""`` if none."""
    parts = sealed.split(".", 2)
    return parts[1] if len(parts) == 3 else ""  # noqa: PLR2004 (the three parts)


class Transaction(Protocol):
    """One unit of work: it commits when its block ends normally, else rolls back."""

    def get_account(self, account_id: str) -> Account | None: ...
    def put_account(self, account: Account) -> None:
        """Insert or replace."""
        ...

    def get_user(self, user_id: str) -> User | None: ...
    def find_user_by_email(self, email_key: str) -> User | None: ...
    def users_of(self, account_id: str) -> list[User]: ...
    def add_user(self, user: User) -> None:
        """Insert a new user; raise :class:`~twostep.EmailTaken` if the email is in use."""
        ...

    def put_user(self, user: User) -> None:
        """Replace an existing user.

        A new email (R88, R89) frees the old one and is found by
        :meth:`find_user_by_email` from then on; if another user has it (any case: the
        same ``email_key``), raise :class:`~twostep.EmailTaken`, after which the
        transaction is only fit to be rolled back (on PostgreSQL it is aborted).
        """
        ...

    def users_in(self, account_id: str, query: UserQuery) -> list[User]:
        """The account's users that ``query`` asks for (R83), oldest first.

        Ordered by ``(created_at, id)``; the filters are applied by the store (in SQL),
        not over every user of the account. Locks nothing: a listing, or a count that
        the caller has made safe by locking the account (see ``delete_user``).
        """
        ...

    def delete_user(self, user_id: str) -> None:
        """Remove a user (R82) and all that is theirs but audit events.

        Their row, sessions, login challenges, remembered devices, security keys (R107)
        and user throttle go.
        Their email becomes free; audit events are kept. A user without a row is no
        error.
        """
        ...

    def users_page(self, after_id: str, limit: int) -> list[User]:
        """Users ordered by id, after ``after_id``: for batch jobs such as key rotation."""
        ...

    def sealed_key_ids(self) -> dict[str, SealedKeyUse]:
        """The key ids the users' sealed secrets (confirmed and pending) name, and their use.

        A sealed value is written ``<version>.<key id>.<rest>``; one with fewer than two
        dots counts under the key id ``""`` (see :func:`sealed_key_id`). For the start-up
        check that the configured keys open every stored secret: one read of the users.
        """
        ...

    def security_keys_of(self, user_id: str) -> list[SecurityKey]:
        """The user's security keys (R105), oldest first (by ``created_at``, then ``id``)."""
        ...

    def find_security_key(self, credential_id: str) -> SecurityKey | None:
        """The key with this credential id, of any user (R103), or ``None``.

        A write transaction locks it until it ends: two uses of one key are serialised,
        so that its sign count only grows (R104).
        """
        ...

    def add_security_key(self, key: SecurityKey) -> None:
        """Insert a new key (R101).

        The caller has checked that its credential id and its name (for its user) are
        not taken.
        """
        ...

    def put_security_key(self, key: SecurityKey) -> None:
        """Replace an existing key: its sign count and last use (R104)."""
        ...

    def delete_security_key(self, key_id: str) -> None:
        """Remove one key by its id (R106); an unknown id is no error."""
        ...

    def delete_security_keys_of(self, user_id: str) -> None:
        """Remove every key of a user (R107)."""
        ...

    def get_challenge(self, token_hash: str) -> LoginChallenge | None: ...
    def put_challenge(self, challenge: LoginChallenge) -> None: ...
    def delete_challenge(self, token_hash: str) -> None: ...
    def delete_challenges_of(self, user_id: str) -> None:
        """Delete every login challenge and reset token of a user (a login under way ends)."""
        ...

    def get_session(self, token_hash: str) -> SessionRecord | None: ...
    def get_session_with_user(self, token_hash: str) -> SessionWithUser | None:
        """The session under ``token_hash`` with its user and account, or ``None``.

        What :meth:`get_session`, then :meth:`get_user` and :meth:`get_account` of its
        ``user_id`` and ``account_id`` would return, locks included, in one read where
        the store can: every request with a session asks for it.
        """
        ...

    def put_session(self, session: SessionRecord) -> None: ...
    def delete_session(self, token_hash: str) -> None: ...

    def get_device(self, token_hash: str) -> RememberedDevice | None:
        """The remembered device whose token hashes to ``token_hash`` (R98), or ``None``."""
        ...

    def put_device(self, device: RememberedDevice) -> None:
        """Insert or replace (by ``token_hash``)."""
        ...

    def devices_of(self, user_id: str) -> list[RememberedDevice]:
        """The user's remembered devices, oldest first, whether still valid or not."""
        ...

    def delete_device(self, token_hash: str) -> None:
        """Forget one device; a token hash without one is no error."""
        ...

    def delete_devices_of(self, user_id: str) -> None:
        """Forget every remembered device of a user."""
        ...

    def get_throttle(self, key: ThrottleKey) -> ThrottleState | None:
        """The counter under ``key``, or ``None``; the state it returns has this very key."""
        ...

    def put_throttle(self, state: ThrottleState) -> None:
        """Insert or replace the counter under ``state.key``."""
        ...

    def delete_throttle(self, key: ThrottleKey) -> None:
        """Remove the counter under ``key``; a key without one is no error."""
        ...

    def add_audit(self, event: AuditEvent) -> None: ...
    def repeat_audit(self, event: AuditEvent, since: datetime) -> bool:
        """Count the throttled ``event`` on the event it repeats, if there is one (R75).

        That is the newest stored event of the same account, action, actor, actor id,
        target and reason, with outcome ``throttled``, whose ``at`` is ``>= since``: its
        ``repeats`` goes up by one, and nothing else changes. Returns whether there was
        one; if not, nothing is written (the caller adds ``event``).
        """
        ...

    def audit_events(self, account_id: str, limit: int) -> list[AuditEvent]:
        """The account's newest events first."""
        ...

    def audit_page(self, account_id: str, query: AuditQuery) -> list[tuple[int, AuditEvent]]:
        """The account's events that ``query`` asks for, newest first, each with its position.

        A position is where the store keeps an event: a positive int that grows with
        each event of the account and never changes (an audit id), so that a page that
        starts below a position given before is the same whatever was added since (R76).
        """
        ...

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
        """One batch of a purge of what can no longer matter (R130).

        A batch looks at no more than ``limit`` rows, of one table, in the order of its
        key from where ``resume`` says (``None``: the start), and removes or clears
        those among them that expired; it returns how many, and where the next batch
        starts, ``None`` once every table has been gone through. A purge is the batches
        from ``resume=None`` until ``None`` comes back, each in its own transaction, so
        that none holds the write lock for long.

        What expired: the login challenges, sessions and remembered devices with
        ``expires_at <= now``, and the throttle rows with ``last_failure_at <
        throttles_before`` that are not blocking (``blocked_until`` is None or ``<=
        now``). On users whose pending enrolment has expired (``pending_expires_at <=
        now``) it clears ``pending_secret`` and ``pending_expires_at``, and nothing
        else. The audit events with ``at < audit_before``, and those of no account with
        ``at < anonymous_audit_before`` (R77); ``None`` keeps them.
        """
        ...


class Store(Protocol):
    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]:
        """A unit of work. ``write=False`` promises to change nothing and may lock less."""
        ...

    def close(self) -> None: ...
