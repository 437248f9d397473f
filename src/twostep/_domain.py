"""The domain: plain, immutable values and the state changes of the rules.

Nothing here does I/O or reads a clock: the current time comes in as an argument.
Secrets appear here only in sealed (encrypted) or hashed form, and no ``repr``
shows even those.
"""

from __future__ import annotations

import enum
import hmac
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from ._errors import ChallengeExpired, InvalidCode, NotAllowed, SessionInvalid
from ._settings import ThrottleSettings

__all__ = [
    "Account",
    "BackupCodeSet",
    "ChallengeKind",
    "LoginChallenge",
    "RememberedDevice",
    "RequiredOf",
    "Role",
    "SecurityKey",
    "SessionRecord",
    "ThrottleKey",
    "ThrottleScope",
    "ThrottleState",
    "TwoFactorState",
    "User",
]


class Role(enum.StrEnum):
    """A user's role in their account (R50: owners and managers administer)."""

    OWNER = "owner"
    MANAGER = "manager"
    MEMBER = "member"


class RequiredOf(enum.StrEnum):
    """Whom an account's 2FA requirement covers (R96)."""

    EVERYONE = "everyone"  # every user of the account (R20, R21)
    ADMINS = "admins"  # owners and managers only


#: The roles an ``admins`` requirement covers: those who administer (R50).
ADMIN_ROLES = frozenset({Role.OWNER, Role.MANAGER})


@dataclass(frozen=True, slots=True)
class Account:
    """An organisation, and its 2FA requirement (R20-R22, R95, R96).

    Sessions are revoked in O(1) by generations: ``session_generation`` moves on to end
    the sessions of every user (R21) or, under an ``admins`` requirement, of its owners
    and managers; ``members_generation`` moves on to end the members' sessions when the
    requirement starts covering them (R96). ``required_since`` is when the requirement
    began to cover owners and managers, ``members_required_since`` members (``None``
    while it does not, or for a requirement older than these fields: long ago).
    """

    id: str
    name: str
    created_at: datetime
    two_factor_required: bool = False
    session_generation: int = 0
    required_of: RequiredOf = RequiredOf.EVERYONE
    grace_period: timedelta | None = None
    required_since: datetime | None = None
    members_required_since: datetime | None = None
    members_generation: int = 0

    def covers(self, user: User) -> bool:
        """Whether the requirement applies to ``user`` (R20, R96)."""
        return self.two_factor_required and (
            self.required_of is RequiredOf.EVERYONE or user.role in ADMIN_ROLES
        )

    def enroll_by(self, user: User) -> datetime | None:
        """R95: the end of ``user``'s grace period, if they are inside one's reach.

        ``None`` unless the requirement covers the user, they have no second factor and
        the account grants a grace period. Computed from the live policy each time: the
        later of when the requirement began to cover the user's role and when the user
        was created, plus the account's grace period as it is now.
        """
        if self.grace_period is None or user.has_second_factor or not self.covers(user):
            return None
        since = self.required_since if user.role in ADMIN_ROLES else self.members_required_since
        start = user.created_at if since is None else max(since, user.created_at)
        return start + self.grace_period

    def admits(self, user: User, now: datetime) -> bool:
        """Whether ``user`` may hold a session at ``now``: the one "2FA required" test.

        R3/R21: a user the requirement covers needs a second factor, unless inside a
        live grace period (R95); a deadline that starts later than ``now`` (the clock
        has moved back) is no grace (R70).
        """
        if not self.covers(user) or user.has_second_factor:
            return True
        deadline = self.enroll_by(user)
        if deadline is None:
            return False
        assert self.grace_period is not None  # a deadline comes from a grace period
        return alive(now, deadline - self.grace_period, deadline, self.grace_period)

    def current_generations(self, user: User, account_generation: int, members: int) -> bool:
        """Whether generations recorded at a session's birth are still this account's.

        Owners and managers answer to ``session_generation``, members to
        ``members_generation`` (which moves whenever theirs must, R21, R96).
        """
        if user.role in ADMIN_ROLES:
            return account_generation == self.session_generation
        return members == self.members_generation

    def with_requirement(
        self,
        required: bool,
        now: datetime,
        *,
        of: RequiredOf = RequiredOf.EVERYONE,
        grace_period: timedelta | None = None,
    ) -> Account:
        """R20-R22, R95, R96: the requirement as the owner sets it now, in O(1).

        Turning it on ends the sessions of every user it covers (R21); widening it from
        owners and managers to everyone ends the members' sessions. Narrowing it,
        turning it off or changing the grace period ends none (the grace period is read
        live: a shorter one applies at once, to every session).
        """
        if not required:
            return replace(
                self,
                two_factor_required=False,
                required_of=RequiredOf.EVERYONE,
                grace_period=None,
                required_since=None,
                members_required_since=None,
            )
        account = self
        if not self.two_factor_required:
            account = replace(
                self,
                two_factor_required=True,
                session_generation=self.session_generation + 1,
                members_generation=self.members_generation
                + (1 if of is RequiredOf.EVERYONE else 0),
                required_since=now,
                members_required_since=now if of is RequiredOf.EVERYONE else None,
            )
        elif of is RequiredOf.EVERYONE and self.required_of is RequiredOf.ADMINS:
            account = replace(
                self,
                members_generation=self.members_generation + 1,
                members_required_since=now,
            )
        elif of is RequiredOf.ADMINS:
            account = replace(self, members_required_since=None)
        return replace(account, required_of=of, grace_period=grace_period)


