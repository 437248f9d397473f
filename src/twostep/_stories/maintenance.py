"""Maintenance: purging what expired; the keys: checking them, resealing under the current one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from .. import _validate as check
from .._codes import open_totp_key, seal_totp_key
from .._crypto import KEYS_ENV, AESGCMKeyring, Cipher, shown_key_id
from .._domain import User
from .._errors import ConfigurationError, InvalidInput, StoreError
from .._store import PurgeResume
from .._unit_of_work import Context

__all__ = ["check_keys", "purge_expired", "reseal_secrets"]

#: ``progress(resealed, total)``: how far ``reseal_secrets`` has gone.
Progress = Callable[[int, int], None]


def purge_expired(context: Context) -> int:
    """Remove what can no longer matter; returns how many rows were deleted or cleared.

    That is expired login challenges and sessions, the pending secrets of expired
    enrolments (R11: the rest of the user is untouched), and throttle counters that
    no longer block and whose last failure is older than the longest ``forget_after``
    of the three throttles (R6: such a counter would start again from 1 anyway; one
    cutoff for every kind keeps some counters longer than needed, never too short).
    And audit events older than ``audit_retention``, those of no account (attempts on
    unknown emails) older than ``anonymous_audit_retention`` (R77). In transactions
    that each look at no more than ``purge_batch`` rows (R130).
    """
    s = context.settings
    keep = max(
        s.code_throttle.forget_after,
        s.password_throttle.forget_after,
        s.client_throttle.forget_after,
    )
    # R130: one batch per transaction, each bounded by purge_batch rows, all with the
    # cutoffs of the purge's start, so that logins go on between them.
    now = context.clock.now()
    removed = 0
    resume: PurgeResume | None = None
    while True:
        with context.work() as w:
            batch = w.tx.purge_expired(
                now,
                throttles_before=now - keep,
                audit_before=_before(now, s.audit_retention),
                anonymous_audit_before=_before(now, s.anonymous_audit_retention),
                limit=s.purge_batch,
                resume=resume,
            )
        removed += batch.removed
        if batch.resume is None:
            return removed
        resume = batch.resume


def _before(now: datetime, retention: timedelta | None) -> datetime | None:
    """R77: the time before which events go, or ``None`` to keep them all."""
    return None if retention is None else now - retention


def reseal_secrets(context: Context, batch: int, progress: Progress | None = None) -> int:
    """Re-encrypt every TOTP secret not under the cipher's current key; returns how many.

    Each batch commits on its own, so logins go on meanwhile. ``progress(resealed,
    total)`` is called after each batch, ``total`` being the secrets to reseal as
    counted at the start. With an :class:`AESGCMKeyring` whose current key is older
    than another of its keys, nothing is resealed: see :func:`_refuse_an_older_key_first`.
    """
    batch = check.count(batch, "batch")
    if progress is not None and not callable(progress):
        msg = "progress must be a function of (resealed, total), or None"
        raise InvalidInput(msg, reason="invalid_progress")
    cipher = context.cipher
    if isinstance(cipher, AESGCMKeyring):
        _refuse_an_older_key_first(cipher)
    total = 0
    if progress is not None:
        with context.work(write=False) as w:
            used = w.tx.sealed_key_ids()
        total = sum(use.secrets for use in used.values() if not cipher.is_current(use.sealed))
    count = 0
    after = ""
    while True:
        with context.work() as w:
            page = w.tx.users_page(after, batch)
            for user in page:
                resealed, secrets = _resealed(cipher, user)
                if secrets:
                    w.tx.put_user(resealed)
                    count += secrets
        if progress is not None:
            progress(count, total)
        if len(page) < batch:
            return count
        after = page[-1].id


def _refuse_an_older_key_first(keyring: AESGCMKeyring) -> None:
    """Refuse to reseal when the current key is older than another key of the keyring.

    The operator's likely mistake is to append the new key instead of putting it first:
    resealing would then move every secret under the old key, which they are about to
    remove. Key ids made by ``twostep rotate-key`` (and ``init``) carry their creation
    time, so the current key must be the newest of the keys that carry one; a current
    key that carries none (made before, or by hand) may only be first when none does.
    """
    current = keyring.current_key_id
    made = AESGCMKeyring.key_created(current)
    newer = [
        (when, key_id)
        for key_id in keyring.key_ids[1:]
        if (when := AESGCMKeyring.key_created(key_id)) is not None and (made is None or when > made)
    ]
    if not newer:
        return
    when, newest = max(newer)
    first = f"the current (first) key {_shown(current)}"
    if made is None:
        first += " carries no creation time"
    else:
        first += f" (made {made:%Y-%m-%d %H:%M:%S} UTC) is older than a key listed after it"
    msg = (
        f"refusing to reseal: {first}: {_shown(newest)}, made {when:%Y-%m-%d %H:%M:%S} UTC; "
        "resealing would put every secret under the older key. Put the newest key first "
        f"in {KEYS_ENV} (or the key file), restart the application, then reseal"
    )
    raise ConfigurationError(msg)


def _shown(key_id: str) -> str:
    return shown_key_id(key_id) or "(an id too long to show)"


def _resealed(cipher: Cipher, user: User) -> tuple[User, int]:
    """The user with both secrets under the current key, and how many were resealed."""

    def reseal(sealed: str | None) -> str | None:
        if sealed is None or cipher.is_current(sealed):
            return sealed
        return seal_totp_key(cipher, user.id, open_totp_key(cipher, user.id, sealed))

    state = user.two_factor
    secret, pending = reseal(state.secret), reseal(state.pending_secret)
    count = (secret != state.secret) + (pending != state.pending_secret)
    if not count:
        return user, 0
    return replace(user, two_factor=replace(state, secret=secret, pending_secret=pending)), count


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
            f"the keys lack {_key_ids(missing)}, which seal {count:,} stored TOTP "
            "secret(s): add the old key(s) back, after the current one, to "
            f"{KEYS_ENV} or the key file, or no user they seal can log in until an "
            "owner or the operator resets them (TwoStep(check_keys=False) starts anyway)"
        )
        raise ConfigurationError(msg)
    for key_id, use in sorted(used.items()):
        try:
            open_totp_key(cipher, use.user_id, use.sealed)
        except StoreError:
            msg = (
                f"the key {_shown(key_id)} does not open the TOTP secret it sealed for "
                f"user {use.user_id}: the key with that id is not the one that sealed it "
                "(or that user's secret is damaged: reset their 2FA; TwoStep(check_keys=False) "
                "starts anyway)"
            )
            raise ConfigurationError(msg) from None


def _key_ids(key_ids: list[str]) -> str:
    """Key ids as a message shows them: ids read from the store, so only if they look like one."""
    shown = [shown_key_id(key_id) or "(not a key id)" for key_id in key_ids]
    return ("key id " if len(shown) == 1 else "key ids ") + ", ".join(shown)
