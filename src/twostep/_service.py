"""``TwoStep``: the application service, one method per user story of the rules.

Each method loads what it needs inside one store transaction, asks the policy,
calls the domain, saves, records audit events and commits. Slow work (Argon2)
runs outside write transactions, so that no lock is held while hashing.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import NamedTuple, TypeVar

from . import _validate as check
from ._clock import Clock, SystemClock
from ._codes import (
    CodeKind,
    ParsedCode,
    hash_backup_code,
    make_backup_codes,
    matching_step,
    new_secret,
    parse_code,
    secret_key,
)
from ._audit import AuditEvent, Outcome
from ._crypto import AESGCMKeyring, Cipher
from ._domain import (
    Account,
    BackupCodeSet,
    ChallengeKind,
    LoginChallenge,
    Role,
    SessionRecord,
    ThrottleState,
    User,
    email_key,
)
from ._errors import (
    ChallengeExpired,
    InvalidCode,
    InvalidCredentials,
    InvalidInput,
    NotAllowed,
    SessionInvalid,
    Throttled,
    TwoStepError,
    UnknownAccount,
    UnknownUser,
)
from ._passwords import Passwords
from ._policy import Action, decide
from ._provisioning import Enrollment, provisioning_uri
from ._results import (
    AccountOverview,
    BackupCodes,
    CodeRequired,
    EnrollmentRequired,
    LoggedIn,
    LoginStep,
    Session,
    TwoFactorStatus,
    UserOverview,
)
from ._settings import Settings, ThrottleSettings
from ._store import Store, Transaction

__all__ = ["TwoStep"]

EventHook = Callable[[AuditEvent], None]
SessionRef = str | Session
T = TypeVar("T")
R = TypeVar("R")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> tuple[str, str]:
    token = os.urandom(32).hex()  # 256 bits; what secrets.token_hex does, less two calls
    return token, _token_hash(token)


def _new_id() -> str:
    import uuid  # imported when first needed: it costs `import twostep` several ms

    return uuid.uuid4().hex


#: Sealed TOTP secrets hold the raw key after this byte (earlier ones, the base32 text).
_RAW_KEY = b"\0"


def _secret_context(user_id: str) -> bytes:
    # Binds a sealed secret to its user: a secret copied to another row will not open.
    return f"twostep:totp:{user_id}".encode()


class _Keep(Exception):
    """Raised inside a unit of work: commit what was written, then raise ``error``."""

    def __init__(self, error: TwoStepError) -> None:
        self.error = error


class _Work:
    """What a unit of work's code sees: the transaction, its time, the events it wrote."""

    __slots__ = ("events", "now", "tx")

    def __init__(self, tx: Transaction, now: datetime) -> None:
        self.tx = tx
        self.now = now
        self.events: list[AuditEvent] = []

    def audit(
        self,
        action: str,
        outcome: Outcome,
        *,
        account_id: str | None,
        actor_id: str | None,
        target_id: str | None = None,
        reason: str | None = None,
        actor: str = "user",
    ) -> None:
        # Positional, in AuditEvent's field order: this runs in every unit of work.
        event = AuditEvent(
            self.now, action, outcome, account_id, actor_id, target_id, reason, actor
        )
        self.tx.add_audit(event)
        self.events.append(event)


@dataclass(frozen=True, slots=True)
class _Actor:
    record: SessionRecord
    user: User
    account: Account


class _Proof(NamedTuple):
    """A code parsed, and for a backup code its digest, computed before the lock."""

    code: ParsedCode
    digest: bytes | None = None
    salt: bytes | None = None


_STEPS_WITH_CHALLENGE = (CodeRequired, EnrollmentRequired)


class _UnitOfWork:
    """One store transaction with the time it runs at and the audit events it writes.

    It commits when its block ends, or raises ``_Keep``; any other error rolls back.
    Events are published only once committed. (A class, not a generator: it runs
    on every request.)
    """

    __slots__ = ("_service", "_transaction", "_work", "_write")

    def __init__(self, service: TwoStep, write: bool) -> None:
        self._service = service
        self._write = write

    def __enter__(self) -> _Work:
        self._transaction = self._service._store.transaction(write=self._write)
        self._work = _Work(self._transaction.__enter__(), self._service._clock.now())
        return self._work

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, _Keep):
            self._transaction.__exit__(None, None, None)  # commit what was written
            self._publish_all()
            raise error.error from None
        self._transaction.__exit__(kind, error, traceback)
        if error is None:
            self._publish_all()

    def _publish_all(self) -> None:
        for event in self._work.events:
            self._service._publish(event)


