"""A stateful model of the rules: random sequences of the public operations, on both stores.

Hypothesis drives logins, codes, enrolments, resets, the account requirement with its
grace period and whom it covers (R95, R96), logouts, step-ups (R99), remembered devices
(R98), the users' life (roles, deactivation, deletion, the list of users: R80-R84),
passwords (changes and resets: R85-R87) and the clock for four users of one account (two
owners, a manager, a member at first). The machine keeps its own model of what the rules
allow (R1-R99, throttling included), checks that every refusal is the typed error the
model predicts, and after every step checks the invariants:

- nobody holds a valid session without 2FA while the requirement covers them, except
  inside a live grace period, whose deadline the session reports (R3, R21, R95, R96);
- every session issued before the requirement last began to cover its user is dead (R21,
  R96);
- every stored session is exactly as valid as the model says (R21, R41, R95-R97, logout,
  expiry), and knows when its user last passed a second factor in it (R99);
- turning 2FA on ends the user's other sessions, never the one it was confirmed in (R97);
- an owner's role, reset and email changes of users need a second factor passed in the
  session within ``step_up_within`` when the owner has 2FA (R99);
- a remembered device skips the code step only for its own user, while it lives, and
  only under the generations it was made under (R98); the store holds exactly the
  device rows the model holds;
- no backup code is accepted twice (R5);
- only owners ever changed the requirement, reset another user, changed a role,
  deactivated, reactivated or deleted a user (R20, R22, R41, R60, R80-R82);
- the model's view of who has 2FA, roles and who is active matches the store (R50);
- the account always keeps an active owner (R80-R82);
- a deactivated or deleted user holds no valid session, and cannot log in (R81, R82);
- a password reset never turns 2FA off nor logs anyone in (R86, R87).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import twostep as ts
from twostep._domain import ThrottleKey, ThrottleScope
from twostep.testing import FAST, ManualClock, Phone

PASSWORD = "correct horse battery"
ROLES = {
    "owner": ts.Role.OWNER,
    "owner2": ts.Role.OWNER,
    "manager": ts.Role.MANAGER,
    "member": ts.Role.MEMBER,
}
NAMES = tuple(ROLES)
#: How a code is chosen for an attempt; the model decides what each must do.
CODE_KINDS = ("otp", "otp_spaced", "wrong", "backup", "used_backup", "old_backup")
#: Events of no account (attempts on a deleted user's email) stay: purges count no events.
SETTINGS = dataclasses.replace(FAST, anonymous_audit_retention=None)
#: What only an owner does (R20, R22, R80-R82), as audit actions.
OWNERS_CHANGES = (
    "two_factor_required",
    "two_factor_optional",
    "role_changed",
    "user_deactivated",
    "user_reactivated",
    "user_deleted",
)
ROLE_CHOICES = (ts.Role.OWNER, ts.Role.MANAGER, ts.Role.MEMBER)
#: The roles an ``admins`` requirement covers (R96).
ADMIN_ROLES = (ts.Role.OWNER, ts.Role.MANAGER)
#: Whom the requirement covers (R96).
OF_CHOICES = (ts.RequiredOf.EVERYONE, ts.RequiredOf.ADMINS)
#: Grace periods an owner grants with the requirement (R95); ``None``: none.
GRACE_CHOICES = (None, timedelta(hours=1), timedelta(days=1))
#: How long a device is remembered for (R98); ``None``: ``Settings.remember_device_for``.
VALID_FOR_CHOICES = (None, timedelta(hours=1), timedelta(days=1))
#: A device id no device has.
UNKNOWN_DEVICE = "0123456789abcdef"
_RANK = {ts.Role.OWNER: 0, ts.Role.MANAGER: 1, ts.Role.MEMBER: 2}

picks = st.integers(min_value=0, max_value=1_000)
#: Who acts: a fresh login of that user, or (``None``) a session already held.
ACTORS = st.one_of(st.none(), st.sampled_from(NAMES))


@dataclass
class ModelThrottle:
    """The backoff of one throttle key (R6), as the settings describe it."""

    conf: ts.ThrottleSettings
    failures: int = 0
    blocked_until: datetime | None = None
    last_failure: datetime | None = None

    def blocked(self, now: datetime) -> bool:
        return self.blocked_until is not None and now < self.blocked_until

    def fail(self, now: datetime) -> None:
        if self.last_failure is None or now - self.last_failure > self.conf.forget_after:
            self.failures = 1
        else:
            self.failures += 1
        delay = self.conf.delay(self.failures)
        self.blocked_until = now + delay if delay else None
        self.last_failure = now

    def clear(self) -> None:
        self.failures, self.blocked_until, self.last_failure = 0, None, None


@dataclass
class ModelUser:
    user: ts.User
    role: ts.Role = ts.Role.MEMBER
    active: bool = True
    deleted: bool = False
    password: str = PASSWORD
    phone: Phone | None = None  # confirmed 2FA
    pending: Phone | None = None  # an enrolment waiting for its code
    pending_expires: datetime | None = None
    last_step: int | None = None
    backup: list[str] = field(default_factory=list)  # unused codes of the current set
    used: list[str] = field(default_factory=list)  # used codes of the current set
    old: list[str] = field(default_factory=list)  # codes of replaced sets
    # Moves on whenever every session of the user ends (R41, R81, R85, R86, R97, R80).
    generation: int = 0

    def drop_two_factor(self) -> None:
        self.old += self.backup + self.used
        self.phone, self.pending, self.pending_expires, self.last_step = None, None, None, None
        self.backup, self.used = [], []


@dataclass
class ModelChallenge:
    token: str
    user: str
    kind: str  # "code" or "enrollment"
    expires: datetime
    attempts: int = 0
    gone: bool = False  # used or purged


@dataclass
class ModelReset:
    """A password reset token (R86); ``user`` is ``None`` for one that opens nothing."""

    token: str
    user: str | None
    expires: datetime
    gone: bool = False  # used, purged, or its user deleted


@dataclass
class ModelSession:
    token: str
    user: str
    issued: datetime
    account_generation: int
    members_generation: int
    user_generation: int
    second_factor_at: datetime | None = None  # when a code was last passed in it (R99)
    logged_out: bool = False


@dataclass
class ModelDevice:
    """A remembered device (R98); ``gone`` once its row is deleted."""

    token: str
    device_id: str
    user: str
    label: str
    created: datetime
    expires: datetime
    account_generation: int
    members_generation: int
    user_generation: int
    last_used: datetime | None = None
    gone: bool = False


def variant(code: str, pick: int) -> str:
    """A backup code as a person may type it: with or without separator, any case (R10)."""
    return [code, code.replace("-", ""), code.upper(), f"  {code} "][pick % 4]


class TwoStepMachine(RuleBasedStateMachine):
    store_kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="twostep-stateful-"))
        self.store: ts.Store = (
            # NORMAL: the model is not about durability (test_store_faults.py checks FULL).
            ts.SQLiteStore(self.tmp / "twostep.db", synchronous="NORMAL")
            if self.store_kind == "sqlite"
            else ts.InMemoryStore()
        )
        self.clock = ManualClock()
        self.service = ts.TwoStep(
            self.store,
            issuer="Acme",
            clock=self.clock,
            settings=SETTINGS,
            cipher=ts.AESGCMKeyring.generate(),
        )
        self.account = self.service.create_account("Acme")
        self.users = {
            name: ModelUser(
                self.service.create_user(self.account.id, f"{name}@acme.test", PASSWORD, role),
                role,
            )
            for name, role in ROLES.items()
        }
        self.by_id = {u.user.id: name for name, u in self.users.items()}
        # Who has ever been an owner: only they may have made an owner's change.
        self.owner_ids = {u.user.id for u in self.users.values() if u.role is ts.Role.OWNER}
        self.resets: list[ModelReset] = []
        self.reset_throttle = {n: ModelThrottle(SETTINGS.password_reset_throttle) for n in NAMES}
        self.passwords_made = 0
        self.required = False
        self.of = ts.RequiredOf.EVERYONE  # R96: whom it covers
        # R95: when it began to cover owners and managers, and members.
        self.required_since: datetime | None = None
        self.members_required_since: datetime | None = None
        self.grace: timedelta | None = None
        # R21, R96: moves on to end every session (owners' and managers'), members'.
        self.account_generation = 0
        self.members_generation = 0
        self.devices: list[ModelDevice] = []
        self.sessions: list[ModelSession] = []
        self.challenges: list[ModelChallenge] = []
        self.email_throttle = {n: ModelThrottle(SETTINGS.password_throttle) for n in NAMES}
        self.code_throttle = {n: ModelThrottle(SETTINGS.code_throttle) for n in NAMES}
        self.accepted_backup_codes: set[str] = set()

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the model's helpers --------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def step(self) -> int:
        return int(self.now.timestamp()) // SETTINGS.totp_period

    def expect(
        self,
        error: type[ts.TwoStepError],
        call: Callable[..., object],
        *args: Any,
        reason: str | None = None,
    ) -> ts.TwoStepError:
        with pytest.raises(error) as caught:
            call(*args)
        if reason is not None:
            assert caught.value.reason == reason, (caught.value, reason)
        return caught.value

    def present(self) -> list[ModelUser]:
        """The users who exist: not deleted (R82)."""
        return [u for u in self.users.values() if not u.deleted]

    def active_owners(self) -> list[ModelUser]:
        return [u for u in self.present() if u.active and u.role is ts.Role.OWNER]

    def new_password(self) -> str:
        self.passwords_made += 1
        return f"{PASSWORD} {self.passwords_made}"

    def event_count(self) -> int:
        with self.store.transaction(write=False) as tx:
            return len(tx.audit_events(self.account.id, 1_000_000))

    def two_factor_states(self) -> dict[str, object]:
        """Every stored user's whole 2FA state: secrets, pending enrolment, backup codes."""
        with self.store.transaction(write=False) as tx:
            stored = {u.user.id: tx.get_user(u.user.id) for u in self.present()}
        return {
            user_id: (user.two_factor, user.backup_codes_remaining)
            for user_id, user in stored.items()
            if user is not None
        }

    def session_error(self, s: ModelSession) -> str | None:
        """Why the model says ``s`` is not valid now, as ``SessionInvalid.reason``."""
        if s.logged_out:
            return "unknown"
        if self.now >= s.issued + SETTINGS.session_ttl:
            return "expired"
        if (
            not self.current(s.user, s.account_generation, s.members_generation)
            or s.user_generation != self.users[s.user].generation
            or not self.users[s.user].active  # R81
        ):
            return "revoked"
        if not self.admitted(self.users[s.user]):
            return "two_factor_required"
        return None

    def current(self, name: str, account_generation: int, members_generation: int) -> bool:
        """R21, R96: whether a session or device made under these generations may live.

        Owners and managers answer to the account's generation, members to theirs.
        """
        if self.users[name].role in ADMIN_ROLES:
            return account_generation == self.account_generation
        return members_generation == self.members_generation

    def covers(self, u: ModelUser) -> bool:
        """R20, R96: whether the requirement applies to the user."""
        return self.required and (self.of is ts.RequiredOf.EVERYONE or u.role in ADMIN_ROLES)

    def enroll_by(self, u: ModelUser) -> datetime | None:
        """R95: the end of the user's grace period, as sessions and the status report it.

        From the later of when the requirement began to cover the user's role and the
        user's creation, never from a promotion (R96).
        """
        if not self.covers(u) or self.grace is None or u.phone is not None:
            return None
        since = self.required_since if u.role in ADMIN_ROLES else self.members_required_since
        assert since is not None
        return max(since, u.user.created_at) + self.grace

    def admitted(self, u: ModelUser) -> bool:
        """R3, R21, R95, R96: 2FA, or not covered, or inside a live grace period."""
        if not self.covers(u) or u.phone is not None:
            return True
        deadline = self.enroll_by(u)
        if deadline is None:
            return False
        assert self.grace is not None
        return deadline - self.grace <= self.now < deadline

    def needs_step_up(self, s: ModelSession) -> bool:
        """R99: an owner with 2FA passed no code in ``s`` within ``step_up_within``."""
        within = SETTINGS.step_up_within
        assert within is not None
        passed = s.second_factor_at
        return self.users[s.user].phone is not None and (
            passed is None or self.now - passed >= within
        )

    def stepped_up(self, s: ModelSession, call: Callable[..., object], *args: object) -> bool:
        """Whether ``s`` may take a sensitive action; if not, checks the refusal (R99)."""
        if not self.needs_step_up(s):
            return True
        self.expect(ts.StepUpRequired, call, s.token, *args, reason="step_up_required")
        return False

    def add_session(
        self, name: str, session: ts.Session, second_factor_at: datetime | None = None
    ) -> None:
        u = self.users[name]
        assert session.user_id == u.user.id
        assert session.second_factor_at == second_factor_at  # R99
        assert session.enroll_by == self.enroll_by(u)  # R95
        self.sessions.append(
            ModelSession(
                session.token,
                name,
                self.now,
                self.account_generation,
                self.members_generation,
                u.generation,
                second_factor_at=second_factor_at,
            )
        )

    def device_admits(self, d: ModelDevice, name: str) -> bool:
        """R98: whether ``d`` stands in for the code of ``name`` now."""
        u = self.users[name]
        return (
            not d.gone
            and d.user == name
            and u.phone is not None
            and self.now < d.expires
            and d.user_generation == u.generation
            and self.current(name, d.account_generation, d.members_generation)
        )

    def forget_devices(self, name: str) -> None:
        """R98: the user's device rows are deleted."""
        for d in self.devices:
            if d.user == name:
                d.gone = True

    def choose_session(self, pick: int) -> ModelSession:
        """Mostly a session the model holds valid, sometimes any (dead ones must be refused).

        A negative ``pick`` names a session from the newest (for the rules of several steps).
        """
        if pick < 0:
            return self.sessions[pick]
        live = [s for s in self.sessions if self.session_error(s) is None]
        if live and pick % 5:
            return live[pick % len(live)]
        return self.sessions[pick % len(self.sessions)]

    def choose_challenge(self, pick: int) -> ModelChallenge:
        live = [c for c in self.challenges if not c.gone and self.now < c.expires]
        if live and pick % 5:
            return live[pick % len(live)]
        return self.challenges[pick % len(self.challenges)]

    def acting(self, pick: int) -> tuple[ModelSession, ModelUser] | None:
        """A session to act with; ``None`` after checking that it is refused as the model says."""
        s = self.choose_session(pick)
        error = self.session_error(s)
        if error is not None:
            self.expect(ts.SessionInvalid, self.service.two_factor_status, s.token, reason=error)
            return None
        return s, self.users[s.user]

    def acting_fresh(self, pick: int, name: str | None) -> tuple[ModelSession, ModelUser] | None:
        """The session of a fresh login (of ``name``) if it gets one, else as :meth:`acting`.

        The users' life needs a live owner's session; among thirty rules, few are left.
        """
        if name is not None:
            before = len(self.sessions)
            # Now and then through a remembered device: a session without a code (R98, R99).
            devices = [d for d in self.devices if d.user == name and not d.gone]
            if devices and pick % 2:
                self.log_in(name, devices[-1])
            else:
                self.login_all_the_way(name, "otp", wait=False)
            if len(self.sessions) > before:  # maybe another user's, whose code was asked
                fresh = self.sessions[-1]
                return fresh, self.users[fresh.user]
        return self.acting(pick) if self.sessions else None

    def wrong_code(self, u: ModelUser) -> str:
        """A well-formed OTP that none of the user's secrets accepts in the drift window."""
        phones = [p for p in (u.phone, u.pending) if p is not None]
        taken = {p.code(offset_steps=o) for p in phones for o in range(-2, 3)}
        return next(c for c in (f"{n:06d}" for n in range(100)) if c not in taken)

    def confirmed_code(self, u: ModelUser, kind: str, pick: int) -> tuple[str, str | None]:
        """A code for the user's confirmed 2FA, and the ``InvalidCode.reason`` expected."""
        if kind in ("otp", "otp_spaced") and u.phone is not None:
            code = u.phone.code()
            replay = u.last_step is not None and self.step() <= u.last_step
            return (f"{code[:3]} {code[3:]}" if kind == "otp_spaced" else code), (
                "replayed" if replay else None
            )
        if kind == "backup" and u.backup:
            return variant(u.backup[pick % len(u.backup)], pick), None
        if kind == "used_backup" and u.used:
            return variant(u.used[pick % len(u.used)], pick), "replayed"
        if kind == "old_backup" and u.old:
            return variant(u.old[pick % len(u.old)], pick), "wrong"
        return self.wrong_code(u), "wrong"

    def pending_code(self, u: ModelUser, kind: str, pick: int) -> tuple[str, str | None]:
        """A code for the pending enrolment: only the new app's OTP confirms it (R10)."""
        assert u.pending is not None
        if kind in ("otp", "otp_spaced"):
            return u.pending.code(), None
        if kind == "backup" and u.backup:  # a backup code never confirms a new device
            return variant(u.backup[pick % len(u.backup)], pick), "wrong"
        return self.wrong_code(u), "wrong"

    def code_used(self, u: ModelUser, code: str) -> None:
        """The model's side of an accepted code: R4 records the step, R5 spends the code."""
        compact = code.strip().replace(" ", "").lower()
        if len(compact) == SETTINGS.totp_digits and compact.isdigit():
            u.last_step = self.step()
            return
        plain = next(c for c in u.backup if c.replace("-", "") == compact.replace("-", ""))
        assert plain not in self.accepted_backup_codes  # R5: no backup code twice
        self.accepted_backup_codes.add(plain)
        u.backup.remove(plain)
        u.used.append(plain)

    def enrolled(self, u: ModelUser, codes: ts.BackupCodes) -> None:
        assert u.pending is not None
        assert len(codes) == SETTINGS.backup_code_count
        u.old += u.backup + u.used
        u.phone, u.pending, u.pending_expires = u.pending, None, None
        u.last_step = self.step()
        u.backup, u.used = list(codes), []

    def start_pending(self, u: ModelUser, enrollment: ts.Enrollment) -> None:
        u.pending = Phone(enrollment.secret, self.clock)
        u.pending_expires = self.now + SETTINGS.enrollment_ttl
        assert enrollment.expires_at == u.pending_expires

    # -- logging in (R1-R6) -------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES))
    def login(self, name: str) -> None:
        self.log_in(name, None)

    @precondition(lambda self: self.devices)
    @rule(name=st.sampled_from(NAMES), pick=picks)
    def login_with_device(self, name: str, pick: int) -> None:
        """R98: a remembered device skips the code step, of its own user only."""
        mine = [d for d in self.devices if d.user == name]
        pool = mine if mine and pick % 4 else self.devices
        self.log_in(name, pool[pick % len(pool)])

    def log_in(self, name: str, device: ModelDevice | None) -> None:
        u = self.users[name]
        throttle = self.email_throttle[name]
        token = None if device is None else device.token

        def call(email: str) -> ts.LoginStep:
            return self.service.login(email, u.password, device=token)

        if throttle.blocked(self.now):
            self.expect(ts.Throttled, call, u.user.email)
            return
        if u.deleted or not u.active:  # R81, R82: like a wrong password
            self.expect(ts.InvalidCredentials, call, u.user.email)
            throttle.fail(self.now)
            return
        step = call(u.user.email.upper())
        throttle.clear()
        if u.phone is not None and device is not None and self.device_admits(device, name):
            assert isinstance(step, ts.LoggedIn)  # R98: no code asked, none passed
            device.last_used = self.now
            self.add_session(name, step.session)
        elif u.phone is not None:  # R1
            assert isinstance(step, ts.CodeRequired)
            expires = self.now + SETTINGS.challenge_ttl
            self.challenges.append(ModelChallenge(step.challenge, name, "code", expires))
        elif not self.admitted(u):  # R3: required, and no grace period left
            assert isinstance(step, ts.EnrollmentRequired)
            self.start_pending(u, step.enrollment)
            expires = self.now + SETTINGS.enrollment_ttl
            self.challenges.append(ModelChallenge(step.challenge, name, "enrollment", expires))
        else:  # R2; R95: inside a grace period, told its deadline
            assert isinstance(step, ts.LoggedIn)
            assert step.enroll_by == self.enroll_by(u)
            self.add_session(name, step.session)

    @rule(name=st.sampled_from(NAMES), kind=st.sampled_from(CODE_KINDS), wait=st.booleans())
    def login_all_the_way(self, name: str, kind: str, wait: bool) -> None:
        """R1-R3 in one step: the password, then (maybe in the next period) a code if asked."""
        before = len(self.challenges)
        self.login(name)
        if len(self.challenges) > before:
            if wait:
                self.clock.advance(SETTINGS.totp_period)
            self.complete_login(len(self.challenges) - 1 + 5 * len(self.challenges), kind)

    @rule(name=st.sampled_from(NAMES))
    def wrong_password(self, name: str) -> None:
        throttle = self.email_throttle[name]
        email = self.users[name].user.email
        if throttle.blocked(self.now):
            self.expect(ts.Throttled, self.service.login, email, "not the password")
            return
        self.expect(ts.InvalidCredentials, self.service.login, email, "not the password")
        throttle.fail(self.now)

    @precondition(lambda self: self.challenges)
    @rule(pick=picks, kind=st.sampled_from(CODE_KINDS))
    def complete_login(self, pick: int, kind: str) -> None:
        c = self.choose_challenge(pick)
        u = self.users[c.user]
        throttle = self.code_throttle[c.user]
        call = self.service.complete_login
        if c.gone:
            self.expect(ts.ChallengeExpired, call, c.token, "123456", reason="unknown")
            return
        # Both refused as the challenge is found, before its expiry is looked at:
        # a deactivated user's login dies (R81); so does an enrolment-at-login once the
        # user has 2FA: it must not confirm a later enrolment (a reset's) with its code.
        if not u.active or (c.kind == "enrollment" and u.phone is not None):
            self.expect(ts.ChallengeExpired, call, c.token, "123456", reason="unknown")
            c.gone = True
            return
        if self.now >= c.expires:
            self.expect(ts.ChallengeExpired, call, c.token, "123456", reason="expired")
            return
        if c.attempts >= SETTINGS.challenge_max_attempts:
            self.expect(ts.ChallengeExpired, call, c.token, "123456", reason="too_many_attempts")
            return
        if throttle.blocked(self.now):  # R6: refused before any code is looked at
            code = u.phone.code() if u.phone is not None else "123456"
            self.expect(ts.Throttled, call, c.token, code)
            return
        if c.kind == "enrollment":
            if u.pending is None:
                self.expect(ts.NotAllowed, call, c.token, "123456")
                return
            assert u.pending_expires is not None
            if self.now >= u.pending_expires:
                self.expect(ts.ChallengeExpired, call, c.token, "123456")
                return
            code, refusal = self.pending_code(u, kind, pick)
        else:
            code, refusal = self.confirmed_code(u, kind, pick)
        if refusal is not None:
            error = self.expect(ts.InvalidCode, call, c.token, code, reason=refusal)
            c.attempts += 1
            assert isinstance(error, ts.InvalidCode)
            assert error.attempts_left == SETTINGS.challenge_max_attempts - c.attempts
            throttle.fail(self.now)
            return
        done = call(c.token, code)
        c.gone = True
        throttle.clear()
        if c.kind == "enrollment":
            assert done.backup_codes is not None
            self.enrolled(u, done.backup_codes)
            u.generation += 1  # R97: turning 2FA on ends the password-only sessions
        else:
            assert done.backup_codes is None
            self.code_used(u, code)
        self.add_session(c.user, done.session, second_factor_at=self.now)  # R99

    @precondition(lambda self: self.sessions)
    @rule(pick=picks)
    def logout(self, pick: int) -> None:
        s = self.choose_session(pick)
        self.service.logout(s.token)
        s.logged_out = True

    # -- one's own 2FA (R5, R10, R11, R30-R32, R40) ----------------------------------------------

    @precondition(lambda self: self.sessions)
    @rule(pick=picks)
    def status(self, pick: int) -> None:
        actor = self.acting(pick)
        if actor is None:
            return
        s, u = actor
        status = self.service.two_factor_status(s.token)
        assert status.enabled == (u.phone is not None)
        assert status.required_by_account == self.covers(u)  # R96
        assert status.backup_codes_remaining == len(u.backup)
        pending = u.pending_expires is not None and self.now < u.pending_expires
        assert status.enrollment_pending == pending
        assert status.enroll_by == self.enroll_by(u)  # R95

    @precondition(lambda self: self.sessions)
    @rule(pick=picks)
    def begin_enrollment(self, pick: int) -> None:
        actor = self.acting(pick)
        if actor is None:
            return
        s, u = actor
        if u.phone is not None:
            self.expect(ts.NotAllowed, self.service.begin_enrollment, s.token)
            return
        self.start_pending(u, self.service.begin_enrollment(s.token))

    @precondition(lambda self: self.sessions)
    @rule(pick=picks, kind=st.sampled_from(CODE_KINDS))
    def confirm_enrollment(self, pick: int, kind: str) -> None:
        actor = self.acting(pick)
        if actor is None:
            return
        s, u = actor
        call = self.service.confirm_enrollment
        throttle = self.code_throttle[s.user]
        if throttle.blocked(self.now):
            code = u.pending.code() if u.pending is not None else "123456"
            self.expect(ts.Throttled, call, s.token, code)
            return
        if u.pending is None:
            self.expect(ts.NotAllowed, call, s.token, "123456")
            return
        assert u.pending_expires is not None
        if self.now >= u.pending_expires:
            self.expect(ts.ChallengeExpired, call, s.token, "123456")
            return
        code, refusal = self.pending_code(u, kind, pick)
        if refusal is not None:
            self.expect(ts.InvalidCode, call, s.token, code, reason=refusal)
            throttle.fail(self.now)
            return
        resetting = u.phone is not None  # R40: moving to a new phone
        self.enrolled(u, call(s.token, code))
        throttle.clear()
        if resetting:  # no session ends; the remembered devices go (R98)
            self.forget_devices(s.user)
        else:  # R97: the user's other sessions end, this one goes on
            u.generation += 1
            s.user_generation = u.generation
        s.second_factor_at = self.now  # R99: a code was just passed in it

    @precondition(lambda self: self.sessions)
    @rule(pick=picks)
    def enroll(self, pick: int) -> None:
        """R30 in one step: begin an enrolment and confirm it with the new app's code."""
        self.begin_enrollment(pick)
        self.confirm_enrollment(pick, "otp")

    @rule(pick=picks, name=ACTORS)
    def reset_phone(self, pick: int, name: str | None) -> None:
        """R40 in one step: begin moving to a new phone with a code, and confirm it."""
        if name is not None:
            before = len(self.sessions)
            self.login_all_the_way(name, "otp", wait=True)
            pick = -1 if len(self.sessions) > before else pick
        if not self.sessions:
            return
        self.clock.advance(SETTINGS.totp_period)  # a fresh time step: the code is no replay
        self.begin_reset(pick, "otp")
        self.confirm_enrollment(pick, "otp")

    def with_code(
        self,
        pick: int,
        kind: str,
        call: Callable[[str, str], Any],
        allowed: Callable[[ModelUser], bool],
        name: str | None = None,
        *,
        wait: bool = False,
    ) -> tuple[ModelSession, ModelUser, Any] | None:
        """R5: an action that needs a current OTP or a backup code; ``None`` if refused.

        The actor is a fresh login of ``name`` if given; ``wait``: the code comes in the
        next time step (else a code just used at that login is a replay, R4).
        """
        actor = self.acting_fresh(pick, name)
        if actor is None:
            return None
        if wait:
            self.clock.advance(SETTINGS.totp_period)
            if self.session_error(actor[0]) is not None:
                return None
        s, u = actor
        if not allowed(u):
            self.expect(ts.NotAllowed, call, s.token, "123456")
            return None
        throttle = self.code_throttle[s.user]
        code, refusal = self.confirmed_code(u, kind, pick)
        if throttle.blocked(self.now):
            self.expect(ts.Throttled, call, s.token, code)
            return None
        if refusal is not None:
            self.expect(ts.InvalidCode, call, s.token, code, reason=refusal)
            throttle.fail(self.now)
            return None
        result = call(s.token, code)
        throttle.clear()
        self.code_used(u, code)
        return s, u, result

    @precondition(lambda self: self.sessions)
    @rule(pick=picks, kind=st.sampled_from(CODE_KINDS))
    def disable_two_factor(self, pick: int, kind: str) -> None:
        # R31/R32: only when the account does not require 2FA.
        done = self.with_code(
            pick,
            kind,
            self.service.disable_two_factor,
            lambda u: not self.covers(u) and u.phone is not None,
        )
        if done is not None:
            s, u, _ = done
            u.drop_two_factor()
            self.forget_devices(s.user)  # R98: their rows go

    @precondition(lambda self: self.sessions)
    @rule(pick=picks, kind=st.sampled_from(CODE_KINDS))
    def begin_reset(self, pick: int, kind: str) -> None:
        # R40: only when the requirement covers the user; the old device works until
        # confirmed.
        done = self.with_code(
            pick, kind, self.service.begin_reset, lambda u: self.covers(u) and u.phone is not None
        )
        if done is not None:
            self.start_pending(done[1], done[2])

    @precondition(lambda self: self.sessions)
    @rule(pick=picks, kind=st.sampled_from(CODE_KINDS))
    def regenerate_backup_codes(self, pick: int, kind: str) -> None:
        done = self.with_code(
            pick, kind, self.service.regenerate_backup_codes, lambda u: u.phone is not None
        )
        if done is not None:
            _, u, codes = done
            assert len(codes) == SETTINGS.backup_code_count
            u.old += u.backup + u.used
            u.backup, u.used = list(codes), []

    @rule(pick=picks, name=ACTORS, kind=st.sampled_from(CODE_KINDS), wait=st.booleans())
    def step_up(self, pick: int, name: str | None, kind: str, *, wait: bool) -> None:
        """R99: a code passed again in a session, through the checks and throttle of R4-R6.

        A user without 2FA has no code to pass: refused before any code is counted.
        """
        done = self.with_code(
            pick, kind, self.service.step_up, lambda u: u.phone is not None, name, wait=wait
        )
        if done is None:
            return
        s, u, session = done
        assert (session.token, session.user_id) == (s.token, u.user.id)
        assert session.second_factor_at == self.now
        s.second_factor_at = self.now

    # -- remembered devices (R98) ------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES), valid_for=st.sampled_from(VALID_FOR_CHOICES))
    def enroll_and_remember(self, name: str, valid_for: timedelta | None) -> None:
        """R97, R98 in one step: log in, turn 2FA on if off, remember the device, use it."""
        before = len(self.sessions)
        self.login_all_the_way(name, "otp", wait=True)
        if len(self.sessions) == before:
            return
        name = self.sessions[-1].user  # maybe another user's, whose code was asked
        if self.users[name].phone is None:
            self.enroll(-1)
        made = len(self.devices)
        self.remember_device(-1, None, valid_for, labelled=True)
        if len(self.devices) > made:
            self.log_in(name, self.devices[-1])

    @rule(
        pick=picks,
        actor_name=ACTORS,
        valid_for=st.sampled_from(VALID_FOR_CHOICES),
        labelled=st.booleans(),
    )
    def remember_device(
        self, pick: int, actor_name: str | None, valid_for: timedelta | None, *, labelled: bool
    ) -> None:
        actor = self.acting_fresh(pick, actor_name)
        if actor is None:
            return
        s, u = actor
        label = f"device {len(self.devices)}" if labelled else None

        def call() -> ts.DeviceToken:
            return self.service.remember_device(s.token, valid_for=valid_for, label=label)

        if u.phone is None or s.second_factor_at is None:  # a code passed in it, at any time
            self.expect(ts.NotAllowed, call, reason="no_second_factor_in_session")
            return
        device = call()
        lifetime = SETTINGS.remember_device_for if valid_for is None else valid_for
        assert device.expires_at == self.now + lifetime
        assert device.token not in repr(device)
        self.devices.append(
            ModelDevice(
                device.token,
                device.device_id,
                s.user,
                label or "",
                self.now,
                device.expires_at,
                self.account_generation,
                self.members_generation,
                u.generation,
            )
        )

    @precondition(lambda self: self.sessions)
    @rule(pick=picks)
    def remembered_devices(self, pick: int) -> None:
        """The user's devices that skip the code step now, oldest first."""
        actor = self.acting(pick)
        if actor is None:
            return
        s, _ = actor
        live = sorted(
            (d for d in self.devices if self.device_admits(d, s.user)),
            key=lambda d: (d.created, d.device_id),
        )
        assert self.service.remembered_devices(s.token) == [
            ts.DeviceInfo(d.device_id, d.label, d.created, d.expires, d.last_used) for d in live
        ]

    @precondition(lambda self: self.sessions)
    @rule(pick=picks)
    def forget_device(self, pick: int) -> None:
        """One row of the user's goes, valid or not; another's or an unknown id: ``False``."""
        actor = self.acting(pick)
        if actor is None:
            return
        s, _ = actor
        mine = [d for d in self.devices if d.user == s.user and not d.gone]
        pool = [d.device_id for d in (mine if mine and pick % 3 else self.devices)]
        device_id = [*pool, UNKNOWN_DEVICE][pick % (len(pool) + 1)]
        found = [d for d in mine if d.device_id == device_id]
        assert self.service.forget_device(s.token, device_id) == bool(found)
        for d in found:
            d.gone = True

    # -- administration (R20-R22, R41, R50) -------------------------------------------------------

    @rule(
        pick=picks,
        actor_name=ACTORS,
        required=st.booleans(),
        grace=st.sampled_from(GRACE_CHOICES),
        of=st.sampled_from(OF_CHOICES),
    )
    def set_two_factor_required(
        self,
        pick: int,
        actor_name: str | None,
        grace: timedelta | None,
        of: ts.RequiredOf,
        *,
        required: bool,
    ) -> None:
        actor = self.acting_fresh(pick, actor_name)
        if actor is None:
            return
        s, u = actor
        everyone = of is ts.RequiredOf.EVERYONE

        def call() -> None:
            chosen = of if pick % 2 else of.value
            self.service.set_two_factor_required(s.token, required, of=chosen, grace_period=grace)

        if u.role is not ts.Role.OWNER:  # R20, R22
            self.expect(ts.NotAllowed, call, reason="owner_only")
            return
        call()
        # R95: each call states the whole requirement: a grace period is kept only if given.
        if not required:
            self.of, self.grace = ts.RequiredOf.EVERYONE, None
            self.required_since = self.members_required_since = None
        elif not self.required:  # R21, R96: everyone it covers is logged out
            self.account_generation += 1
            self.required_since = self.now
            if everyone:
                self.members_generation += 1
                self.members_required_since = self.now
        elif everyone and self.of is ts.RequiredOf.ADMINS:  # R96: widened, members out
            self.members_generation += 1
            self.members_required_since = self.now
        elif not everyone:  # R96: narrowed (or kept) to admins: nobody is logged out
            self.members_required_since = None
        if required:
            self.of, self.grace = of, grace
        self.required = required

    @rule(
        pick=picks,
        actor_name=ACTORS,
        grace=st.sampled_from(GRACE_CHOICES[1:]),
        seconds=st.sampled_from([0, 1_800, 7_200]),
        name=st.sampled_from(NAMES),
    )
    def require_with_grace(
        self, pick: int, actor_name: str | None, grace: timedelta, seconds: int, name: str
    ) -> None:
        """R95 in one step: an owner requires 2FA with a grace period, a user logs in.

        Time passes. Called again, it changes only the grace period, maybe ending it at once.
        """
        of = OF_CHOICES[pick % 3 // 2]  # mostly of everyone
        self.set_two_factor_required(pick, actor_name, grace, of, required=True)
        self.login(name)
        self.clock.advance(seconds)

    @rule(
        pick=picks,
        grace=st.sampled_from(GRACE_CHOICES),
        name=st.sampled_from(NAMES),
        then=st.sampled_from(("widen", "promote", "login")),
    )
    def require_of_admins(self, pick: int, grace: timedelta | None, name: str, then: str) -> None:
        """R96 in one step: an owner requires 2FA of admins only, then more happens.

        Then the owner widens it to everyone, or promotes a member to manager; the user
        logs in.
        """
        owners = [n for n, u in self.users.items() if u in self.active_owners()]
        owner = owners[pick % len(owners)]
        self.set_two_factor_required(pick, owner, grace, ts.RequiredOf.ADMINS, required=True)
        self.clock.advance(SETTINGS.totp_period)  # the owner's next code is no replay
        if then == "widen":
            everyone = ts.RequiredOf.EVERYONE
            self.set_two_factor_required(pick, owner, grace, everyone, required=True)
        elif then == "promote":  # a member, if there is one
            members = [n for n in NAMES if self.users[n].role is ts.Role.MEMBER]
            name = members[pick % len(members)] if members else name
            self.set_role(pick, owner, name, ts.Role.MANAGER)
        self.login(name)

    @precondition(lambda self: self.sessions)
    @rule(pick=picks, victim_name=st.sampled_from(NAMES))
    def reset_two_factor(self, pick: int, victim_name: str) -> None:
        actor = self.acting(pick)
        if actor is None:
            return
        s, u = actor
        call = self.service.reset_two_factor
        victim = self.users[victim_name]
        if victim.deleted:  # R73, R82: the id is unknown, whoever asks
            self.expect(ts.UnknownUser, call, s.token, victim.user.id)
            return
        if u.role is not ts.Role.OWNER or s.user == victim_name:  # R41
            self.expect(ts.NotAllowed, call, s.token, victim.user.id)
            return
        if not self.stepped_up(s, call, victim.user.id):  # R99
            return
        call(s.token, victim.user.id)
        victim.drop_two_factor()
        victim.generation += 1  # their sessions and remembered devices end

    @precondition(lambda self: self.sessions)
    @rule(pick=picks)
    def two_factor_overview(self, pick: int) -> None:
        actor = self.acting(pick)
        if actor is None:
            return
        s, u = actor
        if u.role is ts.Role.MEMBER:  # R50
            self.expect(ts.NotAllowed, self.service.two_factor_overview, s.token)
            return
        overview = self.service.two_factor_overview(s.token)
        assert overview.two_factor_required == self.required
        assert (overview.required_of, overview.grace_period) == (self.of, self.grace)
        seen = {row.user_id: row for row in overview.users}
        assert set(seen) == {u.user.id for u in self.present()}
        for user_id, row in seen.items():
            model = self.users[self.by_id[user_id]]
            assert row.two_factor_enabled == (model.phone is not None)
            assert row.backup_codes_remaining == len(model.backup)
            assert (row.role, row.active) == (model.role, model.active)
            assert row.enroll_by == self.enroll_by(model)  # R95

    # -- the users' life (R80-R84) ---------------------------------------------------------------

    def owners_change(
        self,
        pick: int,
        actor_name: str | None,
        target_name: str,
        call: Callable[..., object],
        *args: object,
    ) -> tuple[ModelSession, ModelUser] | None:
        """The session of an owner who may change the target; ``None`` after a refusal."""
        actor = self.acting_fresh(pick, actor_name)
        if actor is None:
            return None
        s, u = actor
        target = self.users[target_name]
        if target.deleted:  # R84: the id is unknown, whoever asks
            self.expect(ts.UnknownUser, call, s.token, target.user.id, *args)
            return None
        if u.role is not ts.Role.OWNER:
            self.expect(ts.NotAllowed, call, s.token, target.user.id, *args, reason="owner_only")
            return None
        return s, target

    def keeps_an_owner(self, target: ModelUser) -> bool:
        """Whether the account keeps an active owner without ``target`` as one (R80-R82)."""
        return target.role is not ts.Role.OWNER or any(
            o is not target for o in self.active_owners()
        )

    def unchanged(self, call: Callable[..., object], *args: object) -> None:
        """A change to what is already so: it changes nothing and records nothing."""
        before = self.event_count()
        call(*args)
        assert self.event_count() == before

    @rule(
        pick=picks,
        actor_name=ACTORS,
        target_name=st.sampled_from(NAMES),
        role=st.sampled_from(ROLE_CHOICES),
    )
    def set_role(self, pick: int, actor_name: str | None, target_name: str, role: ts.Role) -> None:
        call = self.service.set_role
        checked = self.owners_change(pick, actor_name, target_name, call, role)
        if checked is None:
            return
        s, target = checked
        if not self.stepped_up(s, call, target.user.id, role):  # R99
            return
        if role is target.role:
            self.unchanged(call, s.token, target.user.id, role)
            return
        if not self.keeps_an_owner(target):  # the last active owner stepping down
            self.expect(ts.NotAllowed, call, s.token, target.user.id, role, reason="last_owner")
            return
        call(s.token, target.user.id, role.value if pick % 2 else role)
        covered_before = self.covers(target)
        demoted = _RANK[role] > _RANK[target.role]
        target.role = role
        # A demotion ends every session of the user; so does a promotion that brings
        # them under the requirement (R96), as turning it on would have.
        if demoted or (self.covers(target) and not covered_before):
            target.generation += 1
        if role is ts.Role.OWNER:
            self.owner_ids.add(target.user.id)

    @rule(pick=picks, actor_name=ACTORS, target_name=st.sampled_from(NAMES))
    def set_email(self, pick: int, actor_name: str | None, target_name: str) -> None:
        """R89, R99: an owner sets another's email to the one it is, to reach each refusal.

        The recent second factor is asked for before "nothing to change" is found.
        """
        call = self.service.set_email
        email = self.users[target_name].user.email
        checked = self.owners_change(pick, actor_name, target_name, call, email)
        if checked is None:
            return
        s, target = checked
        if target is self.users[s.user]:
            self.expect(
                ts.NotAllowed, call, s.token, target.user.id, email, reason="target_is_self"
            )
            return
        if self.stepped_up(s, call, target.user.id, email):
            self.unchanged(call, s.token, target.user.id, email)

    @rule(pick=picks, role=st.sampled_from(ROLE_CHOICES[1:]))
    def owner_steps_down(self, pick: int, role: ts.Role) -> None:
        """R80: an active owner demotes themselves; refused for the last one."""
        names = [n for n, u in self.users.items() if u in self.active_owners()]
        name = names[pick % len(names)]
        self.set_role(pick, name, name, role)

    @rule(pick=picks, actor_name=ACTORS, target_name=st.sampled_from(NAMES), active=st.booleans())
    def set_active(
        self, pick: int, actor_name: str | None, target_name: str, *, active: bool
    ) -> None:
        """R81: deactivate or reactivate another user."""
        call = self.service.reactivate_user if active else self.service.deactivate_user
        checked = self.owners_change(pick, actor_name, target_name, call)
        if checked is None:
            return
        s, target = checked
        if target is self.users[s.user]:
            self.expect(ts.NotAllowed, call, s.token, target.user.id, reason="target_is_self")
            return
        if target.active == active:
            self.unchanged(call, s.token, target.user.id)
            return
        if not active and not self.keeps_an_owner(target):
            self.expect(ts.NotAllowed, call, s.token, target.user.id, reason="last_owner")
            return
        call(s.token, target.user.id)
        target.active = active
        if not active:
            target.generation += 1
            self.end_logins_under_way(target_name)

    def end_logins_under_way(self, name: str) -> None:
        """R81, R85, R86: the user's login challenges and reset tokens die with the change."""
        for c in (*self.challenges, *self.resets):
            if c.user == name:
                c.gone = True

    @rule(pick=picks, actor_name=ACTORS, target_name=st.sampled_from(NAMES))
    def delete_user(self, pick: int, actor_name: str | None, target_name: str) -> None:
        call = self.service.delete_user
        checked = self.owners_change(pick, actor_name, target_name, call)
        if checked is None:
            return
        s, target = checked
        if target is self.users[s.user]:
            self.expect(ts.NotAllowed, call, s.token, target.user.id, reason="target_is_self")
            return
        if not self.keeps_an_owner(target):
            self.expect(ts.NotAllowed, call, s.token, target.user.id, reason="last_owner")
            return
        call(s.token, target.user.id)
        # R82: the row, sessions, challenges, devices and code throttle go; email counters
        # stay.
        target.deleted = True
        self.forget_devices(target_name)
        for session in self.sessions:
            if session.user == target_name:
                session.logged_out = True
        for c in (*self.challenges, *self.resets):
            if c.user == target_name:
                c.gone = True
        self.code_throttle[target_name].clear()

    @precondition(lambda self: any(u.deleted for u in self.users.values()))
    @rule(pick=picks, role=st.sampled_from(ROLE_CHOICES))
    def create_user_again(self, pick: int, role: ts.Role) -> None:
        """R82: a deleted user's email is free; the new user inherits nothing."""
        names = [name for name, u in self.users.items() if u.deleted]
        name = names[pick % len(names)]
        user = self.service.create_user(
            self.account.id, self.users[name].user.email, PASSWORD, role
        )
        self.users[name] = ModelUser(user, role)
        self.by_id[user.id] = name
        if role is ts.Role.OWNER:
            self.owner_ids.add(user.id)

    @rule(
        pick=picks,
        actor_name=ACTORS,
        limit=st.integers(min_value=1, max_value=3),
        keep=st.sampled_from(("all", "role", "two_factor", "active")),
        flag=st.booleans(),
    )
    def list_users(
        self, pick: int, actor_name: str | None, limit: int, keep: str, *, flag: bool
    ) -> None:
        """R83: every page, oldest first, filtered, is what the model holds."""
        actor = self.acting_fresh(pick, actor_name)
        if actor is None:
            return
        s, u = actor
        role = ROLE_CHOICES[pick % len(ROLE_CHOICES)]
        filters: dict[str, Any] = {
            "all": {},
            "role": {"role": role},
            "two_factor": {"two_factor": flag},
            "active": {"active": flag},
        }[keep]
        if u.role is ts.Role.MEMBER:  # R50
            self.expect(
                ts.NotAllowed,
                lambda: self.service.list_users(s.token, limit=limit, **filters),
                reason="owner_or_manager_only",
            )
            return
        expected = sorted(
            (
                m
                for m in self.present()
                if (m.role is role if keep == "role" else True)
                and ((m.phone is not None) == flag if keep == "two_factor" else True)
                and (m.active == flag if keep == "active" else True)
            ),
            key=lambda m: (m.user.created_at, m.user.id),
        )
        shown: list[ts.UserOverview] = []
        cursor = None
        for _ in range(len(NAMES) + 1):
            page = self.service.list_users(s.token, limit=limit, cursor=cursor, **filters)
            assert len(page.users) <= limit
            shown += page.users
            cursor = page.next_cursor
            if cursor is None:
                break
        assert cursor is None
        assert [row.user_id for row in shown] == [m.user.id for m in expected]
        for row, m in zip(shown, expected, strict=True):
            assert (row.email, row.role, row.active) == (m.user.email, m.role, m.active)
            assert row.two_factor_enabled == (m.phone is not None)
            assert row.backup_codes_remaining == len(m.backup)

    # -- one's own password (R85-R87) --------------------------------------------------------------

    @rule(
        pick=picks,
        actor_name=ACTORS,
        kind=st.sampled_from(CODE_KINDS),
        right=st.booleans(),
        with_code=st.booleans(),
    )
    def change_password(
        self, pick: int, actor_name: str | None, kind: str, *, right: bool, with_code: bool
    ) -> None:
        actor = self.acting_fresh(pick, actor_name)
        if actor is None:
            return
        s, u = actor
        current = u.password if right else "not the password"
        new = self.new_password()
        two_factor = u.phone is not None
        code, refusal = self.confirmed_code(u, kind, pick) if two_factor else ("123456", None)

        def change() -> ts.Session:
            return self.service.change_password(
                s.token, current, new, code=code if with_code else None
            )

        if two_factor and not with_code:
            self.expect(ts.InvalidInput, change, reason="code_required")
            return
        password_throttle = self.email_throttle[s.user]
        if password_throttle.blocked(self.now):
            self.expect(ts.Throttled, change)
            return
        if not right:  # a failed password for the email, as at a login (R85)
            self.expect(ts.InvalidCredentials, change)
            password_throttle.fail(self.now)
            return
        password_throttle.clear()
        code_throttle = self.code_throttle[s.user]
        if two_factor and code_throttle.blocked(self.now):
            self.expect(ts.Throttled, change)
            return
        if refusal is not None:
            self.expect(ts.InvalidCode, change, reason=refusal)
            code_throttle.fail(self.now)
            return
        session = change()
        if two_factor:
            code_throttle.clear()
            self.code_used(u, code)
        u.password = new
        u.generation += 1  # every session and remembered device ends, the one used included
        self.end_logins_under_way(s.user)
        self.add_session(s.user, session, second_factor_at=self.now if two_factor else None)

    @rule(name=st.sampled_from(NAMES))
    def begin_password_reset(self, name: str) -> None:
        u = self.users[name]
        throttle = self.reset_throttle[name]
        if throttle.blocked(self.now):
            self.expect(ts.Throttled, self.service.begin_password_reset, u.user.email)
            return
        reset = self.service.begin_password_reset(u.user.email)
        throttle.fail(self.now)  # each request counts
        assert reset.expires_at == self.now + SETTINGS.password_reset_ttl
        # R86: a deactivated or deleted user's email gets a token that opens nothing.
        opens = u.active and not u.deleted
        self.resets.append(ModelReset(reset.token, name if opens else None, reset.expires_at))

    @precondition(lambda self: self.resets)
    @rule(pick=picks)
    def complete_password_reset(self, pick: int) -> None:
        live = [r for r in self.resets if r.user and not r.gone and self.now < r.expires]
        r = live[pick % len(live)] if live and pick % 5 else self.resets[pick % len(self.resets)]
        call = self.service.complete_password_reset
        new = self.new_password()
        if r.gone or r.user is None:
            self.expect(ts.ChallengeExpired, call, r.token, new, reason="unknown")
            return
        u = self.users[r.user]
        r.gone = True  # single use, whatever happens next
        if not u.active:
            self.expect(ts.ChallengeExpired, call, r.token, new, reason="unknown")
            return
        if self.now >= r.expires:
            self.expect(ts.ChallengeExpired, call, r.token, new, reason="expired")
            return
        before = self.two_factor_states()
        assert call(r.token, new) is None  # R86: nobody is logged in
        assert self.two_factor_states() == before  # R87: 2FA untouched, of anyone
        u.password = new
        u.generation += 1  # every session of the user ends
        self.end_logins_under_way(r.user)

    @precondition(lambda self: self.resets)
    @rule(pick=picks)
    def reset_token_is_no_login_challenge(self, pick: int) -> None:
        """R87: a reset token is never accepted where a login challenge is asked for."""
        r = self.resets[pick % len(self.resets)]
        u = self.users[r.user] if r.user is not None else None
        code = u.phone.code() if u is not None and u.phone is not None else "123456"
        call = self.service.complete_login
        self.expect(ts.ChallengeExpired, call, r.token, code, reason="unknown")

    # -- time and maintenance -------------------------------------------------------------------

    @rule(seconds=st.sampled_from([1, 2, 29, 30, 31, 65, 301, 601, 3_600, 13 * 3_600]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(seconds=st.sampled_from([30, 301, 13 * 3_600, 25 * 3_600]))
    def purge_expired(self, seconds: int) -> None:
        self.clock.advance(seconds)
        dead_challenges = [c for c in self.challenges if not c.gone and self.now >= c.expires]
        dead_resets = [
            r for r in self.resets if r.user is not None and not r.gone and self.now >= r.expires
        ]
        dead_sessions = [
            s
            for s in self.sessions
            if not s.logged_out and self.now >= s.issued + SETTINGS.session_ttl
        ]
        # R98: a device row goes once it expires, not before, however dead it is.
        dead_devices = [d for d in self.devices if not d.gone and self.now >= d.expires]
        # R11: an enrolment that expired unconfirmed loses its secret, nothing else.
        lapsed = [
            u
            for u in self.present()
            if u.pending_expires is not None and self.now >= u.pending_expires
        ]
        # R6: a counter that no longer blocks and would start again from 1 goes.
        forgotten = self.now - max(
            SETTINGS.code_throttle.forget_after,
            SETTINGS.password_throttle.forget_after,
            SETTINGS.client_throttle.forget_after,
        )
        dead_throttles = [
            t
            for t in (
                *self.email_throttle.values(),
                *self.code_throttle.values(),
                *self.reset_throttle.values(),
            )
            if t.last_failure is not None and t.last_failure < forgotten and not t.blocked(self.now)
        ]
        assert self.service.purge_expired() == (
            len(dead_challenges)
            + len(dead_resets)
            + len(dead_sessions)
            + len(dead_devices)
            + len(lapsed)
            + len(dead_throttles)
        )
        for c in (*dead_challenges, *dead_resets):
            c.gone = True
        for s in dead_sessions:
            s.logged_out = True
        for d in dead_devices:
            d.gone = True
        for u in lapsed:
            u.pending, u.pending_expires = None, None
        for t in dead_throttles:
            t.clear()
        self.store_holds_the_models_enrolments_and_counters()

    def store_holds_the_models_enrolments_and_counters(self) -> None:
        """What the purge counted is what the store held: pending expiries, counters (R6)."""
        with self.store.transaction(write=False) as tx:
            for name, u in self.users.items():
                stored = tx.get_user(u.user.id)
                if u.deleted:
                    assert stored is None
                else:
                    assert stored is not None
                    assert stored.two_factor.pending_expires_at == u.pending_expires
                    assert (stored.two_factor.pending_secret is None) == (u.pending is None)
                email = u.user.email_key
                for key, t in (
                    (ThrottleKey(ThrottleScope.EMAIL, email), self.email_throttle[name]),
                    (ThrottleKey(ThrottleScope.USER, u.user.id), self.code_throttle[name]),
                    (ThrottleKey(ThrottleScope.PASSWORD_RESET, email), self.reset_throttle[name]),
                ):
                    row = tx.get_throttle(key)
                    if t.last_failure is None:
                        assert row is None, key
                    else:
                        assert row is not None, key
                        assert (row.failures, row.blocked_until, row.last_failure_at) == (
                            t.failures,
                            t.blocked_until,
                            t.last_failure,
                        )

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def sessions_are_exactly_as_valid_as_the_model_says(self) -> None:
        for s in self.sessions:
            error = self.session_error(s)
            if self.users[s.user].role in ADMIN_ROLES:
                before = s.account_generation < self.account_generation
            else:
                before = s.members_generation < self.members_generation
            if before:  # R21, R96: issued before the requirement began to cover its user
                assert error is not None
            if error is not None:
                self.expect(ts.SessionInvalid, self.service.check_session, s.token, reason=error)
                continue
            u = self.users[s.user]
            session = self.service.check_session(s.token)
            assert session.user_id == u.user.id
            assert session.second_factor_at == s.second_factor_at  # R99
            assert session.enroll_by == self.enroll_by(u)  # R95
            if self.covers(u):  # R3/R21: no session without 2FA while required, but in grace
                assert session.two_factor_enabled or (
                    session.enroll_by is not None and self.now < session.enroll_by
                )

    @invariant()
    def the_store_agrees_on_who_has_2fa(self) -> None:
        with self.store.transaction(write=False) as tx:
            account = tx.get_account(self.account.id)
            assert account is not None
            assert account.two_factor_required == self.required
            assert (account.required_of, account.grace_period) == (self.of, self.grace)
            assert (account.required_since, account.members_required_since) == (
                self.required_since,
                self.members_required_since,
            )
            for name, u in self.users.items():
                stored = tx.get_user(u.user.id)
                devices = {d.device_id for d in self.devices if d.user == name and not d.gone}
                assert {d.id for d in tx.devices_of(u.user.id)} == devices  # R98
                if u.deleted:  # R82: the row is gone, and so is the email
                    assert stored is None
                    assert tx.find_user_by_email(u.user.email_key) is None
                    continue
                assert stored is not None
                assert stored.two_factor.enabled == (u.phone is not None)
                assert stored.backup_codes_remaining == len(u.backup)
                assert (stored.role, stored.active) == (u.role, u.active)

    @invariant()
    def only_owners_changed_the_requirement_or_reset_others(self) -> None:
        with self.store.transaction(write=False) as tx:
            events = tx.audit_events(self.account.id, 1_000_000)
        for event in events:
            if event.outcome is not ts.Outcome.SUCCESS:
                continue
            if event.action in OWNERS_CHANGES or (
                event.action == "two_factor_reset" and event.reason == "by_owner"
            ):
                assert event.actor_id in self.owner_ids, event

    @invariant()
    def the_account_keeps_an_active_owner(self) -> None:
        assert self.active_owners()  # R80-R82
        with self.store.transaction(write=False) as tx:
            stored = [tx.get_user(u.user.id) for u in self.users.values()]
        assert any(u is not None and u.active and u.role is ts.Role.OWNER for u in stored)

    @invariant()
    def deactivated_and_deleted_users_hold_no_valid_session(self) -> None:
        for s in self.sessions:
            u = self.users[s.user]
            if u.deleted or not u.active or s.logged_out:
                assert self.session_error(s) is not None
                self.expect(ts.SessionInvalid, self.service.check_session, s.token)


class SQLiteMachine(TwoStepMachine):
    store_kind = "sqlite"


_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestRulesModelInMemory = TwoStepMachine.TestCase
TestRulesModelInMemory.settings = _SETTINGS
TestRulesModelOnSQLite = SQLiteMachine.TestCase
TestRulesModelOnSQLite.settings = settings(_SETTINGS, max_examples=40)
