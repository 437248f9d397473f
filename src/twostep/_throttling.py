"""Throttling (R6): which counters an attempt counts against, and when they refuse it.

An attempt is refused, before anything is checked, while any of its keys is blocked.
Otherwise it counts as a failure of every key *before* its secret is checked, so that
parallel guesses cannot slip past the count; a success then clears the subject's key
(the user, or the email) and takes back the one failure it counted on the others (the
client), so that one good login does not wipe what a client spent guessing elsewhere.
"""

from __future__ import annotations

from ._domain import ThrottleKey, ThrottleScope, ThrottleState
from ._errors import Throttled
from ._settings import Settings, ThrottleSettings
from ._unit_of_work import Work

__all__ = [
    "Counter",
    "blocked",
    "code_counters",
    "count_failure",
    "count_success",
    "password_counters",
]

#: A throttle key with the settings it counts under.
Counter = tuple[ThrottleKey, ThrottleSettings]


def code_counters(settings: Settings, user_id: str, client: str | None) -> tuple[Counter, ...]:
    """Codes count per user, across challenges and actions, and per client if given."""
    user = (ThrottleKey(ThrottleScope.USER, user_id), settings.code_throttle)
    if client is None:
        return (user,)
    return user, (ThrottleKey(ThrottleScope.CLIENT, client), settings.client_throttle)


def password_counters(
    settings: Settings, email_key: str, client: str | None
) -> tuple[Counter, ...]:
    """Passwords count per email, known or not, and per client if given."""
    email = (ThrottleKey(ThrottleScope.EMAIL, email_key), settings.password_throttle)
    if client is None:
        return (email,)
    return email, (ThrottleKey(ThrottleScope.CLIENT, client), settings.client_throttle)


def blocked(w: Work, counters: tuple[Counter, ...]) -> Throttled | None:
    """The refusal of the first blocked key, or ``None`` if the attempt may go on."""
    for key, conf in counters:
        state = w.tx.get_throttle(key)
        wait = state.retry_after(w.now, conf) if state is not None else None
        if wait is not None:
            return Throttled(
                f"too many failed attempts; try again in {wait} s",
                retry_after=wait,
                scope=key.scope,
            )
    return None


def count_failure(w: Work, counters: tuple[Counter, ...]) -> None:
    """One failure more on every key (counted in advance, or after a wrong secret)."""
    for key, conf in counters:
        state = w.tx.get_throttle(key) or ThrottleState.clean(key, w.now)
        w.tx.put_throttle(state.failed(w.now, conf))


def count_success(w: Work, counters: tuple[Counter, ...], *, counted: bool) -> None:
    """Clear the subject's key (the first); take back the failure counted in advance."""
    w.tx.delete_throttle(counters[0][0])
    if not counted:
        return
    for key, conf in counters[1:]:
        state = w.tx.get_throttle(key)
        rest = state.undone(conf) if state is not None else None
        if rest is not None:
            w.tx.put_throttle(rest)
        elif state is not None:
            w.tx.delete_throttle(key)
