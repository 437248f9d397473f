"""One path for every code (R1, R4-R6, R10, R31, R40, R5, R103): :func:`present_code`.

Every operation that takes a code (login step 2, an enrolment's first code, turning 2FA
off, starting a reset, new backup codes) or a security key's assertion (login step 2,
removing a key: a :class:`KeyProof`) goes through it, in this order:

1. a malformed code is refused before any I/O;
2. inside a write transaction, the caller loads who presents the code (a session or a
   login challenge) and the policy is asked;
3. a dead challenge, a blocked throttle key or a missing enrolment refuses the attempt,
   with an audit event, and nothing slow has been done: no Argon2, no new backup codes;
4. the attempt counts against the user's throttle (and the client's, and the challenge's)
   *before* the code is checked;
5. the code is checked; a wrong one is audited and its count stays, a right one is
   used (replay protection, R4/R5) and its count is taken back.

An OTP that needs no new backup codes (the common login), and an assertion (one
signature checked), do all of this in one transaction. Otherwise step 4 commits first,
and the slow work follows outside any lock: a backup code's one Argon2 hash, then, only
if the code is right, the new backup codes; step 5 then runs in a second transaction,
which reloads everything.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple, TypeVar

from ._audit import AuditAction, Outcome
from ._codes import (
    CodeKind,
    ParsedCode,
    hash_backup_code,
    make_backup_codes,
    matching_step,
    open_totp_key,
    parse_code,
)
from ._domain import Account, BackupCodeSet, ChallengeKind, LoginChallenge, SecurityKey, User
from ._errors import InvalidCode, Throttled, TwoStepError
from ._results import BackupCodes
from ._settings import Settings
from ._throttling import Counter, admit, blocked, settle, withdraw
from ._unit_of_work import Context, KeepAndRaise, Work

__all__ = [
    "Against",
    "CodeAttempt",
    "KeyProof",
    "NewCodes",
    "Passed",
    "new_backup_codes",
    "present_code",
]

R = TypeVar("R")


class Against(enum.Enum):
    """What a code is checked against."""

    CONFIRMED = "confirmed"  # the secret and backup codes of 2FA that is on (R1, R5)
    PENDING = "pending"  # the new secret of an enrolment waiting for its first code (R10)


class CodeAttempt(NamedTuple):
    """Who presents a code, what it is checked against, and what it counts against.

    (Named tuples here and below: one of each is made on every code login.)
    """

    user: User
    account: Account
    audit_as: AuditAction
    against: Against
    counters: tuple[Counter, ...]  # the user's key first
    challenge: LoginChallenge | None = None
    #: A right code comes with a fresh set of backup codes (R10, R5), made outside any lock.
    new_codes: bool = False


class NewCodes(NamedTuple):
    """A fresh set of backup codes: to show once, and to store (hashed)."""

    shown: BackupCodes
    stored: BackupCodeSet


class Passed(NamedTuple):
    """A code that passed: the user with it used, or with the enrolment confirmed."""

    user: User
    how: str  # "otp", "backup_code" or "enrolled"
    new_codes: NewCodes | None


class KeyProof(NamedTuple):
    """A security key's assertion (R103), parsed and well formed, to check like a code.

    ``credential_id`` names the key (base64url); ``verify`` checks the assertion's
    signature, challenge, origin and relying party against a stored key, returning the
    authenticator's new sign count, or raises :class:`InvalidCode`.
    """

    credential_id: str
    verify: Callable[[SecurityKey], int]

    def __repr__(self) -> str:
        return "KeyProof(<hidden>)"


class _Proof(NamedTuple):
    """A code, and for a backup code its digest under the salt of the user's set."""

    code: ParsedCode | KeyProof
    digest: bytes | None = None
    salt: bytes | None = None


def new_backup_codes(settings: Settings) -> NewCodes:
    shown, stored = make_backup_codes(settings.backup_code_count, settings.backup_code_hash)
    return NewCodes(BackupCodes(shown), stored)