@dataclass(frozen=True, slots=True)
class BackupCodeSet:
    """Hashed backup codes (R5, R10).

    Every code of a set is hashed with the same random salt, so that checking an
    attempt costs one slow hash whatever the number of codes: the attempt's digest
    is compared (in constant time) with each stored digest. Codes are random with
    at least 50 bits each, so a shared salt gives an attacker nothing to share.
    """

    salt: bytes = field(repr=False)
    digests: tuple[bytes, ...] = field(repr=False)
    used: tuple[bool, ...]

    @property
    def remaining(self) -> int:
        return self.used.count(False)

    def match(self, digest: bytes) -> int | None:
        """Index of the code with this digest, used or not, comparing with every entry."""
        found: int | None = None
        for index, stored in enumerate(self.digests):
            if hmac.compare_digest(stored, digest):
                found = index
        return found

    def consume(self, index: int) -> BackupCodeSet:
        if self.used[index]:
            msg = "this backup code was already used"
            raise InvalidCode(msg, reason="replayed")
        used = list(self.used)
        used[index] = True
        return replace(self, used=tuple(used))


@dataclass(frozen=True, slots=True)
class TwoFactorState:
    """Off, or on with a confirmed secret; possibly with a pending (unconfirmed) secret.

    Secrets are held sealed by the store's cipher. ``last_step`` is the TOTP time
    step of the last accepted OTP (R4): a code of that step or an earlier one is
    refused, which is what replay protection must record (not "the current step").
    """

    secret: str | None = field(default=None, repr=False)
    last_step: int | None = None
    enabled_at: datetime | None = None
    pending_secret: str | None = field(default=None, repr=False)
    pending_expires_at: datetime | None = None

    @property
    def enabled(self) -> bool:
        return self.secret is not None

    def pending_at(self, now: datetime, lifetime: timedelta) -> bool:
        """Whether an enrolment of ``lifetime`` is waiting for its first code at ``now``."""
        return (
            self.pending_secret is not None
            and self.pending_expires_at is not None
            and alive(now, self.pending_expires_at - lifetime, self.pending_expires_at, lifetime)
        )


