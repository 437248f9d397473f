"""Logging in (R1-R6): the password step, the code step, the enrolment step, sessions."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import NoReturn

from .. import _validate as check
from .._audit import AuditAction, Outcome
from .._code_check import Against, CodeAttempt, Passed, present_code
from .._domain import Account, ChallengeKind, LoginChallenge, User, email_key
from .._errors import ChallengeExpired, InvalidCredentials
from .._results import CodeRequired, EnrollmentRequired, LoggedIn, LoginStep, Session
from .._sessions import (
    authenticate,
    issue_session,
    new_token,
    session_token,
    session_value,
    token_hash,
)
from .._settings import Settings
from .._throttling import (
    Counter,
    admit,
    blocked,
    code_counters,
    password_counters,
    settle,
)
from .._unit_of_work import Context, KeepAndRaise, Work
from ._shared import new_enrollment

__all__ = ["check_session", "complete_login", "login", "logout"]


def login(
    context: Context, email: object, password: object, client: object, device: object = None
) -> LoginStep:
    """Step 1: email and password; what comes next depends on the user (R1-R3, R6, R98)."""
    key = email_key(check.login_email(email))
    given = check.password(password, context.settings, new=False)
    client_key = check.client(client)
    device_hash = None if device is None else token_hash(check.token(device, "device"))

    # Admitted in a commit of its own before the password is checked (R71): in flight
    # on the email's and the client's counters, so that parallel guesses cannot slip
    # past them. A store failure later leaves it in flight, never counted as a failure.
    with context.work() as w:
        user = w.tx.find_user_by_email(key)
        counters = password_counters(w, context.settings, key, client_key)
        throttled = blocked(w, counters)
        if throttled is not None:
            _audit_failure(w, user, Outcome.THROTTLED, reason=throttled.scope)
            raise KeepAndRaise(throttled)
        admit(w, counters)

    # The slow hash, outside any lock; an unknown email pays for a dummy one.
    ok = context.passwords.verify(user.password_hash if user else None, given)
    new_hash = None
    if ok and user is not None and context.passwords.needs_rehash(user.password_hash):
        new_hash = context.passwords.hash(given)

    with context.work() as w:
        current = w.tx.get_user(user.id) if user is not None else None
        if not ok or current is None or not current.active:
            settle(w, counters, ok=False, admitted=True)
            _audit_failure(w, user, Outcome.FAILURE, reason="invalid_credentials")
            raise KeepAndRaise(InvalidCredentials("email or password is wrong"))
        settle(w, counters, ok=True, admitted=True)
        if new_hash is not None:
            current = current.with_password_hash(new_hash)
            w.tx.put_user(current)
        account = w.tx.get_account(current.account_id)
        assert account is not None  # users reference their account
        return _after_password(context, w, current, account, device_hash)


def _audit_failure(w: Work, user: User | None, outcome: Outcome, *, reason: str) -> None:
    w.audit(
        AuditAction.LOGIN,
        outcome,
        account_id=user.account_id if user is not None else None,
        actor_id=user.id if user is not None else None,
        actor="user" if user is not None else "anonymous",
        reason=reason,
    )


def _after_password(
    context: Context, w: Work, user: User, account: Account, device_hash: str | None = None
) -> LoginStep:
    """What follows a right password: a code, an enrolment or a session.

    R1: a code next (R98: unless the device is remembered); R3: an enrolment next; R2,
    R95: a session now (inside a grace period, with its deadline).
    """
    settings = context.settings
    if user.has_second_factor:
        if device_hash is not None and _remembered(w, settings, user, account, device_hash):
            session = issue_session(w, settings, user, account)
            w.audit(
                AuditAction.LOGIN,
                Outcome.SUCCESS,
                account_id=account.id,
                actor_id=user.id,
                reason="remembered_device",
            )
            return LoggedIn(session)
        token = _new_challenge(w, user, ChallengeKind.CODE, settings.challenge_ttl)
        w.audit(
            AuditAction.LOGIN_PASSWORD, Outcome.SUCCESS, account_id=account.id, actor_id=user.id
        )
        return CodeRequired(token, w.now + settings.challenge_ttl, user.second_factors)
    if not account.admits(user, w.now):
        user, enrollment = new_enrollment(context, w, user)
        w.tx.put_user(user)
        token = _new_challenge(w, user, ChallengeKind.ENROLLMENT, settings.enrollment_ttl)
        w.audit(
            AuditAction.ENROLLMENT_STARTED,
            Outcome.SUCCESS,
            account_id=account.id,
            actor_id=user.id,
            target_id=user.id,
            reason="required_at_login",
        )
        return EnrollmentRequired(token, enrollment, enrollment.expires_at)
    session = issue_session(w, settings, user, account)
    w.audit(AuditAction.LOGIN, Outcome.SUCCESS, account_id=account.id, actor_id=user.id)
    return LoggedIn(session)


def _remembered(
    w: Work, settings: Settings, user: User, account: Account, device_hash: str
) -> bool:
    """R98: whether the device stands in for the user's code; its use is recorded."""
    device = w.tx.get_device(device_hash)
    if device is None or not device.admits(w.now, settings.remember_device_for, user, account):
        return False
    w.tx.put_device(device._replace(last_used_at=w.now))
    return True


