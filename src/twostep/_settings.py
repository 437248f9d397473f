"""Every knob of ``twostep`` in one frozen value, with documented, safe defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

__all__ = ["Argon2Params", "PasskeySettings", "Settings", "ThrottleSettings"]


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Argon2id cost. ``memory_cost`` is in KiB."""

    time_cost: int
    memory_cost: int
    parallelism: int


#: RFC 9106's "second recommended option", argon2-cffi's default (~150 ms on 2 cores).
PASSWORD_DEFAULT = Argon2Params(time_cost=3, memory_cost=65536, parallelism=4)
#: Backup codes carry >= 50 random bits, so a lighter hash (OWASP's minimum) suffices.
BACKUP_CODE_DEFAULT = Argon2Params(time_cost=2, memory_cost=19456, parallelism=1)
#: The cheapest Argon2 allows. Only for tests: see ``twostep.testing.FAST``.
CHEAPEST = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)

# What authenticator apps can show: RFC 4226 truncates to 31 bits, so at most 9 digits
# are uniform; RFC 6238 apps offer 6 or 8.
_MIN_DIGITS = 6
_MAX_DIGITS = 9
_MAX_DRIFT = 10  # time steps either side
_MIN_SECRET_BYTES = 16


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    """Backoff after consecutive failures under one key (R6).

    The first ``free_failures`` failures cost nothing; each further one blocks the key
    for ``base_delay * 2 ** (n - free_failures - 1)``, at most ``max_delay``. A success
    clears the key; so does ``forget_after`` without a failure.

    At most ``max_in_flight`` attempts under one key are checked at once (R71): an
    attempt admitted and not yet settled (its Argon2 hash running) is in flight, and
    counts as such for at most ``in_flight_for``, so that one cut short by a crash
    does not hold its place for ever.
    """

    free_failures: int = 5
    base_delay: timedelta = timedelta(seconds=2)
    max_delay: timedelta = timedelta(hours=4)
    forget_after: timedelta = timedelta(days=1)
    max_in_flight: int = 10
    in_flight_for: timedelta = timedelta(minutes=1)

    def delay(self, failures: int) -> timedelta:
        """How long the key is blocked after its ``failures``-th consecutive failure."""
        excess = failures - self.free_failures
        if excess <= 0:
            return timedelta(0)
        # Cap the exponent first: 2 ** 10_000 is a fine int but a silly timedelta.
        delay: timedelta = self.base_delay * 2 ** min(excess - 1, 40)
        return min(delay, self.max_delay)


