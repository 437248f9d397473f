"""Security keys (WebAuthn) as a second factor (R100-R109).

Loaded on first use (see ``TwoStep``), and py_webauthn with it: ``import twostep``
pays for neither. Registering a key, listing and removing one's keys, and the second
step of a login with a key. An assertion is checked on the one path of every code
(``present_code``): throttled, counted and single-use like a code (R103).
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import NoReturn

from .. import _validate as check
from .._audit import AuditAction, Outcome
from .._code_check import Against, CodeAttempt, KeyProof, Passed, present_code
from .._domain import ChallengeKind, LoginChallenge, SecurityKey
from .._errors import ChallengeExpired, ConfigurationError, InvalidInput, NotAllowed, TwoStepError
from .._results import LoggedIn, SecurityKeyInfo, Session
from .._sessions import Actor, authenticate, session_token, session_value, token_hash
from .._settings import PasskeySettings
from .._throttling import code_counters
from .._unit_of_work import Context, KeepAndRaise, Work
from .._webauthn import (
    ParsedAssertion,
    assertion_options,
    library,
    login_challenge,
    parse_assertion,
    parse_registration,
    registration_options,
    verify_assertion,
    verify_registration,
)
from .login import _LoadChallenge, _logged_in

__all__ = [
    "begin_check",
    "begin_registration",
    "finish_registration",
    "list_keys",
    "login_options",
    "login_with_key",
    "remove_key",
    "step_up_with_key",
]


def _passkeys(context: Context) -> PasskeySettings:
    """R100: the relying party, or ConfigurationError if security keys are off.

    Also if py_webauthn is missing (the ``passkeys`` extra).
    """
    if context.passkeys is None:
        msg = "security keys are not set up: pass passkeys=PasskeySettings(...) to TwoStep"
        raise ConfigurationError(msg, reason="passkeys_not_configured")
    library()
    return context.passkeys


def _ms(ttl: timedelta) -> int:
    return int(ttl.total_seconds() * 1000)


def _info(key: SecurityKey) -> SecurityKeyInfo:
    return SecurityKeyInfo(key.id, key.name, key.created_at, key.last_used_at)


def _refuse(
    w: Work, action: AuditAction, actor: Actor, error: TwoStepError, outcome: Outcome
) -> NoReturn:
    """Audit a refusal of one's own key operation (R108) and raise it once committed."""
    w.audit(
        action,
        outcome,
        account_id=actor.account.id,
        actor_id=actor.user.id,
        target_id=actor.user.id,
        reason=error.reason,
    )
    raise KeepAndRaise(error)


def _key_challenge(w: Work, actor: Actor, kind: ChallengeKind, ttl: timedelta) -> bytes:
    """A random WebAuthn challenge, stored (hashed) for the actor: single-use, expiring."""
    from webauthn.helpers import bytes_to_base64url

    challenge = os.urandom(32)
    hashed = token_hash(bytes_to_base64url(challenge))
    w.tx.put_challenge(LoginChallenge(hashed, actor.user.id, kind, w.now, w.now + ttl))
    return challenge


def begin_registration(context: Context, session: object) -> str:
    """R101: the options for ``navigator.credentials.create()``, as JSON."""
    passkeys = _passkeys(context)
    ttl = context.settings.enrollment_ttl
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        keys = w.tx.security_keys_of(actor.user.id)
        if len(keys) >= passkeys.max_keys:
            msg = f"at most {passkeys.max_keys} security keys per user"
            error = NotAllowed(msg, reason="too_many_security_keys", rule="R101")
            _refuse(w, AuditAction.SECURITY_KEY_REGISTERED, actor, error, Outcome.DENIED)
        challenge = _key_challenge(w, actor, ChallengeKind.KEY_REGISTRATION, ttl)
        return registration_options(passkeys, actor.user, keys, challenge, _ms(ttl))