def present_code(
    context: Context,
    code: object,
    load: Callable[[Work], CodeAttempt],
    apply: Callable[[Work, CodeAttempt, Passed], R],
) -> R:
    """Check ``code`` for the attempt ``load`` finds, then ``apply`` what it allows.

    ``load`` runs inside each transaction: it finds the session or the challenge and
    asks the policy, raising a typed error otherwise. ``apply`` runs in the transaction
    that used the code, and saves the user. A :class:`KeyProof` is checked in one
    transaction; it never comes with new backup codes.
    """
    parsed = code if isinstance(code, KeyProof) else parse_code(code, context.settings.totp_digits)
    with context.work() as w:
        attempt = load(w)
        one_pass = isinstance(parsed, KeyProof) or (
            parsed.kind == CodeKind.OTP and not attempt.new_codes
        )
        _admit(w, attempt, context.settings, count=not one_pass)
        if one_pass:
            passed = _check(context, w, attempt, _Proof(parsed), None, counted=False)
            return apply(w, attempt, passed)
    # Counted and committed: the slow work below runs outside any lock.
    assert isinstance(parsed, ParsedCode)  # a KeyProof took one pass
    proof = _prove(context.settings, parsed, attempt.user)
    made = None
    if attempt.new_codes and _passes(context, attempt.user, attempt.against, proof):
        made = new_backup_codes(context.settings)
    with context.work() as w:
        attempt = load(w)
        passed = _check(context, w, attempt, proof, made, counted=True)
        return apply(w, attempt, passed)


def _admit(w: Work, attempt: CodeAttempt, settings: Settings, *, count: bool) -> None:
    """Refuse a dead challenge, a throttled user or a missing enrolment; else count."""
    try:
        if attempt.challenge is not None:
            challenge = attempt.challenge
            lifetime = (
                settings.enrollment_ttl
                if challenge.kind is ChallengeKind.ENROLLMENT
                else settings.challenge_ttl
            )
            challenge.check_usable(w.now, settings.challenge_max_attempts, lifetime)
        throttled = blocked(w, attempt.counters)
        if throttled is not None:
            raise throttled
        if attempt.against is Against.PENDING:
            attempt.user.pending_secret(w.now, settings.enrollment_ttl)
    except TwoStepError as refusal:
        _refuse(w, attempt, refusal)
    if count:
        admit(w, attempt.counters)
    if count and attempt.challenge is not None:
        # Counted on the challenge in advance: parallel codes cannot pass its limit.
        w.tx.put_challenge(attempt.challenge.with_failure())


def _check(
    context: Context,
    w: Work,
    attempt: CodeAttempt,
    proof: _Proof,
    made: NewCodes | None,
    *,
    counted: bool,
) -> Passed:
    """Check the code under the lock; a right one is used, a wrong one counted and audited."""
    user = attempt.user
    try:
        if attempt.against is Against.PENDING:
            step = _pending_step(context, user, proof, w.now)
            # Rarely, a code refused by the check outside the lock passes here (the clock
            # moved on a time step): then the new codes are made under the lock.
            made = made or new_backup_codes(context.settings)
            lifetime = context.settings.enrollment_ttl
            confirmed = user.confirm_enrollment(step, made.stored, w.now, lifetime)
            passed = Passed(confirmed, "enrolled", made)
        elif isinstance(proof.code, KeyProof):
            _use_key(w, attempt, proof.code)
            passed = Passed(user, "security_key", made)
        else:
            passed = Passed(_use_code(context, user, proof, w.now), _how(proof), made)
    except InvalidCode as wrong:
        settle(w, attempt.counters, ok=False, admitted=counted)
        if attempt.challenge is not None and not counted:
            w.tx.put_challenge(attempt.challenge.with_failure())
        if attempt.challenge is not None:
            # The challenge's count includes this attempt once counted, in advance or now.
            attempts = attempt.challenge.attempts + (0 if counted else 1)
            wrong.attempts_left = max(0, context.settings.challenge_max_attempts - attempts)
        _refuse(w, attempt, wrong)
    except TwoStepError as refusal:  # e.g. the enrolment expired during the slow work
        if counted:
            withdraw(w, attempt.counters)
        _refuse(w, attempt, refusal)
    settle(w, attempt.counters, ok=True, admitted=counted)
    if attempt.challenge is not None:
        w.tx.delete_challenge(attempt.challenge.token_hash)
    return passed


