"""``twostep demo``: the whole story of the rules, played on a throwaway database.

The database is a temporary SQLite file, the key is made for the run, and the clock
is a :class:`~twostep.testing.ManualClock`, so that the story is the same every time
and takes seconds; passwords and backup codes use the real default Argon2 settings.
The demo plays the phone itself (:class:`~twostep.testing.Phone`). Each step checks
its outcome, so a demo that finishes is also a smoke test of the library.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO, TypeVar

from ._audit import AuditEvent
from ._crypto import AESGCMKeyring
from ._domain import Role, User
from ._errors import (
    ChallengeExpired,
    InvalidCode,
    NotAllowed,
    SessionInvalid,
    Throttled,
    TwoStepError,
)
from ._results import BackupCodes, CodeRequired, EnrollmentRequired, LoggedIn, Session
from ._service import TwoStep
from ._settings import Settings
from .stores.sqlite import SQLiteStore
from .testing import ManualClock, Phone

__all__ = ["run_demo"]

E = TypeVar("E", bound=TwoStepError)
T = TypeVar("T")

PASSWORDS = {
    "ada@acme.example": "ada's long passphrase",
    "bob@acme.example": "bob's long passphrase",
    "cleo@acme.example": "cleo's long passphrase",
}


class DemoFailed(AssertionError):
    """The library did not behave as the rules say (the demo doubles as a smoke test)."""


class _Story:
    def __init__(self, out: TextIO, service: TwoStep, clock: ManualClock) -> None:
        self.out = out
        self.service = service
        self.clock = clock
        self.phones: dict[str, Phone] = {}
        self.backup: dict[str, list[str]] = {}
        self.emails: dict[str, str] = {}

    # -- printing ----------------------------------------------------

    def step(self, rules: str, title: str) -> None:
        self.out.write(f"\n{rules:<8}{title}\n")

    def say(self, text: str = "") -> None:
        self.out.write(f"{'':8}{text}\n" if text else "\n")

    def block(self, text: str) -> None:
        for line in text.rstrip("\n").split("\n"):
            self.say(line)

    # -- checks ------------------------------------------------------

    @staticmethod
    def expect(kind: type[T], value: object) -> T:
        if not isinstance(value, kind):
            msg = f"expected {kind.__name__}, got {type(value).__name__}"
            raise DemoFailed(msg)
        return value

    def refused(self, error: type[E], action: Callable[[], object]) -> E:
        """Run ``action``, which the rules say must fail with ``error``; show the refusal."""
        try:
            action()
        except error as caught:
            detail = f"reason={caught.reason!r}"
            if isinstance(caught, NotAllowed):
                detail += f", rule={caught.rule}"
            if isinstance(caught, InvalidCode) and caught.attempts_left is not None:
                detail += f", attempts_left={caught.attempts_left}"
            if isinstance(caught, Throttled):
                detail += f", retry_after={caught.retry_after}s"
            self.say(f"-> refused: {type(caught).__name__}({detail})")
            return caught
        msg = f"expected {error.__name__}"
        raise DemoFailed(msg)

    def revoked(self, who: str, session: Session) -> None:
        caught = self.refused(SessionInvalid, lambda: self.service.check_session(session))
        if caught.reason != "revoked":
            msg = f"{who}'s session: expected 'revoked', got {caught.reason!r}"
            raise DemoFailed(msg)

    # -- the phone ---------------------------------------------------

    def tick(self) -> None:
        """Wait for the phone to show a new code: one 30-second period (R4)."""
        self.clock.advance(self.service.settings.totp_period)

    def code(self, user: User) -> str:
        return self.phones[user.id].code()

    def wrong_code(self, user: User) -> str:
        phone = self.phones[user.id]
        valid = {phone.code(offset_steps=n) for n in (-1, 0, 1)}
        return next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in valid)

    def password_login(self, user: User) -> LoggedIn | CodeRequired | EnrollmentRequired:
        return self.service.login(user.email, PASSWORDS[user.email])

    def login_with_code(self, user: User) -> Session:
        step = self.expect(CodeRequired, self.password_login(user))
        self.tick()
        return self.service.complete_login(step, self.code(user)).session

    def show_codes(self, codes: BackupCodes) -> None:
        listed = list(codes)
        for i in range(0, len(listed), 5):
            self.say("   ".join(listed[i : i + 5]))


def run_demo(out: TextIO, *, issuer: str = "twostep") -> None:
    """Play the story on a temporary SQLite database and print it to ``out``."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="twostep-demo-") as tmp:
        store = SQLiteStore(Path(tmp) / "demo.db")
        try:
            clock = ManualClock()
            service = TwoStep(
                store,
                issuer=issuer,
                clock=clock,
                settings=Settings(),
                cipher=AESGCMKeyring.generate(),
            )
            _play(_Story(out, service, clock))
        finally:
            store.close()
    out.write(f"\nDone in {time.perf_counter() - started:.1f} s; the database is gone.\n")