@dataclass(frozen=True, slots=True)
class Settings:
    """How ``twostep`` behaves. Derive variants with :func:`dataclasses.replace`."""

    #: TOTP as every authenticator app speaks it (RFC 6238, SHA-1).
    totp_digits: int = 6
    totp_period: int = 30
    #: Periods of clock drift accepted either way (R4).
    totp_drift: int = 1
    #: Bytes of a new TOTP secret: 20 bytes = 160 bits (RFC 4226 section 4).
    secret_bytes: int = 20
    #: Life of a login challenge between step 1 and step 2 (R6).
    challenge_ttl: timedelta = timedelta(minutes=5)
    #: Wrong codes after which a login challenge dies (R6).
    challenge_max_attempts: int = 5
    #: Life of an unconfirmed enrolment secret (R11); also of an enrolment login challenge.
    enrollment_ttl: timedelta = timedelta(minutes=10)
    #: Absolute life of a session.
    session_ttl: timedelta = timedelta(hours=12)
    #: Throttled attempts of the same actor, action and reason within this time of the
    #: first are counted on its audit event (R75); ``None`` gives each its own event.
    audit_collapse_window: timedelta | None = timedelta(minutes=1)
    #: How long ``purge_expired`` keeps audit events (R77); ``None`` keeps them all.
    audit_retention: timedelta | None = timedelta(days=400)
    #: How long it keeps the events of no account: attempts on unknown emails (R77).
    anonymous_audit_retention: timedelta | None = timedelta(days=30)
    #: Rows one transaction of ``purge_expired`` looks at, at most (R130): a purge is
    #: many short transactions, so that logins wait for none of them for long.
    purge_batch: int = 1_000
    #: Backup codes handed out at each enrolment (R10).
    backup_code_count: int = 10
    password_hash: Argon2Params = PASSWORD_DEFAULT
    backup_code_hash: Argon2Params = BACKUP_CODE_DEFAULT
    #: Passwords longer than this (in UTF-8 bytes) are refused before hashing.
    max_password_bytes: int = 1024
    min_password_length: int = 8
    #: Failed codes per user, across challenges (R6).
    code_throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    #: Failed passwords per email (R6).
    password_throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    #: Failures per client key (e.g. an IP address) given by the host, if any.
    client_throttle: ThrottleSettings = field(
        default_factory=lambda: ThrottleSettings(free_failures=20)
    )
    #: Failed passwords per email from clients that were not failing, let through while
    #: the email is blocked (R72): what an attacker must exhaust, with fresh client
    #: keys, to keep a user who logs in from a clean client out.
    clean_client_throttle: ThrottleSettings = field(
        default_factory=lambda: ThrottleSettings(free_failures=3)
    )
    #: R99: how recently a second factor must have been passed in a session for the
    #: sensitive actions of an owner (role changes, resets and email changes of other
    #: users); ``None`` asks for none. Actions that take a code are fresh by themselves.
    step_up_within: timedelta | None = timedelta(hours=1)
    #: R98: the longest a device may be remembered (the host may ask for less).
    remember_device_for: timedelta = timedelta(days=30)
    #: R95: the longest grace period an owner may grant.
    max_grace_period: timedelta = timedelta(days=90)
    #: Life of a password reset token (R86).
    password_reset_ttl: timedelta = timedelta(minutes=30)
    #: Password resets asked for per email, known or not (R86): each one counts.
    password_reset_throttle: ThrottleSettings = field(
        default_factory=lambda: ThrottleSettings(free_failures=3)
    )

    def __post_init__(self) -> None:
        if not _MIN_DIGITS <= self.totp_digits <= _MAX_DIGITS:
            msg = f"totp_digits must be between {_MIN_DIGITS} and {_MAX_DIGITS}"
            raise ValueError(msg)
        if self.totp_period < 1 or not 0 <= self.totp_drift <= _MAX_DRIFT:
            msg = f"totp_period must be >= 1 and totp_drift between 0 and {_MAX_DRIFT}"
            raise ValueError(msg)
        if self.secret_bytes < _MIN_SECRET_BYTES:
            msg = f"secret_bytes must be at least {_MIN_SECRET_BYTES} (128 bits, RFC 4226)"
            raise ValueError(msg)
        if self.challenge_max_attempts < 1 or self.backup_code_count < 1 or self.purge_batch < 1:
            msg = "challenge_max_attempts, backup_code_count and purge_batch must be >= 1"
            raise ValueError(msg)
        for name, optional in (
            ("remember_device_for", False),
            ("max_grace_period", False),
            ("step_up_within", True),
        ):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if not isinstance(value, timedelta) or value <= timedelta(0):
                msg = f"{name} must be a timedelta > 0" + (" or None" if optional else "")
                raise ValueError(msg)
        for name in ("audit_collapse_window", "audit_retention", "anonymous_audit_retention"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, timedelta) or value < timedelta(0)):
                msg = f"{name} must be None or a timedelta >= 0"
                raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class PasskeySettings:
    """The relying party that security keys (WebAuthn, R100) are registered for.

    ``rp_id`` is the domain the keys are bound to (e.g. ``"example.org"``: it serves
    that domain and its subdomains), ``rp_name`` the name a browser shows, and
    ``origin`` the origin, or origins, that pages calling WebAuthn are served from
    (e.g. ``"https://example.org"``); a response from any other is refused. Each user
    may hold at most ``max_keys`` keys, each named with 1 to ``max_name_length``
    printable characters. ``user_verification`` is what the browser is asked for
    (``"discouraged"``, ``"preferred"`` or ``"required"``): a key is a second factor
    beside the password, so its PIN or biometric is only checked when ``"required"``.
    """

    rp_id: str
    origin: str | tuple[str, ...]
    rp_name: str = ""
    max_keys: int = 10
    max_name_length: int = 64
    user_verification: str = "discouraged"

    def __post_init__(self) -> None:
        if not isinstance(self.rp_id, str) or not self.rp_id or "/" in self.rp_id:
            msg = "rp_id must be a domain, e.g. 'example.org'"
            raise ValueError(msg)
        origins = (self.origin,) if isinstance(self.origin, str) else tuple(self.origin)
        if not origins or not all(
            isinstance(o, str) and o.startswith(("https://", "http://")) for o in origins
        ):
            msg = "origin must be an origin such as 'https://example.org', or a tuple of them"
            raise ValueError(msg)
        object.__setattr__(self, "origin", origins[0] if len(origins) == 1 else origins)
        if self.max_keys < 1 or self.max_name_length < 1:
            msg = "max_keys and max_name_length must be >= 1"
            raise ValueError(msg)
        if self.user_verification not in {"discouraged", "preferred", "required"}:
            msg = "user_verification must be 'discouraged', 'preferred' or 'required'"
            raise ValueError(msg)

    @property
    def origins(self) -> tuple[str, ...]:
        """Every origin accepted."""
        return (self.origin,) if isinstance(self.origin, str) else self.origin
