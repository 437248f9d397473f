"""Listing the users of an account page by page (R83): what a store is asked, what a reader gets.

Users come in the order they were created (then by id, for users created at the same
instant): the order of the index every SQL store has on ``(account_id, created_at)``.
A page ends with a cursor that names its last user; the next page is the users after
it, so users added meanwhile come at the end and none is shown twice. The cursor is
opaque to hosts (a version tag, then the last user's creation time and id).

Loaded on first use, not by ``import twostep`` (bench/: import_time).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from ._results import UserOverview
from .stores._sql import from_us, to_us

__all__ = ["UserPage", "UserQuery", "cursor_after", "position_of"]


class UserQuery(NamedTuple):
    """Which of an account's users a store returns (R83), oldest first.

    At most ``limit`` users that come after ``after`` (a creation time and a user id,
    compared in that order; from the first when ``None``), and only those that match
    every filter given: ``role`` (its value), ``two_factor`` (2FA on or not: an app or
    a security key, R102), ``active``.
    """

    limit: int
    after: tuple[datetime, str] | None = None
    role: str | None = None
    two_factor: bool | None = None
    active: bool | None = None


class UserPage(NamedTuple):
    """A page of an account's users, oldest first (R83).

    ``next_cursor`` gives the next page to ``TwoStep.list_users``; ``None`` when this
    page is the last.
    """

    users: tuple[UserOverview, ...]
    next_cursor: str | None


_CURSOR_TAG = "u1."
_MAX_ID = 64  # as _validate.MAX_ID


def cursor_after(created_at: datetime, user_id: str) -> str:
    """The cursor of the page that follows the user created at ``created_at`` with this id."""
    return f"{_CURSOR_TAG}{to_us(created_at)}.{user_id}"


def position_of(cursor: str) -> tuple[datetime, str] | None:
    """The creation time and user id a cursor names, or ``None`` if this version made none."""
    rest = cursor.removeprefix(_CURSOR_TAG)
    digits, dot, user_id = rest.partition(".")
    if (
        rest == cursor
        or not dot
        or not 1 <= len(digits) <= 19  # noqa: PLR2004 (a BIGINT's digits)
        or not digits.isascii()
        or not digits.isdigit()
        or not 1 <= len(user_id) <= _MAX_ID
        or not user_id.isprintable()
    ):
        return None
    try:
        return from_us(int(digits)), user_id
    except OverflowError:
        return None
