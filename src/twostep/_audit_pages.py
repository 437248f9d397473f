"""Reading the audit trail page by page (R76): what a store is asked, what a reader gets.

A page ends with a cursor that names the position of its last event; the next page
is the events below it. The cursor is opaque to hosts (a version tag, then the
position), so its form can change.

Loaded on first use, not by ``import twostep`` (bench/: import_time): the stories,
the stores and ``twostep.AuditPage`` import it when they need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import NamedTuple

from ._audit import AuditEvent

__all__ = ["AuditPage", "AuditQuery", "cursor_at", "position_of"]

_NO_EMAILS: Mapping[str, str] = MappingProxyType({})


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
    when this page is the last. ``emails`` maps the user ids the page's events name
    (as actor or target) to the users' current emails, for the users of the account
    who still exist; :meth:`who` and :meth:`describe` use it to say who did what to whom.
    """

    events: tuple[AuditEvent, ...]
    next_cursor: str | None
    emails: Mapping[str, str] = _NO_EMAILS

    def who(self, user_id: str | None) -> str | None:
        """The email of the user ``user_id``, else the id itself (a deleted user)."""
        return None if user_id is None else self.emails.get(user_id, user_id)

    def actor_of(self, event: AuditEvent) -> str:
        """Who acted: a user's email (or id), ``"operator"`` or ``"anonymous"``."""
        if event.actor != "user" or event.actor_id is None:
            return event.actor
        return self.who(event.actor_id) or event.actor

    def describe(self, event: AuditEvent) -> str:
        """One line of plain text: who did what to whom, how it ended, and why.

        For example ``ada@acme.example: two_factor_reset of cleo@acme.example:
        success (by_owner)``. A target is named only when it is not the actor.
        """
        line = f"{self.actor_of(event)}: {event.action}"
        if event.target_id is not None and event.target_id != event.actor_id:
            line += f" of {self.who(event.target_id)}"
        line += f": {event.outcome}"
        if event.reason:
            line += f" ({event.reason})"
        if event.repeats > 1:
            line += f", {event.repeats} times"
        return line


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