@dataclass(frozen=True, slots=True)
class User:
    """A user of one account. ``session_generation`` moves on to end their sessions (R41)."""

    id: str
    account_id: str
    email: str
    role: Role
    password_hash: str = field(repr=False)
    created_at: datetime
    active: bool = True
    two_factor: TwoFactorState = TwoFactorState()
    backup_codes: BackupCodeSet | None = None
    session_generation: int = 0
    #: How many security keys (WebAuthn) the user has (R102): kept on the user, so
    #: that checking a session needs no other read.
    security_keys: int = 0

    @property
    def has_second_factor(self) -> bool:
        """Whether the user has a second factor: what the requirement asks for (R3).

        An authenticator app, or at least one security key (R102).
        """
        return self.two_factor.enabled or self.security_keys > 0

    @property
    def second_factors(self) -> tuple[str, ...]:
        """What the user can give at step 2: ``"totp"`` (app or backup code), ``"security_key"``."""
        factors: tuple[str, ...] = ("totp",) if self.two_factor.enabled else ()
        return (*factors, "security_key") if self.security_keys > 0 else factors

    def with_security_keys(self, count: int) -> User:
        """R101, R106: the number of security keys after one was added or removed."""
        return replace(self, security_keys=count)

    @property
    def email_key(self) -> str:
        return email_key(self.email)

    @property
    def backup_codes_remaining(self) -> int:
        return self.backup_codes.remaining if self.backup_codes is not None else 0

    def with_password_hash(self, password_hash: str) -> User:
        """The same password, hashed anew (rehash on login): sessions go on."""
        return replace(self, password_hash=password_hash)

    def with_new_password(self, password_hash: str) -> User:
        """R85/R86: a new password ends every session of the user; 2FA is untouched."""
        return replace(
            self, password_hash=password_hash, session_generation=self.session_generation + 1
        )

    def begin_enrollment(self, sealed_secret: str, expires_at: datetime) -> User:
        """R10/R11: park a new secret; the confirmed state is untouched until confirmed."""
        state = replace(
            self.two_factor, pending_secret=sealed_secret, pending_expires_at=expires_at
        )
        return replace(self, two_factor=state)

    def pending_secret(self, now: datetime, lifetime: timedelta) -> str:
        """The sealed pending secret, or an error if no enrolment is waiting."""
        state = self.two_factor
        if state.pending_secret is None:
            msg = "no enrolment is in progress"
            raise NotAllowed(msg, reason="no_enrollment_in_progress", rule="R10")
        if not state.pending_at(now, lifetime):
            msg = "the enrolment expired; start it again"
            raise ChallengeExpired(msg, reason="expired")
        return state.pending_secret

    def confirm_enrollment(
        self, step: int, codes: BackupCodeSet, now: datetime, lifetime: timedelta
    ) -> User:
        """R10/R40: the pending secret becomes the secret, with fresh backup codes.

        R97: turning 2FA on (not moving it to a new phone) ends every session of the
        user, which were all opened with the password alone.
        """
        secret = self.pending_secret(now, lifetime)
        state = TwoFactorState(secret=secret, last_step=step, enabled_at=now)
        generation = self.session_generation + (0 if self.has_second_factor else 1)
        return replace(self, two_factor=state, backup_codes=codes, session_generation=generation)

    def accept_step(self, step: int) -> User:
        """R4: record the time step of an accepted OTP; refuse it if not newer."""
        last = self.two_factor.last_step
        if last is not None and step <= last:
            msg = "this code was already used"
            raise InvalidCode(msg, reason="replayed")
        # Built field by field, in declaration order, not with dataclasses.replace (which
        # costs ~3 us here): this runs on every OTP login, and otp_step_memory in bench/
        # misses its target without it. A test holds it equal to dataclasses.replace.
        t = self.two_factor
        state = TwoFactorState(t.secret, step, t.enabled_at, t.pending_secret, t.pending_expires_at)
        return User(
            self.id,
            self.account_id,
            self.email,
            self.role,
            self.password_hash,
            self.created_at,
            self.active,
            state,
            self.backup_codes,
            self.session_generation,
            self.security_keys,
        )

    def use_backup_code(self, index: int) -> User:
        """R5: a backup code works once."""
        if self.backup_codes is None:
            msg = "the code is not valid"
            raise InvalidCode(msg, reason="wrong")
        return replace(self, backup_codes=self.backup_codes.consume(index))

    def with_backup_codes(self, codes: BackupCodeSet) -> User:
        return replace(self, backup_codes=codes)

    def without_two_factor(self, *, end_sessions: bool) -> User:
        """R31/R41/R107: secret, pending secret, backup codes and security keys are gone.

        The caller deletes the keys themselves (``Transaction.delete_security_keys_of``).
        """
        generation = self.session_generation + 1 if end_sessions else self.session_generation
        return replace(
            self,
            two_factor=TwoFactorState(),
            backup_codes=None,
            session_generation=generation,
            security_keys=0,
        )