def _refuse(w: Work, attempt: CodeAttempt, refusal: TwoStepError) -> None:
    """Audit a refusal (R60) and raise it once what was written is committed."""
    throttled = isinstance(refusal, Throttled)
    w.audit(
        attempt.audit_as,
        Outcome.THROTTLED if throttled else Outcome.FAILURE,
        account_id=attempt.account.id,
        actor_id=attempt.user.id,
        target_id=attempt.user.id,
        reason=refusal.scope if isinstance(refusal, Throttled) else refusal.reason,
    )
    raise KeepAndRaise(refusal)


def _use_key(w: Work, attempt: CodeAttempt, proof: KeyProof) -> None:
    """R103/R104: a right assertion of one of the user's keys; its sign count recorded."""
    key = w.tx.find_security_key(proof.credential_id)
    if attempt.against is not Against.CONFIRMED or key is None or key.user_id != attempt.user.id:
        msg = "the security key is not valid"
        raise InvalidCode(msg, reason="wrong")
    w.tx.put_security_key(key.used(proof.verify(key), w.now))


def _how(proof: _Proof) -> str:
    code = proof.code
    return "otp" if isinstance(code, ParsedCode) and code.kind == CodeKind.OTP else "backup_code"


def _prove(settings: Settings, code: ParsedCode, user: User) -> _Proof:
    """For a backup code, its one slow hash under the salt of the user's set."""
    codes = user.backup_codes
    if code.kind != CodeKind.BACKUP or codes is None:
        return _Proof(code)
    digest = hash_backup_code(code.value, codes.salt, settings.backup_code_hash)
    return _Proof(code, digest, codes.salt)


def _passes(context: Context, user: User, against: Against, proof: _Proof) -> bool:
    """A dry run of the check, outside any lock and writing nothing."""
    now = context.clock.now()
    try:
        if against is Against.PENDING:
            _pending_step(context, user, proof, now)
        else:
            _use_code(context, user, proof, now)
    except TwoStepError:
        return False
    return True


def _use_code(context: Context, user: User, proof: _Proof, now: datetime) -> User:
    """R1/R4/R5: the user with the code used, if it is right for their confirmed 2FA."""
    state = user.two_factor
    codes = user.backup_codes
    code = proof.code
    if isinstance(code, ParsedCode) and code.kind == CodeKind.OTP and state.secret is not None:
        key = open_totp_key(context.cipher, user.id, state.secret)
        step = matching_step(key, code.value, now, context.settings)
        if step is not None:
            return user.accept_step(step)
    # A digest made under another salt (the set was regenerated since) cannot match.
    elif codes is not None and proof.digest is not None and proof.salt == codes.salt:
        index = codes.match(proof.digest)
        if index is not None:
            return user.use_backup_code(index)
    msg = "the code is not valid"
    raise InvalidCode(msg, reason="wrong")


def _pending_step(context: Context, user: User, proof: _Proof, now: datetime) -> int:
    """R10: the time step of a right code from the app being enrolled."""
    sealed = user.pending_secret(now, context.settings.enrollment_ttl)
    if isinstance(proof.code, ParsedCode) and proof.code.kind == CodeKind.OTP:
        key = open_totp_key(context.cipher, user.id, sealed)
        step = matching_step(key, proof.code.value, now, context.settings)
        if step is not None:
            return step
    msg = "the code is not valid for the new secret"
    raise InvalidCode(msg, reason="wrong")