def _play(s: _Story) -> None:
    svc = s.service
    s.out.write(
        "twostep demo: an account's users log in with a password and a code from an\n"
        "authenticator app. Each step names the rule it shows. The database is a temporary\n"
        "SQLite file, the clock is simulated (it jumps 30 s whenever the phone needs a new\n"
        "code), passwords are hashed with the real Argon2id settings.\n"
    )

    # -- the cast ----------------------------------------------------
    s.step("setup", "An account with an owner, a manager and a member")
    account = svc.create_account("Acme")
    ada = svc.create_user(account.id, "ada@acme.example", PASSWORDS["ada@acme.example"], "owner")
    bob = svc.create_user(account.id, "bob@acme.example", PASSWORDS["bob@acme.example"], "manager")
    cleo = svc.create_user(
        account.id, "cleo@acme.example", PASSWORDS["cleo@acme.example"], Role.MEMBER
    )
    for user in (ada, bob, cleo):
        s.emails[user.id] = user.email
        s.say(f"{user.email:<20} {user.role.value}")

    # -- R2 ----------------------------------------------------------
    s.step("R2", "Cleo (member, no 2FA) logs in with her password only")
    cleo_session = s.expect(LoggedIn, s.password_login(cleo)).session
    s.say("-> logged in: a session is issued after step 1")

    # -- R30, R10 ----------------------------------------------------
    s.step("R30 R10", "Ada (owner) turns 2FA on for herself")
    ada_session = s.expect(LoggedIn, s.password_login(ada)).session
    enrollment = svc.begin_enrollment(ada_session)
    s.say(f"Scan this QR code ({enrollment.issuer}: {enrollment.label}) with any TOTP app:")
    qr = enrollment.qr_text()
    encoding = getattr(s.out, "encoding", None) or "utf-8"
    try:
        qr.encode(encoding)
    except UnicodeEncodeError:
        s.say("(this terminal cannot draw the QR code; the link it holds:)")
        s.say(enrollment.uri)
    else:
        s.out.write(qr if qr.endswith("\n") else qr + "\n")
    s.say("or type the key:  " + enrollment.secret_groups)
    s.phones[ada.id] = Phone(enrollment.secret, s.clock)
    code = s.code(ada)
    s.say(f"The phone shows {code}; Ada types it.")
    codes = svc.confirm_enrollment(ada_session, code)
    s.say(f"-> 2FA on. Her {len(codes)} backup codes, shown once (only hashes are kept):")
    s.show_codes(codes)
    s.backup[ada.id] = list(codes)

    # -- R1 ----------------------------------------------------------
    s.step("R1", "Ada logs in again: a password is no longer enough")
    svc.logout(ada_session)
    step = s.expect(CodeRequired, s.password_login(ada))
    s.say("step 1, email + password -> CodeRequired")
    s.tick()
    used = s.code(ada)
    ada_session = svc.complete_login(step, used).session
    s.say(f"step 2, the code {used} from the phone -> logged in")

    # -- R4 ----------------------------------------------------------
    s.step("R4", "Someone replays that code at once, with Ada's password")
    step = s.expect(CodeRequired, s.password_login(ada))
    s.say(f"the code {used} again, in the same 30 seconds:")
    s.refused(InvalidCode, lambda: svc.complete_login(step, used))
    s.tick()
    svc.complete_login(step, s.code(ada))
    s.say("the next code from the phone works")

    # -- R5 ----------------------------------------------------------
    s.step("R5", "Ada has left her phone at home: a backup code works, once")
    backup = s.backup[ada.id][0]
    step = s.expect(CodeRequired, s.password_login(ada))
    svc.complete_login(step, backup)
    s.say(f"backup code {backup} -> logged in")
    status = svc.two_factor_status(ada_session)
    s.say(f"backup codes left: {status.backup_codes_remaining}")
    step = s.expect(CodeRequired, s.password_login(ada))
    s.say("the same backup code at the next login:")
    s.refused(InvalidCode, lambda: svc.complete_login(step, backup))
    s.tick()
    ada_session = svc.complete_login(step, s.code(ada)).session

    # -- R20 ---------------------------------------------------------
    s.step("R20", "Bob (manager) tries to require 2FA for everyone")
    bob_session = s.expect(LoggedIn, s.password_login(bob)).session
    s.refused(NotAllowed, lambda: svc.set_two_factor_required(bob_session, True))

    # -- R21 ---------------------------------------------------------
    s.step("R21", "Ada (owner) requires 2FA: everyone is logged out, Ada included")
    svc.set_two_factor_required(ada_session, True)
    for who, session in (("ada", ada_session), ("bob", bob_session), ("cleo", cleo_session)):
        s.say(f"{who}'s session:")
        s.revoked(who, session)

    # -- R3 ----------------------------------------------------------
    s.step("R3", "Cleo logs in: she must set 2FA up before she gets a session")
    required = s.expect(EnrollmentRequired, s.password_login(cleo))
    s.say(f"step 1 -> EnrollmentRequired; the key to scan: {required.enrollment.secret_groups}")
    s.phones[cleo.id] = Phone(required.enrollment.secret, s.clock)
    done = svc.complete_login(required, s.code(cleo))
    if done.backup_codes is None:
        msg = "an enrolment at login must hand out backup codes"
        raise DemoFailed(msg)
    cleo_session = done.session
    s.backup[cleo.id] = list(done.backup_codes)
    s.say("step 2, the first code from her app -> 2FA on and logged in; her")
    s.say(f"{len(done.backup_codes)} backup codes come with the session, shown once")
    required = s.expect(EnrollmentRequired, s.password_login(bob))
    s.phones[bob.id] = Phone(required.enrollment.secret, s.clock)
    bob_session = svc.complete_login(required, s.code(bob)).session
    s.say("Bob does the same")
    ada_session = s.login_with_code(ada)
    s.say("Ada, who has 2FA, logs in with a code as before")

    # -- R32 ---------------------------------------------------------
    s.step("R32", "Cleo tries to turn her 2FA off while the account requires it")
    s.tick()
    s.refused(NotAllowed, lambda: svc.disable_two_factor(cleo_session, s.code(cleo)))

    # -- R40, R11 ----------------------------------------------------
    s.step("R40 R11", "Cleo moves to a new phone")
    s.tick()
    reset = svc.begin_reset(cleo_session, s.code(cleo))
    s.say("a code from the old phone starts the reset; the new phone scans the new key")
    old_phone = s.phones[cleo.id]
    new_phone = Phone(reset.secret, s.clock)
    s.tick()
    step = s.expect(CodeRequired, s.password_login(cleo))
    svc.complete_login(step, old_phone.code())
    s.say("until the new phone is confirmed, the old one still logs her in (R11)")
    s.tick()
    new_codes = svc.confirm_enrollment(cleo_session, new_phone.code())
    s.phones[cleo.id] = new_phone
    s.say(f"new phone confirmed: new key, {len(new_codes)} new backup codes")
    s.tick()
    step = s.expect(CodeRequired, s.password_login(cleo))
    s.say("the old phone's code now:")
    s.refused(InvalidCode, lambda: svc.complete_login(step, old_phone.code()))
    cleo_session = svc.complete_login(step, new_phone.code()).session
    s.say("the new phone's code -> logged in")

    # -- R41 ---------------------------------------------------------
    s.step("R41", "Only an owner resets someone else's 2FA")
    s.say("Cleo (member) tries to reset Bob:")
    s.refused(NotAllowed, lambda: svc.reset_two_factor(cleo_session, bob.id))
    svc.reset_two_factor(ada_session, bob.id)
    s.say("Ada resets Bob -> his 2FA, key and backup codes are gone; his session ends:")
    s.revoked("bob", bob_session)
    s.expect(EnrollmentRequired, s.password_login(bob))
    s.say("his next login -> EnrollmentRequired (R3)")

    # -- R6 ----------------------------------------------------------
    s.step("R6", "Someone with Cleo's password guesses codes")
    step = s.expect(CodeRequired, s.password_login(cleo))
    for _ in range(svc.settings.challenge_max_attempts):
        s.refused(InvalidCode, lambda: svc.complete_login(step, s.wrong_code(cleo)))
    s.say("the login challenge is now dead:")
    s.refused(ChallengeExpired, lambda: svc.complete_login(step, s.wrong_code(cleo)))
    step = s.expect(CodeRequired, s.password_login(cleo))
    s.say("a new login does not reset the count kept for Cleo:")
    s.refused(InvalidCode, lambda: svc.complete_login(step, s.wrong_code(cleo)))
    s.say("now even the right code is not checked:")
    throttled = s.refused(Throttled, lambda: svc.complete_login(step, s.code(cleo)))
    s.clock.advance(throttled.retry_after)
    s.tick()
    cleo_session = svc.complete_login(step, s.code(cleo)).session
    s.say(f"{throttled.retry_after}s later, the right code -> logged in, the count is cleared")

    # -- R50 ---------------------------------------------------------
    s.step("R50", "Who has 2FA? Owners and managers may look; members may not")
    s.say("Cleo asks:")
    s.refused(NotAllowed, lambda: svc.two_factor_overview(cleo_session))
    overview = svc.two_factor_overview(ada_session)
    s.say(f"Ada asks -> account {overview.name!r}, 2FA required: {overview.two_factor_required}")
    for row in overview.users:
        state = "on " if row.two_factor_enabled else "off"
        s.say(
            f"  {row.email:<20} {row.role.value:<8} 2FA {state}  "
            f"backup codes left: {row.backup_codes_remaining}"
        )

    # -- R22, R31 ----------------------------------------------------
    s.step("R22 R31", "Ada lifts the requirement; Cleo then turns her own 2FA off")
    svc.set_two_factor_required(ada_session, False)
    s.say("requirement off: nobody is logged out, and whoever has 2FA keeps it")
    svc.check_session(cleo_session)
    s.tick()
    svc.disable_two_factor(cleo_session, s.code(cleo))
    s.say("Cleo turns 2FA off with a current code")
    s.expect(LoggedIn, s.password_login(cleo))
    s.say("her next login needs the password only (R2)")

    # -- R42 ---------------------------------------------------------
    s.step("R42", "Ada, the only owner, has lost her phone and her backup codes")
    s.say("nobody in the account may reset her, so the operator does, out of band:")
    s.say(f"$ twostep reset-2fa {ada.email}")
    svc.operator_reset_two_factor(ada.email)
    s.say("her 2FA, key and backup codes are gone; her session:")
    s.revoked("ada", ada_session)
    ada_session = s.expect(LoggedIn, s.password_login(ada)).session
    s.say("she logs in with her password and may set 2FA up again")

    # -- R60 ---------------------------------------------------------
    s.step("R60", "The audit trail, as owners and managers see it (nothing secret in it)")
    events = list(reversed(svc.audit_trail(ada_session, limit=1000)))
    _audit_table(s, events)


def _audit_table(s: _Story, events: list[AuditEvent]) -> None:
    def who(user_id: str | None, fallback: str) -> str:
        return s.emails.get(user_id, user_id) if user_id is not None else fallback

    rows = [
        (
            event.at.strftime("%H:%M:%S"),
            who(event.actor_id, event.actor),
            event.action,
            who(event.target_id, ""),
            event.outcome.value,
            event.reason or "",
        )
        for event in events
    ]
    header = ("time", "actor", "action", "target", "outcome", "reason")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    s.out.write(line(header) + "\n")
    s.out.write("  ".join("-" * w for w in widths) + "\n")
    for row in rows:
        s.out.write(line(row) + "\n")
    s.out.write(f"{len(rows)} events\n")