def alive(now: datetime, started: datetime, expires: datetime, lifetime: timedelta) -> bool:
    """R70: whether a record made at ``started`` is alive at ``now``.

    It is alive from ``started`` until ``expires``, and never longer than ``lifetime``
    after ``started``; a record stamped in the future (the clock has moved back since)
    is not alive, so that a jump of the clock cannot stretch any lifetime.
    """
    return started <= now < min(expires, started + lifetime)


def email_key(email: str) -> str:
    """The form in which emails are compared: unique across the installation, any case."""
    return email.strip().casefold()


class SecurityKey(NamedTuple):
    """A security key (a WebAuthn credential) registered as a second factor (R101).

    ``id`` is twostep's own id for it; ``credential_id`` (the authenticator's, as
    base64url) and ``public_key`` (COSE) are left out of ``repr``. ``sign_count`` is
    the authenticator's counter at its last use (0 for keys that keep none, R104).
    (A named tuple, not a dataclass: ``import twostep`` is measured, bench/.)
    """

    id: str
    user_id: str
    name: str
    credential_id: str
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None = None

    def __repr__(self) -> str:
        return (
            f"SecurityKey(id={self.id!r}, user_id={self.user_id!r}, name={self.name!r}, "
            f"sign_count={self.sign_count!r}, transports={self.transports!r}, "
            f"created_at={self.created_at!r}, last_used_at={self.last_used_at!r})"
        )

    def used(self, sign_count: int, now: datetime) -> SecurityKey:
        """R104: the key after a verified assertion with this counter.

        An authenticator that keeps a counter raises it at every use: a counter that
        did not grow (or that stopped being kept) means the key may have been cloned,
        and the assertion is refused.
        """
        if (sign_count or self.sign_count) and sign_count <= self.sign_count:
            msg = "the security key's signature counter did not grow: it may be cloned"
            raise InvalidCode(msg, reason="sign_count")
        return self._replace(sign_count=sign_count, last_used_at=now)


class ChallengeKind(enum.StrEnum):
    CODE = "code"  # R1: the user has 2FA and must give a code
    ENROLLMENT = "enrollment"  # R3: the user must set 2FA up inside the login
    PASSWORD_RESET = "password_reset"  # noqa: S105 (a name) R86: a forgotten password
    # A security key being registered (R101): found by the hash of its WebAuthn challenge.
    KEY_REGISTRATION = "key_registration"
    # A security key asked for outside a login, e.g. to remove a key (R106): likewise.
    KEY_CHECK = "key_check"