def finish_registration(
    context: Context, session: object, credential: object, name: object
) -> SecurityKeyInfo:
    """R101: the browser's response to the options of :func:`begin_registration`, named."""
    passkeys = _passkeys(context)
    key_name = check.text(name, "name", passkeys.max_name_length).strip()
    parsed = parse_registration(credential)
    audit_as = AuditAction.SECURITY_KEY_REGISTERED
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        user = actor.user
        record = w.tx.get_challenge(token_hash(parsed.challenge))
        if (
            record is None
            or record.kind is not ChallengeKind.KEY_REGISTRATION
            or record.user_id != user.id
        ):
            unknown = ChallengeExpired("no such security key registration", reason="unknown")
            _refuse(w, audit_as, actor, unknown, Outcome.FAILURE)
        try:
            record.check_usable(w.now, 1, context.settings.enrollment_ttl)
        except ChallengeExpired as expired:
            w.tx.delete_challenge(record.token_hash)
            _refuse(w, audit_as, actor, expired, Outcome.FAILURE)
        keys = w.tx.security_keys_of(user.id)
        # Refused before the challenge is used: the host may ask for another name and
        # send the same response again.
        if any(k.name.casefold() == key_name.casefold() for k in keys):
            msg = "another of your security keys has this name"
            error = NotAllowed(msg, reason="security_key_name_taken", rule="R101")
            _refuse(w, audit_as, actor, error, Outcome.DENIED)
        if len(keys) >= passkeys.max_keys:
            msg = f"at most {passkeys.max_keys} security keys per user"
            error = NotAllowed(msg, reason="too_many_security_keys", rule="R101")
            _refuse(w, audit_as, actor, error, Outcome.DENIED)
        w.tx.delete_challenge(record.token_hash)  # single-use from here on, whatever follows
        from webauthn.helpers import base64url_to_bytes

        try:
            verified = verify_registration(passkeys, parsed, base64url_to_bytes(parsed.challenge))
        except TwoStepError as wrong:
            _refuse(w, audit_as, actor, wrong, Outcome.FAILURE)
        if w.tx.find_security_key(verified.credential_id) is not None:
            msg = "this security key is registered already"
            error = NotAllowed(msg, reason="security_key_registered", rule="R101")
            _refuse(w, audit_as, actor, error, Outcome.DENIED)
        key = SecurityKey(
            id=os.urandom(16).hex(),
            user_id=user.id,
            name=key_name,
            credential_id=verified.credential_id,
            public_key=verified.public_key,
            sign_count=verified.sign_count,
            transports=parsed.transports,
            created_at=w.now,
        )
        w.tx.add_security_key(key)
        w.tx.put_user(user.with_security_keys(len(keys) + 1))
        w.audit(
            audit_as,
            Outcome.SUCCESS,
            account_id=user.account_id,
            actor_id=user.id,
            target_id=user.id,
        )
        return _info(key)


def list_keys(context: Context, session: object) -> tuple[SecurityKeyInfo, ...]:
    """R105: one's own security keys, oldest first."""
    with context.work(write=False) as w:
        actor = authenticate(w, context.settings, session)
        return tuple(_info(k) for k in w.tx.security_keys_of(actor.user.id))


def begin_check(context: Context, session: object) -> str:
    """R106: options for ``navigator.credentials.get()`` to prove a key outside a login."""
    passkeys = _passkeys(context)
    ttl = context.settings.challenge_ttl
    with context.work() as w:
        actor = authenticate(w, context.settings, session)
        keys = w.tx.security_keys_of(actor.user.id)
        if not keys:
            error = NotAllowed("you have no security key", reason="no_security_key", rule="R106")
            _refuse(w, AuditAction.SECURITY_KEY_REMOVED, actor, error, Outcome.DENIED)
        challenge = _key_challenge(w, actor, ChallengeKind.KEY_CHECK, ttl)
        return assertion_options(passkeys, challenge, keys, _ms(ttl))


def _key_proof(passkeys: PasskeySettings, parsed: ParsedAssertion, challenge: bytes) -> KeyProof:
    return KeyProof(
        parsed.credential_id, lambda key: verify_assertion(passkeys, parsed, challenge, key)
    )


def _checked_key(context: Context, assertion: object) -> tuple[KeyProof, str]:
    """R106: an assertion answering a key check, and the hash its challenge is kept under."""
    passkeys = _passkeys(context)
    parsed = parse_assertion(assertion)
    from webauthn.helpers import base64url_to_bytes

    proof = _key_proof(passkeys, parsed, base64url_to_bytes(parsed.challenge))
    return proof, token_hash(parsed.challenge)


def _check_record(w: Work, actor: Actor, hashed: str, audit_as: AuditAction) -> LoginChallenge:
    """The actor's live key check that an assertion answers, or an audited refusal."""
    record = w.tx.get_challenge(hashed)
    if (
        record is None
        or record.kind is not ChallengeKind.KEY_CHECK
        or record.user_id != actor.user.id
    ):
        unknown = ChallengeExpired("no such security key check", reason="unknown")
        _refuse(w, audit_as, actor, unknown, Outcome.FAILURE)
    return record


