"""``AsyncTwoStep``: the façade for ``async`` code, which never blocks the event loop.

Every operation of :class:`TwoStep` hashes a password with Argon2 or talks to the
store (SQLite or PostgreSQL, both blocking), or both; called from a coroutine, either
would stall every other request that the loop serves. ``AsyncTwoStep`` runs each call
in a worker thread, where Argon2 (a C call that releases the GIL) and the store's I/O
go on while the loop serves others. The stores are made for this: ``SQLiteStore``
keeps one connection per thread and ``PostgresStore`` a pool.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from ._audit import AuditAction, AuditEvent, Outcome
from ._domain import Account, RequiredOf, Role, User
from ._provisioning import Enrollment
from ._results import (
    AccountOverview,
    BackupCodes,
    CodeRequired,
    DeviceInfo,
    DeviceToken,
    EnrollmentRequired,
    LoggedIn,
    LoginStep,
    PasswordReset,
    SecurityKeyInfo,
    Session,
    TwoFactorStatus,
)
from ._service import SessionRef, TwoStep
from ._stories import maintenance

if TYPE_CHECKING:
    from ._audit_pages import AuditPage
    from ._user_pages import UserPage

__all__ = ["AsyncTwoStep"]

T = TypeVar("T")


class AsyncTwoStep:
    """A :class:`TwoStep` for ``async`` code: the same operations, as coroutines.

    Each call runs the ``TwoStep`` call in a worker thread of ``executor`` (by default
    the event loop's default executor); the loop goes on meanwhile. Bound the
    executor (``ThreadPoolExecutor(max_workers=...)``) to bound how many Argon2
    hashes, each taking ``Settings.password_hash.memory_cost`` KiB, run at once.
    The results and the errors are those of ``TwoStep``.
    """

    def __init__(self, service: TwoStep, *, executor: Executor | None = None) -> None:
        if not isinstance(service, TwoStep):
            msg = f"AsyncTwoStep wraps a TwoStep, not {type(service).__name__}"
            raise TypeError(msg)
        self._sync = service
        self._executor = executor

    @property
    def sync(self) -> TwoStep:
        """The ``TwoStep`` that does the work, for code that runs in a thread already."""
        return self._sync

    @property
    def issuer(self) -> str:
        """The issuer that authenticator apps show."""
        return self._sync.issuer

    def __repr__(self) -> str:
        return f"AsyncTwoStep({self._sync!r})"

    async def _run(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call)

    async def create_account(self, name: str) -> Account:
        """A new account (organisation), with no users yet."""
        return await self._run(functools.partial(self._sync.create_account, name))

    async def create_user(
        self, account_id: str, email: str, password: str, role: Role | str = Role.MEMBER
    ) -> User:
        """A new user of an account; emails are unique across the installation."""
        return await self._run(
            functools.partial(self._sync.create_user, account_id, email, password, role)
        )

    async def import_user(
        self,
        account_id: str,
        email: str,
        *,
        role: Role | str = Role.MEMBER,
        password_hash: str | None = None,
        user_id: str | None = None,
    ) -> User:
        """R90-R93: a user who already exists in the host, with its hash or with none."""
        return await self._run(
            functools.partial(
                self._sync.import_user,
                account_id,
                email,
                role=role,
                password_hash=password_hash,
                user_id=user_id,
            )
        )

    async def login(
        self, email: str, password: str, *, client: str | None = None, device: str | None = None
    ) -> LoginStep:
        """Step 1: email and password. What comes next depends on the user (R1-R3)."""
        return await self._run(
            functools.partial(self._sync.login, email, password, client=client, device=device)
        )

    async def complete_login(
        self,
        challenge: str | CodeRequired | EnrollmentRequired,
        code: str,
        *,
        client: str | None = None,
    ) -> LoggedIn:
        """Step 2: an OTP or a backup code (R1, R4-R6), or the enrolment's first code (R3)."""
        return await self._run(
            functools.partial(self._sync.complete_login, challenge, code, client=client)
        )

    async def begin_second_step(self, user_id: str, *, client: str | None = None) -> LoginStep:
        """R93/R94: the host checked step 1 itself; what comes next, as after :meth:`login`."""
        return await self._run(
            functools.partial(self._sync.begin_second_step, user_id, client=client)
        )

    async def security_key_login_options(self, challenge: str | CodeRequired) -> str:
        """R103: the WebAuthn request options of a login's second step, as JSON text."""
        return await self._run(functools.partial(self._sync.security_key_login_options, challenge))

    async def complete_login_with_security_key(
        self, challenge: str | CodeRequired, assertion: str, *, client: str | None = None
    ) -> LoggedIn:
        """R103: step 2 with a security key's assertion instead of a code."""
        return await self._run(
            functools.partial(
                self._sync.complete_login_with_security_key, challenge, assertion, client=client
            )
        )

    async def check_session(self, session: SessionRef) -> Session:
        """The session behind a token, if it is still valid (R21, R41); else ``SessionInvalid``."""
        return await self._run(functools.partial(self._sync.check_session, session))

    async def logout(self, session: SessionRef) -> None:
        """End one session. Logging out an unknown or ended session does nothing."""
        return await self._run(functools.partial(self._sync.logout, session))

    async def step_up(self, session: SessionRef, code: str) -> Session:
        """R99: pass a code again in this session, before a sensitive action."""
        return await self._run(functools.partial(self._sync.step_up, session, code))

    async def step_up_with_security_key(self, session: SessionRef, assertion: str) -> Session:
        """R99, R103: a security key's assertion passed again in this session."""
        return await self._run(
            functools.partial(self._sync.step_up_with_security_key, session, assertion)
        )

    async def begin_security_key_registration(self, session: SessionRef) -> str:
        """R101: the WebAuthn creation options of a new security key, as JSON text."""
        return await self._run(
            functools.partial(self._sync.begin_security_key_registration, session)
        )

    async def finish_security_key_registration(
        self, session: SessionRef, credential: str, name: str
    ) -> SecurityKeyInfo:
        """R101: the browser's new credential, saved under ``name``."""
        return await self._run(
            functools.partial(
                self._sync.finish_security_key_registration, session, credential, name
            )
        )

    async def list_security_keys(self, session: SessionRef) -> tuple[SecurityKeyInfo, ...]:
        """R105: one's security keys, oldest first."""
        return await self._run(functools.partial(self._sync.list_security_keys, session))

    async def begin_security_key_check(self, session: SessionRef) -> str:
        """The WebAuthn request options to check one of one's keys, as JSON text."""
        return await self._run(functools.partial(self._sync.begin_security_key_check, session))

    async def remove_security_key(
        self,
        session: SessionRef,
        key_id: str,
        *,
        code: str | None = None,
        assertion: str | None = None,
    ) -> None:
        """R106: remove one of one's keys, with a code or a key's assertion."""
        return await self._run(
            functools.partial(
                self._sync.remove_security_key, session, key_id, code=code, assertion=assertion
            )
        )

    async def remember_device(
        self, session: SessionRef, *, valid_for: timedelta | None = None, label: str | None = None
    ) -> DeviceToken:
        """R98: after a code login, let this device skip the code step (never the password)."""
        return await self._run(
            functools.partial(self._sync.remember_device, session, valid_for=valid_for, label=label)
        )

    async def remembered_devices(self, session: SessionRef) -> list[DeviceInfo]:
        """R98: the user's devices that skip the code step now, oldest first."""
        return await self._run(functools.partial(self._sync.remembered_devices, session))

    async def forget_device(self, session: SessionRef, device_id: str) -> bool:
        """R98: one of the user's devices no longer skips the code step."""
        return await self._run(functools.partial(self._sync.forget_device, session, device_id))

    async def change_password(
        self, session: SessionRef, current: str, new: str, *, code: str | None = None
    ) -> Session:
        """R85: a new password, with the current one and, with 2FA, a code."""
        return await self._run(
            functools.partial(self._sync.change_password, session, current, new, code=code)
        )

    async def begin_password_reset(self, email: str, *, client: str | None = None) -> PasswordReset:
        """R86: a token for the host to deliver to ``email``; the same answer for anyone."""
        return await self._run(
            functools.partial(self._sync.begin_password_reset, email, client=client)
        )

    async def complete_password_reset(self, token: str, new_password: str) -> None:
        """R86: set the password with a reset token; every session ends, nobody logs in."""
        return await self._run(
            functools.partial(self._sync.complete_password_reset, token, new_password)
        )

    async def change_email(
        self, session: SessionRef, new_email: str, *, password: str, code: str | None = None
    ) -> Session:
        """R88: a new email, with the current password and, with 2FA, a code."""
        return await self._run(
            functools.partial(
                self._sync.change_email, session, new_email, password=password, code=code
            )
        )

    async def two_factor_status(self, session: SessionRef) -> TwoFactorStatus:
        """The actor's own 2FA: on or off, required or not, backup codes left (R5)."""
        return await self._run(functools.partial(self._sync.two_factor_status, session))

    async def begin_enrollment(self, session: SessionRef) -> Enrollment:
        """R30: start turning 2FA on; nothing changes until :meth:`confirm_enrollment` (R11)."""
        return await self._run(functools.partial(self._sync.begin_enrollment, session))

    async def confirm_enrollment(self, session: SessionRef, code: str) -> BackupCodes:
        """R10/R40: a correct code from the app turns the new secret on; returns backup codes."""
        return await self._run(functools.partial(self._sync.confirm_enrollment, session, code))

    async def disable_two_factor(self, session: SessionRef, code: str) -> None:
        """R31/R32: turn one's own 2FA off with a current code, when not required."""
        return await self._run(functools.partial(self._sync.disable_two_factor, session, code))

    async def begin_reset(self, session: SessionRef, code: str) -> Enrollment:
        """R40: moving to a new phone when 2FA is required; the old one works until confirmed."""
        return await self._run(functools.partial(self._sync.begin_reset, session, code))

    async def regenerate_backup_codes(self, session: SessionRef, code: str) -> BackupCodes:
        """R5: replace every backup code with a fresh set, shown once."""
        return await self._run(functools.partial(self._sync.regenerate_backup_codes, session, code))

    async def set_two_factor_required(
        self,
        session: SessionRef,
        required: bool,
        *,
        of: RequiredOf | str = RequiredOf.EVERYONE,
        grace_period: timedelta | None = None,
    ) -> None:
        """R20-R22, R95, R96: owners turn the requirement on or off, and say for whom."""
        return await self._run(
            functools.partial(
                self._sync.set_two_factor_required,
                session,
                required,
                of=of,
                grace_period=grace_period,
            )
        )

    async def reset_two_factor(self, session: SessionRef, user_id: str) -> None:
        """R41: an owner removes another user's 2FA, secret and backup codes; their sessions end."""
        return await self._run(functools.partial(self._sync.reset_two_factor, session, user_id))

    async def operator_reset_two_factor(self, email: str) -> User:
        """R42: the installation's operator resets a user out of band (e.g. a sole owner)."""
        return await self._run(functools.partial(self._sync.operator_reset_two_factor, email))

    async def two_factor_overview(self, session: SessionRef) -> AccountOverview:
        """R50: owners and managers see which users have 2FA on."""
        return await self._run(functools.partial(self._sync.two_factor_overview, session))

    async def audit_trail(self, session: SessionRef, *, limit: int = 100) -> list[AuditEvent]:
        """R60: the account's newest audit events, newest first, for owners and managers."""
        return await self._run(functools.partial(self._sync.audit_trail, session, limit=limit))

    async def audit_page(
        self,
        session: SessionRef,
        *,
        limit: int = 100,
        cursor: str | None = None,
        action: AuditAction | str | None = None,
        user_id: str | None = None,
        outcome: Outcome | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AuditPage:
        """R50, R60, R76: a page of the account's audit events, newest first, filtered."""
        return await self._run(
            functools.partial(
                self._sync.audit_page,
                session,
                limit=limit,
                cursor=cursor,
                action=action,
                user_id=user_id,
                outcome=outcome,
                since=since,
                until=until,
            )
        )

    async def set_role(self, session: SessionRef, user_id: str, role: Role | str) -> None:
        """R80: an owner changes a user's role, keeping an active owner; demotions log out."""
        return await self._run(functools.partial(self._sync.set_role, session, user_id, role))

    async def deactivate_user(self, session: SessionRef, user_id: str) -> None:
        """R81: an owner deactivates another user: sessions end, login is refused, data stays."""
        return await self._run(functools.partial(self._sync.deactivate_user, session, user_id))

    async def reactivate_user(self, session: SessionRef, user_id: str) -> None:
        """R81: an owner lets a deactivated user log in again, with the 2FA they had."""
        return await self._run(functools.partial(self._sync.reactivate_user, session, user_id))

    async def delete_user(self, session: SessionRef, user_id: str) -> None:
        """R82: an owner deletes another user and their secrets; the email is free again."""
        return await self._run(functools.partial(self._sync.delete_user, session, user_id))

    async def set_email(self, session: SessionRef, user_id: str, new_email: str) -> None:
        """R89: an owner changes another user's email; that user's sessions end."""
        return await self._run(functools.partial(self._sync.set_email, session, user_id, new_email))

    async def list_users(
        self,
        session: SessionRef,
        *,
        limit: int = 100,
        cursor: str | None = None,
        role: Role | str | None = None,
        two_factor: bool | None = None,
        active: bool | None = None,
    ) -> UserPage:
        """R83: a page of the account's users, oldest first, for owners and managers."""
        return await self._run(
            functools.partial(
                self._sync.list_users,
                session,
                limit=limit,
                cursor=cursor,
                role=role,
                two_factor=two_factor,
                active=active,
            )
        )

    async def purge_expired(self) -> int:
        """Remove what can no longer matter; returns how many rows were deleted or cleared."""
        return await self._run(self._sync.purge_expired)

    async def reseal_secrets(
        self, *, batch: int = 200, progress: maintenance.Progress | None = None
    ) -> int:
        """Re-encrypt every TOTP secret not under the cipher's current key; returns how many."""
        return await self._run(
            functools.partial(self._sync.reseal_secrets, batch=batch, progress=progress)
        )