@dataclass(frozen=True, slots=True)
class LoginChallenge:
    """The state between step 1 and step 2 of a login (R6): single-use, expiring, counted."""

    token_hash: str = field(repr=False)
    user_id: str
    kind: ChallengeKind
    created_at: datetime
    expires_at: datetime
    attempts: int = 0

    def check_usable(self, now: datetime, max_attempts: int, lifetime: timedelta) -> None:
        """Refuse a challenge that expired, is stamped in the future, or had its attempts."""
        if not alive(now, self.created_at, self.expires_at, lifetime):
            msg = "the login expired; log in again"
            raise ChallengeExpired(msg, reason="expired")
        if self.attempts >= max_attempts:
            msg = "too many wrong codes; log in again"
            raise ChallengeExpired(msg, reason="too_many_attempts")

    def with_failure(self) -> LoginChallenge:
        return replace(self, attempts=self.attempts + 1)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A stored session, found by the hash of its token.

    It stays valid only while the account's and the user's session generations are
    the ones it was issued under (R21, R41, R96): revoking is one write, not one per
    session. ``second_factor_at`` is when its user last passed a second factor in it
    (a code at login, or a step-up, R99); ``None`` for a session opened without one.
    """

    token_hash: str = field(repr=False)
    user_id: str
    account_id: str
    issued_at: datetime
    expires_at: datetime
    account_generation: int
    user_generation: int
    members_generation: int = 0
    second_factor_at: datetime | None = None

    def check_valid(
        self, now: datetime, lifetime: timedelta, user: User | None, account: Account | None
    ) -> tuple[User, Account]:
        """The session's user and account if it is still valid at ``now`` (R21, R41, R70).

        Otherwise :class:`SessionInvalid` says why: expired (or stamped in the future),
        revoked (logged out by a generation, or the user is gone or deactivated) or
        ``two_factor_required`` (R3, R95: no second factor, and no live grace period).
        """
        if not alive(now, self.issued_at, self.expires_at, lifetime):
            msg = "the session expired"
            raise SessionInvalid(msg, reason="expired")
        if (
            user is None
            or account is None
            or not user.active
            or self.user_generation != user.session_generation
            or not account.current_generations(
                user, self.account_generation, self.members_generation
            )
        ):
            msg = "the session was revoked"
            raise SessionInvalid(msg, reason="revoked")
        if not account.admits(user, now):
            msg = "the account requires 2FA; log in again to set it up"
            raise SessionInvalid(msg, reason="two_factor_required")
        return user, account

    def fresh(self, now: datetime, within: timedelta) -> bool:
        """R99: whether a second factor was passed in this session less than ``within`` ago."""
        at = self.second_factor_at
        return at is not None and alive(now, at, at + within, within)


class RememberedDevice(NamedTuple):
    """R98: a device on which a user passed the second factor, remembered for a while.

    Found by the hash of its token (the host keeps the token in a long-lived cookie);
    ``id`` names it to its user, who may list and forget their devices. Like a session,
    it records the generations it was made under: whatever ends every session of the
    user, or makes the requirement cover them anew, forgets it. (A named tuple, not a
    dataclass: ``import twostep`` is measured, bench/.)
    """

    token_hash: str
    id: str
    user_id: str
    label: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    account_generation: int
    members_generation: int
    user_generation: int

    def __repr__(self) -> str:
        return (
            f"RememberedDevice(id={self.id!r}, user_id={self.user_id!r}, "
            f"expires_at={self.expires_at!r})"
        )

    def admits(self, now: datetime, lifetime: timedelta, user: User, account: Account) -> bool:
        """Whether this device stands in for ``user``'s second factor at ``now``."""
        return (
            self.user_id == user.id
            and user.has_second_factor
            and alive(now, self.created_at, self.expires_at, lifetime)
            and self.user_generation == user.session_generation
            and account.current_generations(user, self.account_generation, self.members_generation)
        )


class ThrottleScope(enum.StrEnum):
    """What a throttle counts failures of (R6)."""

    USER = "user"  # wrong codes of one user, across login challenges and step-up actions
    EMAIL = "email"  # wrong passwords given for one email
    CLIENT = "client"  # failures of one client key that the host passes (e.g. an IP address)
    # Wrong passwords for one email from clients that were clean, let through while the
    # email was blocked (R72).
    CLEAN_CLIENTS = "clean_clients"
    # Password resets asked for one email, known or not (R86).
    PASSWORD_RESET = "password_reset"  # noqa: S105 (a name, not a password)


class ThrottleKey(NamedTuple):
    """One throttle counter: a scope and the user id, email key or client key it counts.

    A named tuple, not a dataclass: stores hash it on every code and password step.
    """

    scope: ThrottleScope
    subject: str

    @property
    def stored(self) -> str:
        """The form stores keep it in, e.g. ``"user:3f2a..."``."""
        return f"{self.scope}:{self.subject}"