def step_up_with_key(context: Context, session: object, assertion: object) -> Session:
    """R99: a key's assertion passed again in this session, before a sensitive action."""
    proof, check_hash = _checked_key(context, assertion)
    records = []  # the session, as each transaction loaded it

    def load(w: Work) -> CodeAttempt:
        actor = authenticate(w, context.settings, session)
        records.append(actor.record)
        record = _check_record(w, actor, check_hash, AuditAction.STEP_UP)
        counters = code_counters(context.settings, actor.user.id, None)
        return CodeAttempt(
            actor.user, actor.account, AuditAction.STEP_UP, Against.CONFIRMED, counters, record
        )

    def apply(w: Work, attempt: CodeAttempt, passed: Passed) -> Session:
        record = replace(records[-1], second_factor_at=w.now)
        w.tx.put_session(record)
        user = passed.user
        w.audit(
            AuditAction.STEP_UP,
            Outcome.SUCCESS,
            account_id=user.account_id,
            actor_id=user.id,
            target_id=user.id,
            reason=passed.how,
        )
        return session_value(session_token(session), record, user, attempt.account)

    return present_code(context, proof, load, apply)


def remove_key(
    context: Context, session: object, key_id: object, code: object, assertion: object
) -> None:
    """R106: remove one of one's keys, with a code or a key; never the last one required."""
    wanted = check.identifier(key_id, "key_id")
    if (code is None) == (assertion is None):
        msg = "give either a code or a security key's assertion"
        raise InvalidInput(msg, reason="invalid_proof")
    proof: object = code
    check_hash = None
    if assertion is not None:
        proof, check_hash = _checked_key(context, assertion)
    audit_as = AuditAction.SECURITY_KEY_REMOVED

    def load(w: Work) -> CodeAttempt:
        actor = authenticate(w, context.settings, session)
        user = actor.user
        keys = w.tx.security_keys_of(user.id)
        if not any(k.id == wanted for k in keys):
            msg = "you have no security key with this id"
            error = NotAllowed(msg, reason="unknown_security_key", rule="R106")
            _refuse(w, audit_as, actor, error, Outcome.DENIED)
        if actor.account.two_factor_required and not user.two_factor.enabled and len(keys) == 1:
            msg = "the account requires 2FA: this is your last second factor"
            error = NotAllowed(msg, reason="last_second_factor", rule="R106")
            _refuse(w, audit_as, actor, error, Outcome.DENIED)
        record = None if check_hash is None else _check_record(w, actor, check_hash, audit_as)
        counters = code_counters(context.settings, user.id, None)
        return CodeAttempt(user, actor.account, audit_as, Against.CONFIRMED, counters, record)

    def apply(w: Work, _: CodeAttempt, passed: Passed) -> None:
        user = passed.user
        left = len(w.tx.security_keys_of(user.id)) - 1
        w.tx.delete_security_key(wanted)
        w.tx.put_user(user.with_security_keys(left))
        w.audit(
            audit_as,
            Outcome.SUCCESS,
            account_id=user.account_id,
            actor_id=user.id,
            target_id=user.id,
            reason=passed.how,
        )

    present_code(context, proof, load, apply)


def login_options(context: Context, token: str) -> str:
    """R103: options for ``navigator.credentials.get()`` at step 2 of a login."""
    passkeys = _passkeys(context)
    settings = context.settings
    with context.work(write=False) as w:
        record = w.tx.get_challenge(token_hash(token))
        user = w.tx.get_user(record.user_id) if record is not None else None
        if (
            record is None
            or record.kind is not ChallengeKind.CODE
            or user is None
            or not user.active
        ):
            msg = "unknown or used login challenge"
            raise ChallengeExpired(msg, reason="unknown")
        record.check_usable(w.now, settings.challenge_max_attempts, settings.challenge_ttl)
        keys = w.tx.security_keys_of(user.id)
        if not keys:
            msg = "the user has no security key"
            raise NotAllowed(msg, reason="no_security_key", rule="R103")
        remaining = record.expires_at - w.now
        return assertion_options(passkeys, login_challenge(token), keys, _ms(remaining))


def login_with_key(context: Context, token: str, assertion: object, client: str | None) -> LoggedIn:
    """R103: step 2 with a security key: counted, throttled and single-use like a code."""
    passkeys = _passkeys(context)
    parsed = parse_assertion(assertion)
    proof = _key_proof(passkeys, parsed, login_challenge(token))
    load = _LoadChallenge(context.settings, token_hash(token), client)
    return present_code(context, proof, load, partial(_logged_in, context.settings))
