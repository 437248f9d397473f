"""Maintenance: purging what expired; the keys: checking them, resealing under the current one."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from .. import _validate as check
from .._codes import open_totp_key, seal_totp_key
from .._crypto import KEYS_ENV, AESGCMKeyring, Cipher, shown_key_id
from .._domain import User
from .._errors import ConfigurationError, StoreError
from .._unit_of_work import Context

__all__ = ["check_keys", "purge_expired", "reseal_secrets"]


def purge_expired(context: Context) -> int:
    """Remove what can no longer matter; returns how many rows were deleted or cleared.

    That is expired login challenges and sessions, the pending secrets of expired
    enrolments (R11: the rest of the user is untouched), and throttle counters that
    no longer block and whose last failure is older than the longest ``forget_after``
    of the three throttles (R6: such a counter would start again from 1 anyway; one
    cutoff for every kind keeps some counters longer than needed, never too short).
    And audit events older than ``audit_retention``, those of no account (attempts on
    unknown emails) older than ``anonymous_audit_retention`` (R77).
    """
    s = context.settings
    keep = max(
        s.code_throttle.forget_after,
        s.password_throttle.forget_after,
        s.client_throttle.forget_after,
    )
    with context.work() as w:
        return w.tx.purge_expired(
            w.now,
            throttles_before=w.now - keep,
            audit_before=_before(w.now, s.audit_retention),
            anonymous_audit_before=_before(w.now, s.anonymous_audit_retention),
        )


def _before(now: datetime, retention: timedelta | None) -> datetime | None:
    """R77: the time before which events go, or ``None`` to keep them all."""
    return None if retention is None else now - retention


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


def check_keys(context: Context) -> None:
    """Refuse keys that cannot open the stored secrets, naming the key ids at fault.

    Every key id that a stored secret (confirmed or pending) names must be among the
    keyring's keys, and each must open one of those secrets (the first user's, by id):
    a key with the right id and the wrong bytes is caught too. Only the default
    :class:`AESGCMKeyring` is checked: another cipher's keys are its own business.
    """
    cipher = context.cipher
    if not isinstance(cipher, AESGCMKeyring):
        return
    with context.work(write=False) as w:
        used = w.tx.sealed_key_ids()
    configured = set(cipher.key_ids)
    missing = sorted(key_id for key_id in used if key_id not in configured)
    if missing:
        count = sum(used[key_id].secrets for key_id in missing)
        msg = (
            f"the keys lack {_key_ids(missing)}, which seal {count} stored TOTP "
            "secret(s): add the old key(s) back, after the current one, to "
            f"{KEYS_ENV} or the key file, or no user they seal can log in until an "
            "owner or the operator resets them (check_keys=False starts anyway)"
        )
        raise ConfigurationError(msg)
    for key_id, use in sorted(used.items()):
        try:
            open_totp_key(cipher, use.user_id, use.sealed)
        except StoreError:
            msg = (
                f"the key {_key_ids([key_id])} does not open the TOTP secret it sealed for "
                f"user {use.user_id}: the key with that id is not the one that sealed it "
                "(or that user's secret is damaged: reset their 2FA; check_keys=False "
                "starts anyway)"
            )
            raise ConfigurationError(msg) from None


def _key_ids(key_ids: list[str]) -> str:
    """Key ids as a message shows them: ids read from the store, so only if they look like one."""
    shown = [shown_key_id(key_id) or "(not a key id)" for key_id in key_ids]
    return ("key id " if len(shown) == 1 else "key ids ") + ", ".join(shown)