@dataclass(frozen=True, slots=True)
class ThrottleState:
    """Consecutive failures under one key, and until when the key is blocked (R6).

    ``in_flight`` counts the attempts admitted and not yet settled (their secret is
    being checked), the latest admitted at ``in_flight_at``.
    """

    key: ThrottleKey
    failures: int
    blocked_until: datetime | None
    last_failure_at: datetime
    in_flight: int = 0
    in_flight_at: datetime | None = None

    @classmethod
    def clean(cls, key: ThrottleKey, now: datetime) -> ThrottleState:
        """A key with no failure counted: what a key without a stored row is."""
        return cls(key, 0, None, now)

    def retry_after(self, now: datetime, conf: ThrottleSettings) -> int | None:
        """Whole seconds until the key may try again, or ``None`` if it is not blocked.

        R70: a block lasts the delay its failures earn from the last failure, whatever
        the stored end says, and a block stamped in the future (the clock has moved back
        since) is over; its failures still count towards the next one.
        """
        if self.blocked_until is None:
            return None
        earned = conf.delay(self.failures)
        if not alive(now, self.last_failure_at, self.blocked_until, earned):
            return None
        end = min(self.blocked_until, self.last_failure_at + earned)
        return max(1, math.ceil((end - now).total_seconds()))

    def wait(self, now: datetime, conf: ThrottleSettings) -> int | None:
        """Whole seconds before one more attempt may be admitted, or ``None`` (R6, R71).

        Besides a block, attempts in flight hold the next one back when, were they all
        to fail, it would have had to wait for them: so parallel guesses get no further
        than sequential ones. A key with no failure counted lets up to ``max_in_flight``
        attempts be checked at once, so that right passwords sent together all pass.
        """
        blocked = self.retry_after(now, conf)
        if blocked is not None:
            return blocked
        in_flight = self.in_flight_now(now, conf)
        failures = self.failures_at(now, conf)
        held_back = in_flight and failures and conf.delay(failures + in_flight)
        if in_flight >= conf.max_in_flight or held_back:
            return 1
        return None

    def failed(self, now: datetime, conf: ThrottleSettings) -> ThrottleState:
        """One failure more at ``now``: the count starts again after ``forget_after``."""
        failures = self.failures_at(now, conf) + 1
        delay = conf.delay(failures)
        blocked = now + delay if delay else None
        return replace(self, failures=failures, blocked_until=blocked, last_failure_at=now)

    def failures_at(self, now: datetime, conf: ThrottleSettings) -> int:
        """The failures that still count at ``now`` (none once ``forget_after`` passed)."""
        return 0 if now - self.last_failure_at > conf.forget_after else self.failures

    def forgiven(self) -> ThrottleState:
        """A success clears the failures (its attempts in flight stay counted)."""
        return replace(self, failures=0, blocked_until=None)

    def in_flight_now(self, now: datetime, conf: ThrottleSettings) -> int:
        """Attempts admitted and not settled that still count at ``now`` (R71)."""
        since = self.in_flight_at
        if since is None or not alive(now, since, since + conf.in_flight_for, conf.in_flight_for):
            return 0
        return self.in_flight

    def admitted(self, now: datetime, conf: ThrottleSettings) -> ThrottleState:
        """One attempt more in flight: its secret is being checked."""
        return replace(self, in_flight=self.in_flight_now(now, conf) + 1, in_flight_at=now)

    def landed(self, now: datetime, conf: ThrottleSettings) -> ThrottleState:
        """One attempt in flight less: it was settled, one way or the other."""
        in_flight = max(0, self.in_flight_now(now, conf) - 1)
        since = self.in_flight_at if in_flight else None
        return replace(self, in_flight=in_flight, in_flight_at=since)

    @property
    def empty(self) -> bool:
        """Nothing counted: the row can go."""
        return self.failures == 0 and self.in_flight == 0
