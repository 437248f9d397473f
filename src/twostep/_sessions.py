"""Where sessions are born and checked (R3, R21, R41): the one door to a session.

:func:`issue_session` is the only function that stores a session, and it refuses a user
whom the account does not admit; :func:`authenticate` checks a session on every use, so
a session older than a requirement or a reset stops working at once.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from typing import NamedTuple

from . import _validate as check
from ._domain import Account, SessionRecord, User
from ._errors import NotAllowed, SessionInvalid
from ._results import Session
from ._settings import Settings
from ._unit_of_work import Work

__all__ = ["Actor", "authenticate", "issue_session", "new_token", "session_token", "token_hash"]


def token_hash(token: str) -> str:
    """How session and challenge tokens are stored: their SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A new random token (256 bits, hex) and the hash to store."""
    token = os.urandom(32).hex()
    return token, token_hash(token)


def session_token(session: object) -> str:
    """The token of a :class:`Session` or of a token string, checked for shape only."""
    token = session.token if isinstance(session, Session) else session
    # Tokens are ASCII hex; anything else, e.g. a lone surrogate, cannot be one.
    if (
        not isinstance(token, str)
        or not token
        or len(token) > check.MAX_TOKEN
        or not token.isascii()
    ):
        msg = "not a session token"
        raise SessionInvalid(msg, reason="unknown")
    return token


class Actor(NamedTuple):
    """The user behind a valid session, with their account and the session itself."""

    record: SessionRecord
    user: User
    account: Account


def authenticate(w: Work, settings: Settings, session: object) -> Actor:
    """The actor behind a session, checked as on every request (R21, R41, R70)."""
    found = w.tx.get_session_with_user(token_hash(session_token(session)))
    if found is None:
        msg = "unknown or logged-out session"
        raise SessionInvalid(msg, reason="unknown")
    record = found.record
    user, account = record.check_valid(w.now, settings.session_ttl, found.user, found.account)
    return Actor(record, user, account)


def issue_session(
    w: Work,
    settings: Settings,
    user: User,
    account: Account,
    *,
    second_factor_at: datetime | None = None,
) -> Session:
    """The one place sessions are born: it refuses a user the account does not admit (R3).

    ``second_factor_at`` is when the user passed a second factor for it (R99): now, for
    a login with a code; ``None`` for a password alone or a remembered device.
    """
    if not account.admits(user, w.now):
        msg = "the account requires 2FA and this user has none"
        raise NotAllowed(
            msg,
            reason="two_factor_required",
            rule="R3",
        )
    token, hashed = new_token()
    record = SessionRecord(
        token_hash=hashed,
        user_id=user.id,
        account_id=account.id,
        issued_at=w.now,
        expires_at=w.now + settings.session_ttl,
        account_generation=account.session_generation,
        user_generation=user.session_generation,
        members_generation=account.members_generation,
        second_factor_at=second_factor_at,
    )
    w.tx.put_session(record)
    return session_value(token, record, user, account)


def session_value(token: str, record: SessionRecord, user: User, account: Account) -> Session:
    """What a host sees of a session: its token, who holds it, and what they must do."""
    return Session(
        token=token,
        user_id=user.id,
        account_id=user.account_id,
        email=user.email,
        role=user.role,
        issued_at=record.issued_at,
        expires_at=record.expires_at,
        two_factor_enabled=user.has_second_factor,
        enroll_by=account.enroll_by(user),
        second_factor_at=record.second_factor_at,
    )
