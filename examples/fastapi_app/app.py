"""A JSON API on FastAPI with every flow of twostep's rules; OpenAPI docs at /docs.

Run it from the repository root:
``uvicorn --factory examples.fastapi_app.app:create_app``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request, Response
from pydantic import BaseModel, Field

import twostep as ts

from . import seed
from .twostep_fastapi import (
    STATUS,
    CurrentSession,
    Service,
    client_of,
    install,
)

HERE = Path(__file__).resolve().parent
ISSUER = "twostep FastAPI example"


def make_service() -> ts.TwoStep:
    """The ``TwoStep`` of the example, on SQLite.

    The database is ``TWOSTEP_DATABASE`` (a file path, as for the ``twostep`` command;
    default: a file beside this one); keys come from ``TWOSTEP_KEYS`` /
    ``TWOSTEP_KEY_FILE``, else from a key file made on first run.
    """
    store = ts.SQLiteStore(os.environ.get("TWOSTEP_DATABASE") or HERE / "twostep-example.db")
    cipher = None  # TwoStep reads TWOSTEP_KEYS or TWOSTEP_KEY_FILE itself
    if not os.environ.get("TWOSTEP_KEYS") and not os.environ.get("TWOSTEP_KEY_FILE"):
        key_file = HERE / "twostep.key"
        if not key_file.exists():
            key_file.touch(mode=0o600)
            key_file.write_text(ts.AESGCMKeyring.new_key_line() + "\n")
        cipher = ts.AESGCMKeyring.from_string(key_file.read_text())
    service = ts.TwoStep(store, issuer=ISSUER, cipher=cipher)
    if not seed.is_seeded(store):
        seed.seed(service)
    print(seed.describe(), flush=True)
    return service


# -- request and response bodies ---------------------------------------------------------


class Credentials(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class CodeIn(BaseModel):
    code: str = Field(max_length=64, description="A 6-digit code from the app, or a backup code.")


class ChallengeCodeIn(CodeIn):
    challenge: str = Field(max_length=256, description="From the answer of POST /login.")


class RequiredIn(BaseModel):
    required: bool


class UserOut(BaseModel):
    user_id: str
    account_id: str
    email: str
    role: ts.Role
    two_factor_enabled: bool

    @classmethod
    def of(cls, session: ts.Session) -> UserOut:
        return cls(
            user_id=session.user_id,
            account_id=session.account_id,
            email=session.email,
            role=session.role,
            two_factor_enabled=session.two_factor_enabled,
        )


class EnrollmentOut(BaseModel):
    """What a set-up screen shows (R10): the QR code and the same key as text."""

    secret: str
    secret_groups: str
    otpauth_uri: str
    qr_svg: str
    issuer: str
    label: str
    expires_at: datetime

    @classmethod
    def of(cls, e: ts.Enrollment) -> EnrollmentOut:
        return cls(
            secret=e.secret,
            secret_groups=e.secret_groups,
            otpauth_uri=e.uri,
            qr_svg=e.qr_svg(),
            issuer=e.issuer,
            label=e.label,
            expires_at=e.expires_at,
        )


class BackupCodesOut(BaseModel):
    """Shown once (R10); ``text`` is the same codes as a file to download."""

    codes: list[str]
    text: str

    @classmethod
    def of(cls, codes: ts.BackupCodes) -> BackupCodesOut:
        return cls(codes=list(codes), text=codes.as_text())


class LoginOut(BaseModel):
    """The answer to a login step.

    ``logged_in`` (R2, or after step 2) carries ``token``; ``code_required`` (R1)
    and ``enrollment_required`` (R3) carry the ``challenge`` for POST /login/code.
    """

    status: Literal["logged_in", "code_required", "enrollment_required"]
    token: str | None = None
    user: UserOut | None = None
    challenge: str | None = None
    expires_at: datetime | None = None
    enrollment: EnrollmentOut | None = None
    backup_codes: BackupCodesOut | None = None


class StatusOut(BaseModel):
    enabled: bool
    required_by_account: bool
    backup_codes_remaining: int
    enrollment_pending: bool


class MemberOut(BaseModel):
    user_id: str
    email: str
    role: ts.Role
    two_factor_enabled: bool
    backup_codes_remaining: int


class AccountOut(BaseModel):
    account_id: str
    name: str
    two_factor_required: bool
    users: list[MemberOut]


class EventOut(BaseModel):
    at: datetime
    action: str
    outcome: str
    actor: str
    actor_id: str | None
    target_id: str | None
    reason: str | None


class ErrorOut(BaseModel):
    error: str = Field(description="A stable, machine-readable reason.")
    type: str = Field(description="The twostep error class.")
    message: str
    rule: str | None = None
    retry_after: int | None = None
    attempts_left: int | None = None


ERRORS = {status: {"model": ErrorOut} for status in sorted(set(STATUS.values()))}


def logged_in(done: ts.LoggedIn) -> LoginOut:
    codes = BackupCodesOut.of(done.backup_codes) if done.backup_codes is not None else None
    return LoginOut(
        status="logged_in",
        token=done.session.token,
        user=UserOut.of(done.session),
        expires_at=done.session.expires_at,
        backup_codes=codes,
    )


def create_app(service: ts.TwoStep | None = None) -> FastAPI:
    """The app; tests pass their own ``service`` (a manual clock, cheap settings)."""
    app = FastAPI(
        title="twostep FastAPI example",
        description="Password + TOTP two-step login. Authenticate with "
        "`Authorization: Bearer <token>`, the token from POST /login.",
        responses=ERRORS,  # type: ignore[arg-type]
    )
    install(app, service if service is not None else make_service())

    # -- logging in (R1-R6) ----------------------------------------------------------

    @app.post("/login", tags=["login"], response_model_exclude_none=True)
    def login(body: Credentials, request: Request, twostep: Service) -> LoginOut:
        """Step 1: email and password (R1-R3)."""
        match twostep.login(body.email, body.password, client=client_of(request)):
            case ts.LoggedIn() as done:  # R2
                return logged_in(done)
            case ts.CodeRequired(challenge=challenge, expires_at=expires_at):  # R1
                return LoginOut(status="code_required", challenge=challenge, expires_at=expires_at)
            case ts.EnrollmentRequired() as step:  # R3: set up 2FA to finish logging in
                return LoginOut(
                    status="enrollment_required",
                    challenge=step.challenge,
                    expires_at=step.expires_at,
                    enrollment=EnrollmentOut.of(step.enrollment),
                )
        msg = "unreachable"
        raise AssertionError(msg)

    @app.post("/login/code", tags=["login"], response_model_exclude_none=True)
    def login_code(body: ChallengeCodeIn, request: Request, twostep: Service) -> LoginOut:
        """Step 2: a code from the app or a backup code (R1, R4-R6).

        Or the first code of the enrolment that the login asked for (R3; backup codes
        come back).
        """
        return logged_in(
            twostep.complete_login(body.challenge, body.code, client=client_of(request))
        )

    @app.post("/logout", status_code=204, tags=["login"])
    def logout(session: CurrentSession, twostep: Service) -> Response:
        twostep.logout(session.token)
        return Response(status_code=204)

    @app.get("/me", tags=["login"])
    def me(session: CurrentSession) -> UserOut:
        return UserOut.of(session)

    # -- one's own 2FA (R5, R10, R11, R30-R32, R40) ---------------------------------------

    @app.get("/security", tags=["security"])
    def security(session: CurrentSession, twostep: Service) -> StatusOut:
        """2FA on or off, required or not, backup codes left (R5)."""
        s = twostep.two_factor_status(session.token)
        return StatusOut(
            enabled=s.enabled,
            required_by_account=s.required_by_account,
            backup_codes_remaining=s.backup_codes_remaining,
            enrollment_pending=s.enrollment_pending,
        )

    @app.post("/security/enrollment", tags=["security"])
    def enroll(session: CurrentSession, twostep: Service) -> EnrollmentOut:
        """Turn 2FA on (R30): nothing changes until a code confirms it (R11)."""
        return EnrollmentOut.of(twostep.begin_enrollment(session.token))

    @app.post("/security/enrollment/confirm", tags=["security"])
    def confirm(body: CodeIn, session: CurrentSession, twostep: Service) -> BackupCodesOut:
        """A code from the new app turns 2FA on (R10) or finishes a reset (R40)."""
        return BackupCodesOut.of(twostep.confirm_enrollment(session.token, body.code))

    @app.post("/security/disable", tags=["security"])
    def disable(body: CodeIn, session: CurrentSession, twostep: Service) -> StatusOut:
        """Turn 2FA off with a current code, when the account does not require it (R31, R32)."""
        twostep.disable_two_factor(session.token, body.code)
        return security(session, twostep)

    @app.post("/security/reset", tags=["security"])
    def reset(body: CodeIn, session: CurrentSession, twostep: Service) -> EnrollmentOut:
        """Move to a new phone when the account requires 2FA (R40); confirm as above."""
        return EnrollmentOut.of(twostep.begin_reset(session.token, body.code))

    @app.post("/security/backup-codes", tags=["security"])
    def regenerate(body: CodeIn, session: CurrentSession, twostep: Service) -> BackupCodesOut:
        """Replace every backup code (R5)."""
        return BackupCodesOut.of(twostep.regenerate_backup_codes(session.token, body.code))

    # -- administration (R20-R22, R41, R50, R60) ----------------------------------------

    @app.get("/admin/account", tags=["administration"])
    def account(session: CurrentSession, twostep: Service) -> AccountOut:
        """Owners and managers: the requirement and every user's 2FA status (R50)."""
        o = twostep.two_factor_overview(session.token)
        users = [
            MemberOut(
                user_id=u.user_id,
                email=u.email,
                role=u.role,
                two_factor_enabled=u.two_factor_enabled,
                backup_codes_remaining=u.backup_codes_remaining,
            )
            for u in o.users
        ]
        return AccountOut(
            account_id=o.account_id,
            name=o.name,
            two_factor_required=o.two_factor_required,
            users=users,
        )

    @app.put("/admin/account/two-factor-required", tags=["administration"])
    def require(body: RequiredIn, session: CurrentSession, twostep: Service) -> RequiredIn:
        """Owners only (R20, R22). Turning it on ends every session, the caller's too (R21)."""
        twostep.set_two_factor_required(session.token, body.required)
        return body

    @app.post("/admin/users/{user_id}/reset-two-factor", status_code=204, tags=["administration"])
    def reset_user(user_id: str, session: CurrentSession, twostep: Service) -> Response:
        """Owners only: remove another user's 2FA; their sessions end (R41)."""
        twostep.reset_two_factor(session.token, user_id)
        return Response(status_code=204)

    @app.get("/admin/audit", tags=["administration"])
    def audit(
        session: CurrentSession,
        twostep: Service,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[EventOut]:
        """Owners and managers: the account's audit trail, newest first (R60)."""
        return [
            EventOut(
                at=e.at,
                action=e.action,
                outcome=e.outcome,
                actor=e.actor,
                actor_id=e.actor_id,
                target_id=e.target_id,
                reason=e.reason,
            )
            for e in twostep.audit_trail(session.token, limit=limit)
        ]

    return app
