"""Remembered devices (R98): a device on which a code was passed skips the code step.

Never the password: a remembered device only stands in for the second step of a login
whose password was right. Loaded on first use, like ``users``.
"""

from __future__ import annotations

import os
from datetime import timedelta

from .. import _validate as check
from .._audit import AuditAction, Outcome
from .._domain import RememberedDevice
from .._errors import InvalidInput, NotAllowed
from .._results import DeviceInfo, DeviceToken
from .._sessions import Actor, authenticate, new_token
from .._unit_of_work import Context, KeepAndRaise, Work

__all__ = ["forget_device", "remember_device", "remembered_devices"]

MAX_LABEL = 200


def remember_device(
    context: Context, session: object, valid_for: object, label: object
) -> DeviceToken:
    """R98: a token that lets this device skip the code step for ``valid_for``."""
    longest = context.settings.remember_device_for
    lifetime = longest if valid_for is None else _lifetime(valid_for, longest)
    name = "" if label is None else check.text(label, "label", MAX_LABEL)
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        if not actor.user.has_second_factor or actor.record.second_factor_at is None:
            _refuse(w, actor, "no_second_factor_in_session")
        token, hashed = new_token()
        device = RememberedDevice(
            token_hash=hashed,
            id=os.urandom(8).hex(),
            user_id=actor.user.id,
            label=name,
            created_at=w.now,
            expires_at=w.now + lifetime,
            last_used_at=None,
            account_generation=actor.account.session_generation,
            members_generation=actor.account.members_generation,
            user_generation=actor.user.session_generation,
        )
        w.tx.put_device(device)
        _audit(w, actor, AuditAction.DEVICE_REMEMBERED, device.id)
        return DeviceToken(token, device.id, device.expires_at)


def remembered_devices(context: Context, session: object) -> list[DeviceInfo]:
    """R98: the user's devices that would skip the code step now, oldest first."""
    with context.work(write=False) as w:
        actor = authenticate(w, context.settings, session)
        return [
            DeviceInfo(d.id, d.label, d.created_at, d.expires_at, d.last_used_at)
            for d in _live_devices(context, w, actor)
        ]


def forget_device(context: Context, session: object, device_id: object) -> bool:
    """R98: the device no longer skips the code step; ``False`` if it was not one of theirs."""
    wanted = check.identifier(device_id, "device_id")
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        for device in w.tx.devices_of(actor.user.id):
            if device.id == wanted:
                w.tx.delete_device(device.token_hash)
                _audit(w, actor, AuditAction.DEVICE_FORGOTTEN, device.id)
                return True
        return False


def _live_devices(context: Context, w: Work, actor: Actor) -> list[RememberedDevice]:
    lifetime = context.settings.remember_device_for
    return [
        d
        for d in w.tx.devices_of(actor.user.id)
        if d.admits(w.now, lifetime, actor.user, actor.account)
    ]


def _lifetime(value: object, longest: timedelta) -> timedelta:
    if not isinstance(value, timedelta) or not timedelta(0) < value <= longest:
        msg = f"valid_for must be a timedelta above 0 and at most {longest}"
        raise InvalidInput(msg, reason="invalid_valid_for")
    return value


def _refuse(w: Work, actor: Actor, reason: str) -> None:
    w.audit(
        AuditAction.DEVICE_REMEMBERED,
        Outcome.DENIED,
        account_id=actor.account.id,
        actor_id=actor.user.id,
        reason=reason,
    )
    msg = "only a session in which a code was passed can remember its device"
    raise KeepAndRaise(NotAllowed(msg, reason=reason, rule="R98"))


def _audit(w: Work, actor: Actor, action: AuditAction, device_id: str) -> None:
    # The device's id (not its token) names it, as the reason: the event has no other slot.
    w.audit(
        action,
        Outcome.SUCCESS,
        account_id=actor.account.id,
        actor_id=actor.user.id,
        target_id=actor.user.id,
        reason=device_id,
    )
