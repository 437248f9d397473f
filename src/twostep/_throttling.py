"""Throttling (R6, R71, R72): which counters an attempt counts against, and when they refuse.

An attempt is refused, before anything is checked, while one of its keys is blocked or
already has ``max_in_flight`` attempts being checked. An attempt whose check is slow
(an Argon2 hash) is *admitted* first, in a commit of its own: it is in flight on every
key until it is *settled*, so that parallel guesses cannot slip past the count while a
right password is never refused because other right ones are in flight (R71). A
failure counts on every key; a success clears the failures of the keys it answers for
(the user, the email), not those of the client, so that one good login does not wipe
what a client spent guessing elsewhere.

The email's count gates only clients that are unknown (no client key) or failing
(R72): a client with no failure counted is let through a blocked email, counting its
failures on a throttle of its own, so that knowing an email is not enough to keep its
user out.
"""

from __future__ import annotations

from typing import NamedTuple

from ._domain import ThrottleKey, ThrottleScope, ThrottleState
from ._errors import Throttled
from ._settings import Settings, ThrottleSettings
from ._unit_of_work import Work

__all__ = [
    "Counter",
    "admit",
    "blocked",
    "code_counters",
    "password_counters",
    "settle",
    "withdraw",
]


class Counter(NamedTuple):
    """A throttle key, the settings it counts under, and what it does to an attempt."""

    key: ThrottleKey
    conf: ThrottleSettings
    cleared_by_success: bool
    #: Whether the key can hold the attempt back; a key that does not gate only counts.
    gates: bool = True


def code_counters(settings: Settings, user_id: str, client: str | None) -> tuple[Counter, ...]:
    """Codes count per user, across challenges and actions, and per client if given."""
    user = Counter(ThrottleKey(ThrottleScope.USER, user_id), settings.code_throttle, True)
    if client is None:
        return (user,)
    return user, _client(settings, client)


def password_counters(
    w: Work, settings: Settings, email_key: str, client: str | None
) -> tuple[Counter, ...]:
    """Passwords count per email, known or not, and per client if given (R72).

    While the email is blocked, a clean client (a key with no failure that still
    counts) is let through on the email's clean-client counter instead of the email's.
    """
    email = Counter(ThrottleKey(ThrottleScope.EMAIL, email_key), settings.password_throttle, True)
    if client is None:
        return (email,)
    by_client = _client(settings, client)
    if _blocked_for(w, email) is None or _failing(w, by_client):
        return email, by_client
    clean = Counter(
        ThrottleKey(ThrottleScope.CLEAN_CLIENTS, email_key), settings.clean_client_throttle, True
    )
    # The email's failures go on counting; its block does not apply to this attempt.
    return clean, by_client, email._replace(gates=False)


def blocked(w: Work, counters: tuple[Counter, ...]) -> Throttled | None:
    """The refusal of the first key that holds the attempt back, or ``None``."""
    for counter in counters:
        state = w.tx.get_throttle(counter.key) if counter.gates else None
        wait = state.wait(w.now, counter.conf) if state is not None else None
        if wait is not None:
            return Throttled(
                f"too many failed attempts; try again in {wait} s",
                retry_after=wait,
                scope=counter.key.scope,
            )
    return None


def admit(w: Work, counters: tuple[Counter, ...]) -> None:
    """Count an attempt that :func:`blocked` let through as in flight on every key.

    Call it in the transaction of that check; :func:`settle` ends the flight.
    """
    for counter in counters:
        state = w.tx.get_throttle(counter.key) or ThrottleState.clean(counter.key, w.now)
        w.tx.put_throttle(state.admitted(w.now, counter.conf))


def settle(w: Work, counters: tuple[Counter, ...], *, ok: bool, admitted: bool) -> None:
    """Count the outcome of an attempt; if it was admitted, it is no longer in flight."""
    _update(w, counters, ok=ok, admitted=admitted)


def withdraw(w: Work, counters: tuple[Counter, ...]) -> None:
    """An admitted attempt ended with no verdict (e.g. its enrolment expired meanwhile)."""
    _update(w, counters, ok=None, admitted=True)


def _update(w: Work, counters: tuple[Counter, ...], *, ok: bool | None, admitted: bool) -> None:
    for counter in counters:
        stored = w.tx.get_throttle(counter.key)
        if stored is None and ok is not False:
            continue  # nothing to clear, nothing in flight, nothing to count
        state = stored or ThrottleState.clean(counter.key, w.now)
        if admitted:
            state = state.landed(w.now, counter.conf)
        if ok is False:
            state = state.failed(w.now, counter.conf)
        elif ok and counter.cleared_by_success:
            state = state.forgiven()
        if not state.empty:
            w.tx.put_throttle(state)
        elif stored is not None:
            w.tx.delete_throttle(counter.key)


def _client(settings: Settings, client: str) -> Counter:
    return Counter(ThrottleKey(ThrottleScope.CLIENT, client), settings.client_throttle, False)


def _blocked_for(w: Work, counter: Counter) -> int | None:
    state = w.tx.get_throttle(counter.key)
    return state.retry_after(w.now, counter.conf) if state is not None else None


def _failing(w: Work, counter: Counter) -> bool:
    state = w.tx.get_throttle(counter.key)
    return state is not None and state.failures_at(w.now, counter.conf) > 0
