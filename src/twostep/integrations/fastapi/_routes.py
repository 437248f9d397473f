"""The API's routes: logging in, one's own 2FA, administration (all ``async``).

Each route awaits :class:`~twostep.AsyncTwoStep`, so Argon2 and the store's work run
in worker threads and the event loop serves other requests meanwhile.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

import twostep as ts

from ._app import CurrentSession, Service, client_of
from ._models import (
    ERRORS,
    AccountOut,
    BackupCodesOut,
    ChallengeCodeIn,
    CodeIn,
    Credentials,
    EnrollmentOut,
    EventOut,
    LoginOut,
    MemberOut,
    RequiredIn,
    StatusOut,
    UserOut,
    logged_in,
)

router = APIRouter(responses=ERRORS)

# -- logging in (R1-R6) ----------------------------------------------------------


@router.post("/login", tags=["login"], response_model_exclude_none=True)
async def login(body: Credentials, request: Request, twostep: Service) -> LoginOut:
    """Step 1: email and password (R1-R3)."""
    step = await twostep.login(body.email, body.password, client=client_of(request))
    match step:
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
    raise AssertionError(step)  # unreachable: LoginStep has these three kinds


@router.post("/login/code", tags=["login"], response_model_exclude_none=True)
async def login_code(body: ChallengeCodeIn, request: Request, twostep: Service) -> LoginOut:
    """Step 2: a code from the app or a backup code (R1, R4-R6).

    Or the first code of the enrolment that the login asked for (R3; backup codes
    come back).
    """
    return logged_in(
        await twostep.complete_login(body.challenge, body.code, client=client_of(request))
    )


@router.post("/logout", status_code=204, tags=["login"])
async def logout(session: CurrentSession, twostep: Service) -> Response:
    await twostep.logout(session.token)
    return Response(status_code=204)


@router.get("/me", tags=["login"])
async def me(session: CurrentSession) -> UserOut:
    return UserOut.of(session)


# -- one's own 2FA (R5, R10, R11, R30-R32, R40) ---------------------------------------


@router.get("/security", tags=["security"])
async def security(session: CurrentSession, twostep: Service) -> StatusOut:
    """2FA on or off, required or not, backup codes left (R5)."""
    s = await twostep.two_factor_status(session.token)
    return StatusOut(
        enabled=s.enabled,
        required_by_account=s.required_by_account,
        backup_codes_remaining=s.backup_codes_remaining,
        enrollment_pending=s.enrollment_pending,
    )


@router.post("/security/enrollment", tags=["security"])
async def enroll(session: CurrentSession, twostep: Service) -> EnrollmentOut:
    """Turn 2FA on (R30): nothing changes until a code confirms it (R11)."""
    return EnrollmentOut.of(await twostep.begin_enrollment(session.token))


@router.post("/security/enrollment/confirm", tags=["security"])
async def confirm(body: CodeIn, session: CurrentSession, twostep: Service) -> BackupCodesOut:
    """A code from the new app turns 2FA on (R10) or finishes a reset (R40)."""
    return BackupCodesOut.of(await twostep.confirm_enrollment(session.token, body.code))


@router.post("/security/disable", tags=["security"])
async def disable(body: CodeIn, session: CurrentSession, twostep: Service) -> StatusOut:
    """Turn 2FA off with a current code, when the account does not require it (R31, R32)."""
    await twostep.disable_two_factor(session.token, body.code)
    return await security(session, twostep)


@router.post("/security/reset", tags=["security"])
async def reset(body: CodeIn, session: CurrentSession, twostep: Service) -> EnrollmentOut:
    """Move to a new phone when the account requires 2FA (R40); confirm as above."""
    return EnrollmentOut.of(await twostep.begin_reset(session.token, body.code))


@router.post("/security/step-up", tags=["security"])
async def step_up(body: CodeIn, session: CurrentSession, twostep: Service) -> UserOut:
    """Confirm with a code before an owner's sensitive change (R99: ``step_up_required``)."""
    return UserOut.of(await twostep.step_up(session, body.code))


@router.post("/security/backup-codes", tags=["security"])
async def regenerate(body: CodeIn, session: CurrentSession, twostep: Service) -> BackupCodesOut:
    """Replace every backup code (R5)."""
    return BackupCodesOut.of(await twostep.regenerate_backup_codes(session.token, body.code))


# -- administration (R20-R22, R41, R50, R60) ----------------------------------------


@router.get("/admin/account", tags=["administration"])
async def account(session: CurrentSession, twostep: Service) -> AccountOut:
    """Owners and managers: the requirement and every user's 2FA status (R50)."""
    o = await twostep.two_factor_overview(session.token)
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


@router.put("/admin/account/two-factor-required", tags=["administration"])
async def require(body: RequiredIn, session: CurrentSession, twostep: Service) -> RequiredIn:
    """Owners only (R20, R22). Turning it on ends every session, the caller's too (R21)."""
    await twostep.set_two_factor_required(session.token, body.required)
    return body


@router.post("/admin/users/{user_id}/reset-two-factor", status_code=204, tags=["administration"])
async def reset_user(user_id: str, session: CurrentSession, twostep: Service) -> Response:
    """Owners only: remove another user's 2FA; their sessions end (R41)."""
    await twostep.reset_two_factor(session.token, user_id)
    return Response(status_code=204)


@router.get("/admin/audit", tags=["administration"])
async def audit(
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
        for e in await twostep.audit_trail(session.token, limit=limit)
    ]
