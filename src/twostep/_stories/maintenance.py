"""Maintenance: purging what expired, and resealing secrets under the current key."""

from __future__ import annotations

from dataclasses import replace

from .. import _validate as check
from .._codes import open_totp_key, seal_totp_key
from .._crypto import Cipher
from .._domain import User
from .._unit_of_work import Context

__all__ = ["purge_expired", "reseal_secrets"]


def purge_expired(context: Context) -> int:
    """Remove what can no longer matter; returns how many rows were deleted or cleared.

    That is expired login challenges and sessions, the pending secrets of expired
    enrolments (R11: the rest of the user is untouched), and throttle counters that
    no longer block and whose last failure is older than the longest ``forget_after``
    of the three throttles (R6: such a counter would start again from 1 anyway; one
    cutoff for every kind keeps some counters longer than needed, never too short).
    """
    s = context.settings
    keep = max(
        s.code_throttle.forget_after,
        s.password_throttle.forget_after,
        s.client_throttle.forget_after,
    )
    with context.work() as w:
        return w.tx.purge_expired(w.now, throttles_before=w.now - keep)


def reseal_secrets(context: Context, batch: int) -> int:
    """Re-encrypt every TOTP secret not under the cipher's current key; returns how many.

    Each batch commits on its own, so logins go on meanwhile.
    """
    batch = check.count(batch, "batch")
    count = 0
    after = ""
    while True:
        with context.work() as w:
            page = w.tx.users_page(after, batch)
            for user in page:
                resealed = _resealed(context.cipher, user)
                if resealed is not None:
                    w.tx.put_user(resealed)
                    count += 1
        if len(page) < batch:
            return count
        after = page[-1].id


def _resealed(cipher: Cipher, user: User) -> User | None:
    """The user with both secrets under the current key, or ``None`` if they already are."""

    def reseal(sealed: str | None) -> str | None:
        if sealed is None or cipher.is_current(sealed):
            return sealed
        return seal_totp_key(cipher, user.id, open_totp_key(cipher, user.id, sealed))

    state = user.two_factor
    secret, pending = reseal(state.secret), reseal(state.pending_secret)
    if (secret, pending) == (state.secret, state.pending_secret):
        return None
    return replace(user, two_factor=replace(state, secret=secret, pending_secret=pending))