class TwoStep:
    """Password + TOTP two-step login for the users of an account (R1-R61).

    ``store`` keeps the state (``SQLiteStore`` is the embedded default), ``issuer``
    names the installation in authenticator apps. ``cipher`` seals TOTP secrets at
    rest; by default keys come from ``TWOSTEP_KEYS`` or ``TWOSTEP_KEY_FILE`` and
    ``twostep`` refuses to start without one. ``on_event`` is called with every audit
    event after it is committed (e.g. to email a user whose 2FA was turned off).
    """

    def __init__(
        self,
        store: Store,
        *,
        issuer: str,
        clock: Clock | None = None,
        settings: Settings | None = None,
        cipher: Cipher | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        self._store = store
        self.issuer = check.text(issuer, "issuer", check.MAX_NAME)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.settings = settings if settings is not None else Settings()
        self._cipher: Cipher = cipher if cipher is not None else AESGCMKeyring.from_environment()
        self._on_event = on_event
        self._passwords = Passwords(self.settings.password_hash)

    def __repr__(self) -> str:
        return f"TwoStep(store={self._store!r}, issuer={self.issuer!r})"

    # -- units of work --------------------------------------------------------------

    def _work(self, *, write: bool = True) -> _UnitOfWork:
        return _UnitOfWork(self, write)

    def _publish(self, event: AuditEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a host's hook must not break a login that is committed
            import logging  # only here: importing it would slow down `import twostep`

            logging.getLogger("twostep").exception("twostep event hook failed for %s", event.action)

    # -- throttling (R6) -------------------------------------------------------------

    def _retry_after(self, w: _Work, key: str) -> int | None:
        state = w.tx.get_throttle(key)
        if state is None or state.blocked_until is None or w.now >= state.blocked_until:
            return None
        return max(1, math.ceil((state.blocked_until - w.now).total_seconds()))

    def _throttle_check(
        self,
        w: _Work,
        keys: list[str],
        *,
        action: str,
        account_id: str | None,
        actor_id: str | None,
    ) -> None:
        """Raise ``Throttled`` (committing its audit event) if any key is blocked."""
        for key in keys:
            wait = self._retry_after(w, key)
            if wait is not None:
                w.audit(
                    action,
                    Outcome.THROTTLED,
                    account_id=account_id,
                    actor_id=actor_id,
                    actor="user" if actor_id else "anonymous",
                    reason=key.partition(":")[0],
                )
                raise _Keep(
                    Throttled(
                        f"too many failed attempts; try again in {wait} s",
                        retry_after=wait,
                        scope=key.partition(":")[0],
                    )
                )

    def _throttle_fail(self, w: _Work, key: str, conf: ThrottleSettings) -> None:
        state = w.tx.get_throttle(key)
        if state is None or w.now - state.last_failure_at > conf.forget_after:
            failures = 1
        else:
            failures = state.failures + 1
        delay = conf.delay(failures)
        blocked = w.now + delay if delay else None
        w.tx.put_throttle(ThrottleState(key, failures, blocked, w.now))

    def _throttle_undo(self, w: _Work, key: str, conf: ThrottleSettings) -> None:
        """Take back one failure counted in advance for an attempt that succeeded."""
        state = w.tx.get_throttle(key)
        if state is None:
            return
        if state.failures <= 1:
            w.tx.delete_throttle(key)
            return
        failures = state.failures - 1
        delay = conf.delay(failures)
        blocked = state.last_failure_at + delay if delay else None
        w.tx.put_throttle(ThrottleState(key, failures, blocked, state.last_failure_at))

    def _code_keys(self, user_id: str, client: str | None) -> list[tuple[str, ThrottleSettings]]:
        keys = [(f"user:{user_id}", self.settings.code_throttle)]
        if client is not None:
            keys.append((f"client:{client}", self.settings.client_throttle))
        return keys

    # -- sessions (R21, R41) ------------------------------------------------------------

    def _issue_session(self, w: _Work, user: User, account: Account) -> Session:
        """The one place sessions are born: it refuses a user who lacks required 2FA."""
        if account.two_factor_required and not user.two_factor.enabled:
            raise NotAllowed(
                "the account requires 2FA and this user has none",
                reason="two_factor_required",
                rule="R3",
            )
        token, token_hash = _new_token()
        record = SessionRecord(
            token_hash=token_hash,
            user_id=user.id,
            account_id=account.id,
            issued_at=w.now,
            expires_at=w.now + self.settings.session_ttl,
            account_generation=account.session_generation,
            user_generation=user.session_generation,
        )
        w.tx.put_session(record)
        return self._session_value(token, record, user)

    @staticmethod
    def _session_value(token: str, record: SessionRecord, user: User) -> Session:
        return Session(
            token=token,
            user_id=user.id,
            account_id=user.account_id,
            email=user.email,
            role=user.role,
            issued_at=record.issued_at,
            expires_at=record.expires_at,
            two_factor_enabled=user.two_factor.enabled,
        )

    @staticmethod
    def _token_of(session: object) -> str:
        token = session.token if isinstance(session, Session) else session
        # Tokens are ASCII (token_urlsafe); anything else, e.g. a lone surrogate, cannot be one.
        if (
            not isinstance(token, str)
            or not token
            or len(token) > check.MAX_TOKEN
            or not token.isascii()
        ):
            raise SessionInvalid("not a session token", reason="unknown")
        return token

    def _authenticate(self, w: _Work, session: object) -> _Actor:
        """The actor behind a session, checked as on every request (R21, R41)."""
        record = w.tx.get_session(_token_hash(self._token_of(session)))
        if record is None:
            raise SessionInvalid("unknown or logged-out session", reason="unknown")
        if w.now >= record.expires_at:
            raise SessionInvalid("the session expired", reason="expired")
        user = w.tx.get_user(record.user_id)
        account = w.tx.get_account(record.account_id)
        if (
            user is None
            or account is None
            or not user.active
            or record.user_generation != user.session_generation
            or record.account_generation != account.session_generation
        ):
            raise SessionInvalid("the session was revoked", reason="revoked")
        if account.two_factor_required and not user.two_factor.enabled:
            raise SessionInvalid(
                "the account requires 2FA; log in again to set it up",
                reason="two_factor_required",
            )
        return _Actor(record, user, account)

    def _enforce(self, w: _Work, action: Action, actor: _Actor, target: User | None = None) -> None:
        decision = decide(action, actor.user, actor.account, target)
        if not decision.allowed:
            w.audit(
                action.value,
                Outcome.DENIED,
                account_id=actor.account.id,
                actor_id=actor.user.id,
                target_id=target.id if target is not None else None,
                reason=decision.reason,
            )
            raise _Keep(
                NotAllowed(
                    f"{action.value} is not allowed: {decision.reason} ({decision.rule})",
                    reason=decision.reason,
                    rule=decision.rule,
                )
            )

    # -- codes -----------------------------------------------------------------------------

    def _seal(self, user_id: str, key: bytes) -> str:
        """A TOTP key sealed for its user: the raw key after a zero byte."""
        return self._cipher.seal(_RAW_KEY + key, context=_secret_context(user_id))

    def _open(self, user_id: str, sealed: str) -> bytes:
        """The TOTP key of a sealed secret: raw, or (sealed before) its base32 text."""
        plain = self._cipher.open(sealed, context=_secret_context(user_id))
        if plain[:1] == _RAW_KEY:
            return plain[1:]
        return secret_key(plain.decode())  # base32 text never starts with a zero byte

    def _prove(self, code: object, user: User | None) -> _Proof:
        """Parse a code; for a backup code, pay its one slow hash now, outside any lock."""
        parsed = (
            code if isinstance(code, ParsedCode) else parse_code(code, self.settings.totp_digits)
        )
        if parsed.kind != CodeKind.BACKUP or user is None or user.backup_codes is None:
            return _Proof(parsed)
        salt = user.backup_codes.salt
        digest = hash_backup_code(parsed.value, salt, self.settings.backup_code_hash)
        return _Proof(parsed, digest, salt)

    def _use_code(self, user: User, proof: _Proof, now: datetime) -> User:
        """R1/R4/R5: check a code against the confirmed 2FA; return the user with it used."""
        state = user.two_factor
        if proof.code.kind == CodeKind.OTP and state.secret is not None:
            secret = self._open(user.id, state.secret)
            step = matching_step(secret, proof.code.value, now, self.settings)
            if step is not None:
                return user.accept_step(step)
        elif (
            proof.code.kind == CodeKind.BACKUP
            and user.backup_codes is not None
            and proof.digest is not None
            # A digest made under another salt (the set was regenerated since) cannot match.
            and proof.salt == user.backup_codes.salt
        ):
            index = user.backup_codes.match(proof.digest)
            if index is not None:
                return user.use_backup_code(index)
        raise InvalidCode("the code is not valid", reason="wrong")

    def _pending_step(self, user: User, proof: _Proof, now: datetime) -> int:
        """R10: the time step of a correct code from the app being enrolled."""
        sealed = user.pending_secret(now)
        if proof.code.kind == CodeKind.OTP:
            secret = self._open(user.id, sealed)
            step = matching_step(secret, proof.code.value, now, self.settings)
            if step is not None:
                return step
        raise InvalidCode("the code is not valid for the new secret", reason="wrong")

    def _new_codes(self) -> tuple[BackupCodes, BackupCodeSet]:
        shown, stored = make_backup_codes(
            self.settings.backup_code_count, self.settings.backup_code_hash
        )
        return BackupCodes(shown), stored

    def _code_failed(
        self,
        w: _Work,
        error: InvalidCode,
        *,
        action: str,
        user: User,
        client: str | None,
        keys_done: bool = False,
    ) -> _Keep:
        if not keys_done:
            for key, conf in self._code_keys(user.id, client):
                self._throttle_fail(w, key, conf)
        w.audit(
            action,
            Outcome.FAILURE,
            account_id=user.account_id,
            actor_id=user.id,
            target_id=user.id,
            reason=error.reason,
        )
        return _Keep(error)

    def _code_succeeded(self, w: _Work, user_id: str) -> None:
        w.tx.delete_throttle(f"user:{user_id}")

    def _new_enrollment(self, w: _Work, user: User) -> tuple[User, Enrollment]:
        secret = new_secret(self.settings)
        expires = w.now + self.settings.enrollment_ttl
        enrollment = Enrollment(
            secret=secret,
            uri=provisioning_uri(
                secret,
                issuer=self.issuer,
                label=user.email,
                digits=self.settings.totp_digits,
                period=self.settings.totp_period,
            ),
            issuer=self.issuer,
            label=user.email,
            expires_at=expires,
        )
        sealed = self._seal(user.id, secret_key(secret))
        return user.begin_enrollment(sealed, expires), enrollment

    # -- operators: accounts and users -------------------------------------------------

    def create_account(self, name: str) -> Account:
        """A new account (organisation), with no users yet."""
        name = check.text(name, "name", check.MAX_NAME)
        with self._work() as w:
            account = Account(id=_new_id(), name=name, created_at=w.now)
            w.tx.put_account(account)
            w.audit(
                "account_created",
                Outcome.SUCCESS,
                account_id=account.id,
                actor_id=None,
                actor="operator",
            )
            return account

    def create_user(
        self, account_id: str, email: str, password: str, role: Role | str = Role.MEMBER
    ) -> User:
        """A new user of an account; emails are unique across the installation."""
        account_id = check.identifier(account_id, "account_id")
        address = check.email(email)
        self._check_password(password, new=True)
        user_role = check.role(role)
        password_hash = self._passwords.hash(password)
        with self._work() as w:
            if w.tx.get_account(account_id) is None:
                raise UnknownAccount("no such account")
            user = User(
                id=_new_id(),
                account_id=account_id,
                email=address,
                role=user_role,
                password_hash=password_hash,
                created_at=w.now,
            )
            w.tx.add_user(user)
            w.audit(
                "user_created",
                Outcome.SUCCESS,
                account_id=account_id,
                actor_id=None,
                target_id=user.id,
                actor="operator",
            )
            return user

    def _check_password(self, password: object, *, new: bool) -> str:
        if not isinstance(password, str):
            raise InvalidInput("password must be a string", reason="invalid_password")
        if len(password) > self.settings.max_password_bytes or (
            len(password.encode("utf-8", "surrogatepass")) > self.settings.max_password_bytes
        ):
            raise InvalidInput("password is too long", reason="password_too_long")
        if not check.utf8(password):
            raise InvalidInput("password must be valid Unicode text", reason="invalid_password")
        if new and len(password) < self.settings.min_password_length:
            raise InvalidInput("password is too short", reason="password_too_short")
        return password

    # -- logging in (R1-R6) -------------------------------------------------------------

    def login(self, email: str, password: str, *, client: str | None = None) -> LoginStep:
        """Step 1: email and password. What comes next depends on the user (R1-R3).

        ``client`` is an optional key of the caller (e.g. an IP address) that is
        throttled too. Unknown emails, wrong passwords and deactivated users all
        raise :class:`InvalidCredentials`, after the same Argon2 work.
        """
        if (
            not isinstance(email, str)
            or not email.strip()
            or len(email) > check.MAX_EMAIL
            or not check.utf8(email)
        ):
            raise InvalidInput("email must be a non-empty string", reason="invalid_email")
        self._check_password(password, new=False)
        client = check.client(client)
        key = email_key(email)
        keys = [(f"email:{key}", self.settings.password_throttle)]
        if client is not None:
            keys.append((f"client:{client}", self.settings.client_throttle))

        # Count the attempt as a failure before checking it, so that parallel guesses
        # cannot slip past the throttle; a success clears the count again.
        with self._work() as w:
            user = w.tx.find_user_by_email(key)
            account_id = user.account_id if user is not None else None
            actor_id = user.id if user is not None else None
            self._throttle_check(
                w,
                [k for k, _ in keys],
                action="login",
                account_id=account_id,
                actor_id=actor_id,
            )
            for k, conf in keys:
                self._throttle_fail(w, k, conf)

        ok = self._passwords.verify(user.password_hash if user else None, password)
        new_hash = None
        if ok and user is not None and self._passwords.needs_rehash(user.password_hash):
            new_hash = self._passwords.hash(password)

        with self._work() as w:
            current = w.tx.get_user(user.id) if user is not None else None
            if not ok or current is None or not current.active:
                w.audit(
                    "login",
                    Outcome.FAILURE,
                    account_id=account_id,
                    actor_id=actor_id,
                    actor="user" if actor_id else "anonymous",
                    reason="invalid_credentials",
                )
                raise _Keep(InvalidCredentials("email or password is wrong"))
            # Success clears the email's count; the client's loses only this attempt,
            # so one good login does not wipe what a client spent guessing other emails.
            w.tx.delete_throttle(keys[0][0])
            for k, conf in keys[1:]:
                self._throttle_undo(w, k, conf)
            if new_hash is not None:
                current = current.with_password_hash(new_hash)
                w.tx.put_user(current)
            account = w.tx.get_account(current.account_id)
            assert account is not None  # users reference their account
            return self._after_password(w, current, account)

    def _after_password(self, w: _Work, user: User, account: Account) -> LoginStep:
        if user.two_factor.enabled:
            token = self._new_challenge(w, user, ChallengeKind.CODE, self.settings.challenge_ttl)
            w.audit("login_password", Outcome.SUCCESS, account_id=account.id, actor_id=user.id)
            return CodeRequired(token, w.now + self.settings.challenge_ttl)
        if account.two_factor_required:
            user, enrollment = self._new_enrollment(w, user)
            w.tx.put_user(user)
            token = self._new_challenge(
                w, user, ChallengeKind.ENROLLMENT, self.settings.enrollment_ttl
            )
            w.audit(
                "enrollment_started",
                Outcome.SUCCESS,
                account_id=account.id,
                actor_id=user.id,
                target_id=user.id,
                reason="required_at_login",
            )
            return EnrollmentRequired(token, enrollment, enrollment.expires_at)
        session = self._issue_session(w, user, account)
        w.audit("login", Outcome.SUCCESS, account_id=account.id, actor_id=user.id)
        return LoggedIn(session)

    def _new_challenge(self, w: _Work, user: User, kind: ChallengeKind, ttl: timedelta) -> str:
        token, token_hash = _new_token()
        w.tx.put_challenge(
            LoginChallenge(
                token_hash=token_hash,
                user_id=user.id,
                kind=kind,
                created_at=w.now,
                expires_at=w.now + ttl,
            )
        )
        return token

    def complete_login(
        self,
        challenge: str | CodeRequired | EnrollmentRequired,
        code: str,
        *,
        client: str | None = None,
    ) -> LoggedIn:
        """Step 2: an OTP or a backup code (R1, R4-R6), or the enrolment's first code (R3).

        After an enrolment, the result carries the new backup codes, to show once.
        """
        token = challenge.challenge if isinstance(challenge, _STEPS_WITH_CHALLENGE) else challenge
        if (
            not isinstance(token, str)
            or not token
            or len(token) > check.MAX_TOKEN
            or not token.isascii()
        ):
            raise ChallengeExpired("not a login challenge", reason="unknown")
        client = check.client(client)
        parsed = parse_code(code, self.settings.totp_digits)  # malformed: refuse before any I/O
        token_hash = _token_hash(token)

        proof = _Proof(parsed)
        if parsed.kind == CodeKind.BACKUP:
            # A backup code's one slow hash needs the user's salt: read it, hash outside any lock.
            with self._work(write=False) as w:
                found = w.tx.get_challenge(token_hash)
                user = w.tx.get_user(found.user_id) if found is not None else None
            proof = self._prove(parsed, user)
        # An OTP on a login challenge (the common case) takes one transaction. An
        # enrolment's first code is checked once outside the lock before the new backup
        # codes are hashed, so that only a correct code pays for them.
        codes: tuple[BackupCodes, BackupCodeSet] | None = None
        dry_run_done = False
        while True:  # at most twice: the second pass never hands the user back
            with self._work() as w:
                outcome = self._complete(w, token_hash, proof, codes, dry_run_done, client)
            if isinstance(outcome, LoggedIn):
                return outcome
            dry_run_done = True
            try:
                self._pending_step(outcome, proof, self._clock.now())
                codes = self._new_codes()
            except TwoStepError:
                codes = None  # the locked check below fails it and counts the failure

    def _complete(
        self,
        w: _Work,
        token_hash: str,
        proof: _Proof,
        codes: tuple[BackupCodes, BackupCodeSet] | None,
        dry_run_done: bool,
        client: str | None,
    ) -> LoggedIn | User:
        """The locked half of step 2; the user back means "dry-run this enrolment first"."""
        record = w.tx.get_challenge(token_hash)
        if record is None:
            raise ChallengeExpired("unknown or used login challenge", reason="unknown")
        record.check_usable(w.now, self.settings.challenge_max_attempts)
        user = w.tx.get_user(record.user_id)
        account = w.tx.get_account(user.account_id) if user is not None else None
        enrolling = record.kind is ChallengeKind.ENROLLMENT
        # An enrolment-at-login must not confirm a later enrolment (e.g. a reset).
        stale = enrolling and (user is None or user.two_factor.enabled)
        if user is None or account is None or not user.active or stale:
            w.tx.delete_challenge(token_hash)
            raise _Keep(ChallengeExpired("the login is no longer valid", reason="unknown"))
        if enrolling and not dry_run_done and proof.code.kind == CodeKind.OTP:
            return user  # nothing written: the caller checks the code outside the lock
        keys = self._code_keys(user.id, client)
        self._throttle_check(
            w,
            [k for k, _ in keys],
            action="login_code",
            account_id=user.account_id,
            actor_id=user.id,
        )
        try:
            if enrolling:
                step = self._pending_step(user, proof, w.now)
                shown, stored = codes if codes is not None else self._new_codes()
                user = user.confirm_enrollment(step, stored, w.now)
                how = "enrolled"
            else:
                user = self._use_code(user, proof, w.now)
                shown = None
                how = "otp" if proof.code.kind == CodeKind.OTP else "backup_code"
        except InvalidCode as error:
            failed = record.with_failure()
            w.tx.put_challenge(failed)
            error.attempts_left = self.settings.challenge_max_attempts - failed.attempts
            raise self._code_failed(
                w, error, action="login_code", user=user, client=client
            ) from None
        w.tx.put_user(user)
        w.tx.delete_challenge(token_hash)
        self._code_succeeded(w, user.id)
        session = self._issue_session(w, user, account)
        if enrolling:
            w.audit(
                "two_factor_enabled",
                Outcome.SUCCESS,
                account_id=account.id,
                actor_id=user.id,
                target_id=user.id,
            )
        # One event per session born; its reason names the second step that was passed.
        w.audit("login", Outcome.SUCCESS, account_id=account.id, actor_id=user.id, reason=how)
        return LoggedIn(session, shown)

    def check_session(self, session: SessionRef) -> Session:
        """The session behind a token, if it is still valid (R21, R41); else ``SessionInvalid``."""
        token = self._token_of(session)
        with self._work(write=False) as w:
            actor = self._authenticate(w, token)
            return self._session_value(token, actor.record, actor.user)

    def logout(self, session: SessionRef) -> None:
        """End one session. Logging out an unknown or ended session does nothing."""
        token = self._token_of(session)
        with self._work() as w:
            record = w.tx.get_session(_token_hash(token))
            if record is not None:
                w.tx.delete_session(record.token_hash)
                w.audit(
                    "logout", Outcome.SUCCESS, account_id=record.account_id, actor_id=record.user_id
                )

    # -- one's own 2FA (R5, R10, R11, R30-R32, R40) -------------------------------------

    def two_factor_status(self, session: SessionRef) -> TwoFactorStatus:
        """The actor's own 2FA: on or off, required or not, backup codes left (R5)."""
        with self._work(write=False) as w:
            actor = self._authenticate(w, session)
            return TwoFactorStatus(
                enabled=actor.user.two_factor.enabled,
                required_by_account=actor.account.two_factor_required,
                backup_codes_remaining=actor.user.backup_codes_remaining,
                enrollment_pending=actor.user.two_factor.pending_at(w.now),
            )

    def begin_enrollment(self, session: SessionRef) -> Enrollment:
        """R30: start turning 2FA on; nothing changes until :meth:`confirm_enrollment` (R11)."""
        with self._work() as w:
            actor = self._authenticate(w, session)
            self._enforce(w, Action.ENROLL, actor)
            user, enrollment = self._new_enrollment(w, actor.user)
            w.tx.put_user(user)
            w.audit(
                "enrollment_started",
                Outcome.SUCCESS,
                account_id=user.account_id,
                actor_id=user.id,
                target_id=user.id,
            )
            return enrollment

    def confirm_enrollment(self, session: SessionRef, code: str) -> BackupCodes:
        """R10/R40: a correct code from the app turns the new secret on; returns backup codes."""
        with self._work(write=False) as w:
            user = self._authenticate(w, session).user
        proof = self._prove(code, None)
        codes = None
        try:
            self._pending_step(user, proof, self._clock.now())
            codes = self._new_codes()
        except TwoStepError:
            pass
        with self._work() as w:
            actor = self._authenticate(w, session)
            user = actor.user
            resetting = user.two_factor.enabled
            if not resetting:
                self._enforce(w, Action.ENROLL, actor)
            self._throttle_check(
                w,
                [f"user:{user.id}"],
                action="enrollment_confirm",
                account_id=user.account_id,
                actor_id=user.id,
            )
            try:
                step = self._pending_step(user, proof, w.now)
            except InvalidCode as error:
                raise self._code_failed(
                    w, error, action="enrollment_confirm", user=user, client=None
                ) from None
            shown, stored = codes if codes is not None else self._new_codes()
            w.tx.put_user(user.confirm_enrollment(step, stored, w.now))
            self._code_succeeded(w, user.id)
            w.audit(
                "two_factor_reset" if resetting else "two_factor_enabled",
                Outcome.SUCCESS,
                account_id=user.account_id,
                actor_id=user.id,
                target_id=user.id,
                reason="new_device" if resetting else None,
            )
            return shown

    def _with_code(
        self,
        session: SessionRef,
        code: str,
        action: Action,
        apply: Callable[[_Work, User, T | None], tuple[User, R]],
        *,
        prepare: Callable[[], T] | None = None,
    ) -> R:
        """Check the session, the policy and a code (OTP or backup, R5), then ``apply``.

        ``prepare`` is slow work (new backup codes) done before the lock, and only
        when a dry run of the code check passes; ``apply`` gets its result, or
        ``None`` if it must do the work itself.
        """
        parse_code(code, self.settings.totp_digits)
        with self._work(write=False) as w:
            user = self._authenticate(w, session).user
        proof = self._prove(code, user)
        prepared: T | None = None
        if prepare is not None:
            try:
                self._use_code(user, proof, self._clock.now())
                prepared = prepare()
            except TwoStepError:
                pass
        with self._work() as w:
            actor = self._authenticate(w, session)
            self._enforce(w, action, actor)
            self._throttle_check(
                w,
                [f"user:{actor.user.id}"],
                action=action.value,
                account_id=actor.account.id,
                actor_id=actor.user.id,
            )
            try:
                user = self._use_code(actor.user, proof, w.now)
            except InvalidCode as error:
                raise self._code_failed(
                    w, error, action=action.value, user=actor.user, client=None
                ) from None
            self._code_succeeded(w, user.id)
            user, result = apply(w, user, prepared)
            w.tx.put_user(user)
            return result

    def disable_two_factor(self, session: SessionRef, code: str) -> None:
        """R31/R32: turn one's own 2FA off with a current code, when not required."""

        def apply(w: _Work, user: User, _: None) -> tuple[User, None]:
            w.audit(
                "two_factor_disabled",
                Outcome.SUCCESS,
                account_id=user.account_id,
                actor_id=user.id,
                target_id=user.id,
            )
            return user.without_two_factor(end_sessions=False), None

        self._with_code(session, code, Action.DISABLE, apply)

    def begin_reset(self, session: SessionRef, code: str) -> Enrollment:
        """R40: moving to a new phone when 2FA is required; the old one works until confirmed."""

        def apply(w: _Work, user: User, _: None) -> tuple[User, Enrollment]:
            user, enrollment = self._new_enrollment(w, user)
            w.audit(
                "reset_started",
                Outcome.SUCCESS,
                account_id=user.account_id,
                actor_id=user.id,
                target_id=user.id,
            )
            return user, enrollment

        return self._with_code(session, code, Action.RESET_SELF, apply)

    def regenerate_backup_codes(self, session: SessionRef, code: str) -> BackupCodes:
        """R5: replace every backup code with a fresh set, shown once."""

        def apply(
            w: _Work, user: User, made: tuple[BackupCodes, BackupCodeSet] | None
        ) -> tuple[User, BackupCodes]:
            shown, stored = made if made is not None else self._new_codes()
            w.audit(
                "backup_codes_regenerated",
                Outcome.SUCCESS,
                account_id=user.account_id,
                actor_id=user.id,
                target_id=user.id,
            )
            return user.with_backup_codes(stored), shown

        return self._with_code(
            session, code, Action.REGENERATE_BACKUP_CODES, apply, prepare=self._new_codes
        )

    # -- administration (R20-R22, R41, R50, R60) ------------------------------------------

    def set_two_factor_required(self, session: SessionRef, required: bool) -> None:
        """R20-R22: owners turn the account requirement on (logging everyone out) or off."""
        required = check.flag(required, "required")
        action = Action.REQUIRE_TWO_FACTOR if required else Action.ALLOW_WITHOUT_TWO_FACTOR
        with self._work() as w:
            actor = self._authenticate(w, session)
            self._enforce(w, action, actor)
            account = actor.account.with_requirement(required)
            if account == actor.account:
                return
            w.tx.put_account(account)
            w.audit(
                "two_factor_required" if required else "two_factor_optional",
                Outcome.SUCCESS,
                account_id=account.id,
                actor_id=actor.user.id,
                reason="all_sessions_ended" if required else None,
            )

    def reset_two_factor(self, session: SessionRef, user_id: str) -> None:
        """R41: an owner removes another user's 2FA, secret and backup codes; their sessions end."""
        user_id = check.identifier(user_id, "user_id")
        with self._work() as w:
            actor = self._authenticate(w, session)
            target = w.tx.get_user(user_id)
            if target is None or target.account_id != actor.account.id:
                raise UnknownUser("no such user in this account")
            self._enforce(w, Action.RESET_OTHER, actor, target)
            w.tx.put_user(target.without_two_factor(end_sessions=True))
            w.audit(
                "two_factor_reset",
                Outcome.SUCCESS,
                account_id=actor.account.id,
                actor_id=actor.user.id,
                target_id=target.id,
                reason="by_owner",
            )

    def operator_reset_two_factor(self, email: str) -> User:
        """R42: the installation's operator resets a user out of band (e.g. a sole owner)."""
        address = check.email(email)
        with self._work() as w:
            target = w.tx.find_user_by_email(email_key(address))
            if target is None:
                raise UnknownUser("no user has this email")
            target = target.without_two_factor(end_sessions=True)
            w.tx.put_user(target)
            w.audit(
                "two_factor_reset",
                Outcome.SUCCESS,
                account_id=target.account_id,
                actor_id=None,
                target_id=target.id,
                actor="operator",
                reason="out_of_band",
            )
            return target

    def two_factor_overview(self, session: SessionRef) -> AccountOverview:
        """R50: owners and managers see which users have 2FA on."""
        with self._work() as w:  # a refusal is recorded, so this one may write
            actor = self._authenticate(w, session)
            self._enforce(w, Action.VIEW_OVERVIEW, actor)
            users = tuple(
                UserOverview(
                    user_id=u.id,
                    email=u.email,
                    role=u.role,
                    two_factor_enabled=u.two_factor.enabled,
                    backup_codes_remaining=u.backup_codes_remaining,
                )
                for u in w.tx.users_of(actor.account.id)
            )
            return AccountOverview(
                actor.account.id, actor.account.name, actor.account.two_factor_required, users
            )

    def audit_trail(self, session: SessionRef, *, limit: int = 100) -> list[AuditEvent]:
        """R60: the account's audit events, newest first, for owners and managers."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be an int from 1 to 10000", reason="invalid_limit")
        with self._work() as w:
            actor = self._authenticate(w, session)
            self._enforce(w, Action.VIEW_AUDIT, actor)
            return w.tx.audit_events(actor.account.id, limit)

    # -- maintenance ---------------------------------------------------------------------

    def purge_expired(self) -> int:
        """Remove what can no longer matter; returns how many rows were deleted or cleared.

        That is expired login challenges and sessions, the pending secrets of expired
        enrolments (R11: the rest of the user is untouched), and throttle counters that
        no longer block and whose last failure is older than the longest ``forget_after``
        of the three throttles (R6: such a counter would start again from 1 anyway; one
        cutoff for every kind keeps some counters longer than needed, never too short).
        None of it can be used any more. Run it periodically, e.g. hourly.
        """
        s = self.settings
        keep = max(
            s.code_throttle.forget_after,
            s.password_throttle.forget_after,
            s.client_throttle.forget_after,
        )
        with self._work() as w:
            return w.tx.purge_expired(w.now, throttles_before=w.now - keep)

    def reseal_secrets(self, *, batch: int = 200) -> int:
        """Re-encrypt every TOTP secret not under the cipher's current key; returns how many.

        Each batch commits on its own, so logins go on meanwhile; old keys must stay
        configured until this has run.
        """
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 10_000:
            raise InvalidInput("batch must be an int from 1 to 10000", reason="invalid_batch")
        count = 0
        after = ""
        while True:
            with self._work() as w:
                page = w.tx.users_page(after, batch)
                for user in page:
                    state = user.two_factor
                    secret, pending = state.secret, state.pending_secret
                    if secret is not None and not self._cipher.is_current(secret):
                        secret = self._seal(user.id, self._open(user.id, secret))
                    if pending is not None and not self._cipher.is_current(pending):
                        pending = self._seal(user.id, self._open(user.id, pending))
                    if (secret, pending) != (state.secret, state.pending_secret):
                        state = replace(state, secret=secret, pending_secret=pending)
                        w.tx.put_user(replace(user, two_factor=state))
                        count += 1
            if len(page) < batch:
                return count
            after = page[-1].id