def _new_challenge(w: Work, user: User, kind: ChallengeKind, ttl: timedelta) -> str:
    token, hashed = new_token()
    w.tx.put_challenge(
        LoginChallenge(
            token_hash=hashed,
            user_id=user.id,
            kind=kind,
            created_at=w.now,
            expires_at=w.now + ttl,
        )
    )
    return token


def complete_login(context: Context, token: str, code: object, client: str | None) -> LoggedIn:
    """Step 2: a code for a user with 2FA (R1, R4-R6), or an enrolment's first code (R3)."""
    load = _LoadChallenge(context.settings, token_hash(token), client)
    return present_code(context, code, load, partial(_logged_in, context.settings))


_LOGIN_KINDS = frozenset({ChallengeKind.CODE, ChallengeKind.ENROLLMENT})


class _LoadChallenge:
    """Finds a login challenge, its user and its account, inside each transaction."""

    __slots__ = ("_client", "_hash", "_settings")

    def __init__(self, settings: Settings, hashed: str, client: str | None) -> None:
        self._settings = settings
        self._hash = hashed
        self._client = client

    def __call__(self, w: Work) -> CodeAttempt:
        record = w.tx.get_challenge(self._hash)
        # A password reset token (R86) or a security key's challenge (R101, R106) is no
        # login challenge.
        if record is None or record.kind not in _LOGIN_KINDS:
            _audit_failure(w, None, Outcome.FAILURE, reason="unknown")
            raise KeepAndRaise(
                ChallengeExpired("unknown or used login challenge", reason="unknown")
            )
        user = w.tx.get_user(record.user_id)
        account = w.tx.get_account(user.account_id) if user is not None else None
        if user is None or account is None or not user.active:
            return self._dead(w, user)
        counters = code_counters(self._settings, user.id, self._client)
        if record.kind is ChallengeKind.CODE:
            return _code_step(record, user, account, counters)
        # An enrolment-at-login must not confirm a later enrolment (e.g. a reset).
        if user.two_factor.enabled:
            self._dead(w, user)
        return _enrollment_step(record, user, account, counters)

    def _dead(self, w: Work, user: User | None) -> NoReturn:
        w.tx.delete_challenge(self._hash)
        _audit_failure(w, user, Outcome.FAILURE, reason="unknown")
        raise KeepAndRaise(ChallengeExpired("the login is no longer valid", reason="unknown"))


def _code_step(
    record: LoginChallenge, user: User, account: Account, counters: tuple[Counter, ...]
) -> CodeAttempt:
    """R1/R5: the code of a user with 2FA, an OTP or a backup code."""
    return CodeAttempt(user, account, AuditAction.LOGIN, Against.CONFIRMED, counters, record)


def _enrollment_step(
    record: LoginChallenge, user: User, account: Account, counters: tuple[Counter, ...]
) -> CodeAttempt:
    """R3: the first code of the app being enrolled inside the login, with new backup codes."""
    return CodeAttempt(
        user, account, AuditAction.LOGIN, Against.PENDING, counters, record, new_codes=True
    )


def _logged_in(settings: Settings, w: Work, attempt: CodeAttempt, passed: Passed) -> LoggedIn:
    """The code passed: save the user and give them a session."""
    user, account = passed.user, attempt.account
    w.tx.put_user(user)
    session = issue_session(w, settings, user, account, second_factor_at=w.now)
    if passed.how == "enrolled":
        w.audit(
            AuditAction.TWO_FACTOR_ENABLED,
            Outcome.SUCCESS,
            account_id=account.id,
            actor_id=user.id,
            target_id=user.id,
        )
    # One event per session born; its reason names the second step that was passed.
    w.audit(
        AuditAction.LOGIN,
        Outcome.SUCCESS,
        account_id=account.id,
        actor_id=user.id,
        reason=passed.how,
    )
    shown = passed.new_codes.shown if passed.new_codes is not None else None
    return LoggedIn(session, shown)


def check_session(context: Context, session: object) -> Session:
    """The session behind a token, if it is still valid (R21, R41)."""
    token = session_token(session)
    with context.work(write=False) as w:
        actor = authenticate(w, context.settings, token)
        return session_value(token, actor.record, actor.user, actor.account)


def logout(context: Context, session: object) -> None:
    """End one session; an unknown or ended one is no error."""
    token = session_token(session)
    with context.work() as w:
        record = w.tx.get_session(token_hash(token))
        if record is not None:
            w.tx.delete_session(record.token_hash)
            w.audit(
                AuditAction.LOGOUT,
                Outcome.SUCCESS,
                account_id=record.account_id,
                actor_id=record.user_id,
            )
