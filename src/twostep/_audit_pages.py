"""Reading the audit trail page by page (R76): what a store is asked, what a reader gets.

A page ends with a cursor that names the position of its last event; the next page
is the events below it. The cursor is opaque to hosts (a version tag, then the
position), so its form can change.

Loaded on first use, not by ``import twostep`` (bench/: import_time): the stories,
the stores and ``twostep.AuditPage`` import it when they need it.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from ._audit import AuditEvent

__all__ = ["AuditPage", "AuditQuery", "cursor_at", "position_of"]


class AuditQuery(NamedTuple):
    """Which of an account's events a store returns (R76), newest first.

    At most ``limit`` events at positions below ``before`` (all when ``None``), and
    only those that match every filter given: ``action``, ``user_id`` (the actor or the
    target), ``outcome``, and ``since <= at < until``. A position is where the store
    keeps the event (its per-account or global audit id): it grows with each event
    an account gets, and never changes.
    """

    limit: int
    before: int | None = None
    action: str | None = None
    user_id: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditPage(NamedTuple):
    """A page of the audit trail, newest first (R76).

    ``next_cursor`` gives the next, older page to ``TwoStep.audit_page``; ``None``
    when this page is the last.
    """

    events: tuple[AuditEvent, ...]
    next_cursor: str | None


# A cursor is opaque to hosts: a version tag, then the position of the last event given.
_CURSOR_TAG = "a1."
_MAX_POSITION = 2**63 - 1  # the widest audit id a SQL store has (BIGINT)


def cursor_at(position: int) -> str:
    """The cursor of the page that follows the event at ``position``."""
    return f"{_CURSOR_TAG}{position}"


def position_of(cursor: str) -> int | None:
    """The position a cursor names, or ``None`` if it is not one this version made."""
    digits = cursor.removeprefix(_CURSOR_TAG)
    if (
        digits == cursor
        or not 1 <= len(digits) <= len(str(_MAX_POSITION))
        or not digits.isascii()
        or not digits.isdigit()
    ):
        return None
    position = int(digits)
    return position if 1 <= position <= _MAX_POSITION else None
