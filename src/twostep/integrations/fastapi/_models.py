"""The request and response bodies of the API, as pydantic models (OpenAPI shows them)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

import twostep as ts


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
    message: str = Field(description="What to tell a person, in the language asked for.")
    rule: str | None = None
    retry_after: int | None = None
    attempts_left: int | None = None


STATUS: dict[type[ts.TwoStepError], int] = {
    ts.InvalidInput: 422,
    ts.InvalidCredentials: 400,
    ts.InvalidCode: 400,
    ts.SessionInvalid: 401,
    ts.NotAllowed: 403,
    ts.UnknownUser: 404,
    ts.UnknownAccount: 404,
    ts.EmailTaken: 409,
    ts.ChallengeExpired: 410,
    ts.Throttled: 429,
    ts.ConfigurationError: 500,
    ts.StoreError: 503,
}
ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut} for status in sorted(set(STATUS.values()))
}


def logged_in(done: ts.LoggedIn) -> LoginOut:
    codes = BackupCodesOut.of(done.backup_codes) if done.backup_codes is not None else None
    return LoginOut(
        status="logged_in",
        token=done.session.token,
        user=UserOut.of(done.session),
        expires_at=done.session.expires_at,
        backup_codes=codes,
    )
