"""``TwoStep``: the one public façade, a method per user story of the rules (R1-R61).

It holds the installation's parts (store, clock, settings, keys) and hands each call to
its story in :mod:`twostep._stories`; it holds no rule of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from . import _validate as check
from ._audit import AuditAction, AuditEvent, Outcome
from ._clock import Clock, SystemClock
from ._crypto import AESGCMKeyring, Cipher
from ._domain import Account, RequiredOf, Role, User
from ._errors import ChallengeExpired, ConfigurationError
from ._passwords import Passwords
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
from ._settings import PasskeySettings, Settings
from ._store import Store
from ._stories import administration, login, maintenance, own_two_factor
from ._unit_of_work import Context, EventHook

if TYPE_CHECKING:
    from ._audit_pages import AuditPage
    from ._user_pages import UserPage

__all__ = ["TwoStep"]

SessionRef = str | Session


def _keys_for(store: Store) -> AESGCMKeyring:
    """The keys from the environment, else those ``twostep init`` wrote beside a SQLite file."""
    path = getattr(store, "path", None)  # a SQLiteStore's database file
    database = path if isinstance(path, str) and path not in {"", ":memory:"} else None
    return AESGCMKeyring.from_environment(database=database)


class TwoStep:
    """Password + TOTP two-step login for the users of an account (R1-R61).

    ``store`` keeps the state (``SQLiteStore`` is the embedded default), ``issuer``
    names the installation in authenticator apps (no ``:``, which the key-URI format
    reserves). ``cipher`` seals TOTP secrets at rest; by default keys come from
    ``TWOSTEP_KEYS``, ``TWOSTEP_KEY_FILE`` or, for a ``SQLiteStore``, the key file
    ``twostep init`` wrote beside its database (``<database>.key``), and ``twostep``
    refuses to start without one, or (``check_keys``) with keys that do not open
    every stored secret. ``on_event`` is called with every audit event after
    it is committed (e.g. to email a user whose 2FA was turned off). ``passkeys``
    (a :class:`PasskeySettings`) turns security keys on (R100); without it, the
    operations that talk to a browser about a key raise ``ConfigurationError``.
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
        check_keys: bool = True,
        passkeys: PasskeySettings | None = None,
    ) -> None:
        check_keys = check.flag(check_keys, "check_keys")
        self.issuer = check.issuer(issuer)
        self.settings = settings if settings is not None else Settings()
        self.passkeys = _passkey_settings(passkeys)
        self._context = Context(
            store=store,
            clock=clock if clock is not None else SystemClock(),
            settings=self.settings,
            cipher=cipher if cipher is not None else _keys_for(store),
            issuer=self.issuer,
            passwords=Passwords(self.settings.password_hash),
            on_event=on_event,
            passkeys=self.passkeys,
        )
        if check_keys:
            maintenance.check_keys(self._context)

    def __repr__(self) -> str:
        return f"TwoStep(store={self._context.store!r}, issuer={self.issuer!r})"

    # -- operators: accounts and users -----------------------------------------------

    def create_account(self, name: str) -> Account:
        """A new account (organisation), with no users yet."""
        return administration.create_account(self._context, name)

    def create_user(
        self, account_id: str, email: str, password: str, role: Role | str = Role.MEMBER
    ) -> User:
        """A new user of an account; emails are unique across the installation."""
        return administration.create_user(self._context, account_id, email, password, role)

    def import_user(
        self,
        account_id: str,
        email: str,
        *,
        role: Role | str = Role.MEMBER,
        password_hash: str | None = None,
        user_id: str | None = None,
    ) -> User:
        """R90-R93: a user who already exists in the host, with its hash or with none.

        ``password_hash`` is the host's hash of the user's password (Django's PBKDF2,
        bcrypt, Argon2): they log in with the password they have, and the first login
        replaces it with twostep's Argon2id (R92). ``None`` makes a user with no
        twostep password, whose host checks step 1 and calls
        :meth:`begin_second_step` (R93). ``user_id`` is the id to give the user (e.g.
        the host's own primary key), a new one by default.
        """
        from ._stories import elsewhere  # first use: see _stories.elsewhere

        return elsewhere.import_user(self._context, account_id, email, role, password_hash, user_id)

    # -- logging in (R1-R6) ------------------------------------------------------------

    def login(
        self, email: str, password: str, *, client: str | None = None, device: str | None = None
    ) -> LoginStep:
        """Step 1: email and password. What comes next depends on the user (R1-R3).

        ``client`` is an optional key of the caller (e.g. an IP address) that is
        throttled too. Unknown emails, wrong passwords and deactivated users all
        raise :class:`InvalidCredentials`, after the same Argon2 work. ``device`` is the
        token of a remembered device (R98), from its cookie: with a right password, a
        device still remembered for the user skips the code step.
        """
        return login.login(self._context, email, password, client, device)

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
        token = _challenge_token(challenge)
        return login.complete_login(self._context, token, code, check.client(client))

    def security_key_login_options(self, challenge: str | CodeRequired) -> str:
        """R103: step 2 with a security key: the options for ``navigator.credentials.get()``.

        JSON text for ``PublicKeyCredential.parseRequestOptionsFromJSON``; it may be
        asked again while the challenge lives. ``NotAllowed`` if the user has no key.
        """
        from ._stories import passkeys  # first use: see _stories.passkeys

        return passkeys.login_options(self._context, _challenge_token(challenge))

    def complete_login_with_security_key(
        self, challenge: str | CodeRequired, assertion: str, *, client: str | None = None
    ) -> LoggedIn:
        """R103/R104: step 2 with a security key, counted and throttled like a code (R6).

        ``assertion`` is the JSON text of the browser's ``PublicKeyCredential`` (its
        ``toJSON()``) after ``navigator.credentials.get()``; a wrong one raises
        ``InvalidCode`` as a wrong code does.
        """
        from ._stories import passkeys  # first use: see _stories.passkeys

        token = _challenge_token(challenge)
        return passkeys.login_with_key(self._context, token, assertion, check.client(client))

    def begin_second_step(self, user_id: str, *, client: str | None = None) -> LoginStep:
        """R93/R94: the host checked step 1 itself; what comes next, as after :meth:`login`.

        Only for a user imported without a twostep password (``NotAllowed`` otherwise):
        the account's requirement, enrolment, throttling and sessions are the login's
        (R1-R3, R6); :meth:`complete_login` takes the challenge it returns.
        """
        from ._stories import elsewhere  # first use: see _stories.elsewhere

        return elsewhere.begin_second_step(self._context, user_id, client)

    def check_session(self, session: SessionRef) -> Session:
        """The session behind a token, if it is still valid (R21, R41); else ``SessionInvalid``."""
        return login.check_session(self._context, session)

    def logout(self, session: SessionRef) -> None:
        """End one session. Logging out an unknown or ended session does nothing."""
        login.logout(self._context, session)

    def step_up(self, session: SessionRef, code: str) -> Session:
        """R99: pass a code again in this session, before a sensitive action.

        Raised :class:`StepUpRequired` asks for it. The code goes through the same checks
        and throttles as at login (R4-R6).
        """
        return own_two_factor.step_up(self._context, session, code)

    def step_up_with_security_key(self, session: SessionRef, assertion: str) -> Session:
        """R99: pass a security key again in this session, before a sensitive action.

        ``assertion`` answers the options of :meth:`begin_security_key_check`; it goes
        through the same checks and throttles as a code (R103).
        """
        from ._stories import passkeys  # first use: see _stories.passkeys

        return passkeys.step_up_with_key(self._context, session, assertion)

    # -- remembered devices (R98) ------------------------------------------------------

    def remember_device(
        self, session: SessionRef, *, valid_for: timedelta | None = None, label: str | None = None
    ) -> DeviceToken:
        """R98: after a code login, let this device skip the code step (never the password).

        Returns a token for a long-lived cookie, shown once (twostep keeps its hash), to
        pass to :meth:`login` as ``device``. ``valid_for`` is at most
        ``Settings.remember_device_for`` (the default); ``label`` names the device in
        :meth:`remembered_devices` (e.g. "Firefox on Linux").
        """
        from ._stories import devices  # first use: see _stories.devices

        return devices.remember_device(self._context, session, valid_for, label)

    def remembered_devices(self, session: SessionRef) -> list[DeviceInfo]:
        """R98: the user's devices that skip the code step now, oldest first."""
        from ._stories import devices  # first use: see _stories.devices

        return devices.remembered_devices(self._context, session)

    def forget_device(self, session: SessionRef, device_id: str) -> bool:
        """R98: one of the user's devices no longer skips the code step.

        Returns ``False`` if the user has no device of that id.
        """
        from ._stories import devices  # first use: see _stories.devices

        return devices.forget_device(self._context, session, device_id)

    # -- one's own password (R85-R87) ------------------------------------------------

    def change_password(
        self, session: SessionRef, current: str, new: str, *, code: str | None = None
    ) -> Session:
        """R85: a new password, with the current one and, with 2FA, a code.

        Every session of the user ends, the one given included; the one returned
        replaces it.
        """
        from ._stories import credentials  # first use: see _stories.credentials

        return credentials.change_password(self._context, session, current, new, code)

    def begin_password_reset(self, email: str, *, client: str | None = None) -> PasswordReset:
        """R86: a token for the host to deliver to ``email``; the same answer for anyone."""
        from ._stories import credentials  # first use: see _stories.credentials

        return credentials.begin_password_reset(self._context, email, client)

    def complete_password_reset(self, token: str, new_password: str) -> None:
        """R86: set the password with a reset token; every session ends, nobody logs in."""
        from ._stories import credentials  # first use: see _stories.credentials

        credentials.complete_password_reset(self._context, token, new_password)

    def change_email(
        self, session: SessionRef, new_email: str, *, password: str, code: str | None = None
    ) -> Session:
        """R88: a new email, with the current password and, with 2FA, a code.

        ``EmailTaken`` if another user has it, in any case. Every session of the user
        ends, the one given included; the one returned replaces it. Authenticator apps
        keep the label they were given (the old email).
        """
        from ._stories import emails  # first use: see _stories.emails

        return emails.change_email(self._context, session, new_email, password, code)

    # -- one's own 2FA (R5, R10, R11, R30-R32, R40) -----------------------------------

    def two_factor_status(self, session: SessionRef) -> TwoFactorStatus:
        """The actor's own 2FA: on or off, required or not, backup codes left (R5)."""
        return own_two_factor.two_factor_status(self._context, session)

    def begin_enrollment(self, session: SessionRef) -> Enrollment:
        """R30: start turning 2FA on; nothing changes until :meth:`confirm_enrollment` (R11)."""
        return own_two_factor.begin_enrollment(self._context, session)

    def confirm_enrollment(self, session: SessionRef, code: str) -> BackupCodes:
        """R10/R40: a correct code from the app turns the new secret on; returns backup codes."""
        return own_two_factor.confirm_enrollment(self._context, session, code)

    def disable_two_factor(self, session: SessionRef, code: str) -> None:
        """R31/R32: turn one's own 2FA off with a current code, when not required.

        Security keys are removed too (R107): afterwards the user has no second factor.
        """
        own_two_factor.disable_two_factor(self._context, session, code)

    def begin_reset(self, session: SessionRef, code: str) -> Enrollment:
        """R40: moving to a new phone when 2FA is required; the old one works until confirmed."""
        return own_two_factor.begin_reset(self._context, session, code)

    def regenerate_backup_codes(self, session: SessionRef, code: str) -> BackupCodes:
        """R5: replace every backup code with a fresh set, shown once."""
        return own_two_factor.regenerate_backup_codes(self._context, session, code)

    # -- one's own security keys (R100-R109) -------------------------------------------

    def begin_security_key_registration(self, session: SessionRef) -> str:
        """R101: start adding a security key: the options for ``navigator.credentials.create()``.

        JSON text for ``PublicKeyCredential.parseCreationOptionsFromJSON``. Its
        challenge is kept, single-use, for ``Settings.enrollment_ttl``.
        """
        from ._stories import passkeys  # first use: see _stories.passkeys

        return passkeys.begin_registration(self._context, session)

    def finish_security_key_registration(
        self, session: SessionRef, credential: str, name: str
    ) -> SecurityKeyInfo:
        """R101: the browser's new credential (the JSON text of its ``toJSON()``), named.

        Names are unique per user (in any case); the user then has a second factor
        (R102).
        """
        from ._stories import passkeys  # first use: see _stories.passkeys

        return passkeys.finish_registration(self._context, session, credential, name)

    def list_security_keys(self, session: SessionRef) -> tuple[SecurityKeyInfo, ...]:
        """R105: one's own security keys, oldest first: ids, names and dates only."""
        from ._stories import passkeys  # first use: see _stories.passkeys

        return passkeys.list_keys(self._context, session)

    def begin_security_key_check(self, session: SessionRef) -> str:
        """R106, R99: options for ``navigator.credentials.get()`` to prove a key in a session.

        For :meth:`remove_security_key` and :meth:`step_up_with_security_key`.
        """
        from ._stories import passkeys  # first use: see _stories.passkeys

        return passkeys.begin_check(self._context, session)

    def remove_security_key(
        self,
        session: SessionRef,
        key_id: str,
        *,
        code: str | None = None,
        assertion: str | None = None,
    ) -> None:
        """R106: remove one of one's keys, with a code or a key's assertion (exactly one).

        ``assertion`` answers the options of :meth:`begin_security_key_check`. Removing
        one's last second factor while the account requires 2FA is ``NotAllowed``.
        """
        from ._stories import passkeys  # first use: see _stories.passkeys

        passkeys.remove_key(self._context, session, key_id, code, assertion)

    # -- administration (R20-R22, R41, R42, R50, R60) ---------------------------------

    def set_two_factor_required(
        self,
        session: SessionRef,
        required: bool,
        *,
        of: RequiredOf | str = RequiredOf.EVERYONE,
        grace_period: timedelta | None = None,
    ) -> None:
        """R20-R22, R95, R96: owners turn the requirement on or off, and say for whom.

        ``of`` is ``"everyone"`` or ``"admins"`` (owners and managers). Turning it on
        logs out every user it covers; widening it to everyone logs out the members.
        ``grace_period`` lets the covered users without 2FA log in with their password
        until that long after the requirement began to cover them, asked to enrol at
        every login; each call states the whole requirement, so calling again without
        it ends the grace period at once.
        """
        administration.set_two_factor_required(self._context, session, required, of, grace_period)

    def reset_two_factor(self, session: SessionRef, user_id: str) -> None:
        """R41: an owner removes another user's 2FA, secret and backup codes; their sessions end."""
        administration.reset_two_factor(self._context, session, user_id)

    def operator_reset_two_factor(self, email: str) -> User:
        """R42: the installation's operator resets a user out of band (e.g. a sole owner)."""
        return administration.operator_reset_two_factor(self._context, email)

    def two_factor_overview(self, session: SessionRef) -> AccountOverview:
        """R50: owners and managers see which users have 2FA on."""
        return administration.two_factor_overview(self._context, session)

    def audit_trail(self, session: SessionRef, *, limit: int = 100) -> list[AuditEvent]:
        """R60: the account's newest audit events, newest first, for owners and managers.

        The first page of :meth:`audit_page`, unfiltered, as a list.
        """
        return administration.audit_trail(self._context, session, limit)

    def audit_page(
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
        """R50, R60, R76: a page of the account's audit events, newest first, filtered.

        ``cursor`` is the ``next_cursor`` of the page before (none for the first page);
        the filters keep the events of that ``action``, of that user as actor or target
        (``user_id``), of that ``outcome``, and with ``since <= at < until``.
        """
        return administration.audit_page(
            self._context,
            session,
            limit,
            cursor,
            action=action,
            user_id=user_id,
            outcome=outcome,
            since=since,
            until=until,
        )

    # -- the users' life (R80-R84) -----------------------------------------------------

    def set_role(self, session: SessionRef, user_id: str, role: Role | str) -> None:
        """R80: an owner changes a user's role, keeping an active owner; demotions log out."""
        from ._stories import users  # first use: see _stories.users

        users.set_role(self._context, session, user_id, role)

    def deactivate_user(self, session: SessionRef, user_id: str) -> None:
        """R81: an owner deactivates another user: sessions end, login is refused, data stays."""
        from ._stories import users  # first use: see _stories.users

        users.set_active(self._context, session, user_id, active=False)

    def reactivate_user(self, session: SessionRef, user_id: str) -> None:
        """R81: an owner lets a deactivated user log in again, with the 2FA they had."""
        from ._stories import users  # first use: see _stories.users

        users.reactivate_user(self._context, session, user_id)

    def delete_user(self, session: SessionRef, user_id: str) -> None:
        """R82: an owner deletes another user and their secrets; the email is free again."""
        from ._stories import users  # first use: see _stories.users

        users.delete_user(self._context, session, user_id)

    def set_email(self, session: SessionRef, user_id: str, new_email: str) -> None:
        """R89: an owner changes another user's email; that user's sessions end."""
        from ._stories import emails  # first use: see _stories.emails

        emails.set_email(self._context, session, user_id, new_email)

    def list_users(
        self,
        session: SessionRef,
        *,
        limit: int = 100,
        cursor: str | None = None,
        role: Role | str | None = None,
        two_factor: bool | None = None,
        active: bool | None = None,
    ) -> UserPage:
        """R83: a page of the account's users, oldest first, for owners and managers.

        ``cursor`` is the ``next_cursor`` of the page before; the filters keep the users
        of that ``role``, with 2FA on or off (``two_factor``), active or deactivated.
        """
        from ._stories import users  # first use: see _stories.users

        return users.list_users(
            self._context, session, limit, cursor, role=role, two_factor=two_factor, active=active
        )

    # -- maintenance -------------------------------------------------------------------

    def purge_expired(self) -> int:
        """Remove what can no longer matter; returns how many rows were deleted or cleared.

        That is expired login challenges, sessions and remembered devices, pending
        secrets of expired enrolments and throttle counters that no longer count. None
        of it can be used any more. Run it periodically, e.g. hourly.
        """
        return maintenance.purge_expired(self._context)

    def reseal_secrets(
        self, *, batch: int = 200, progress: maintenance.Progress | None = None
    ) -> int:
        """Re-encrypt every TOTP secret not under the cipher's current key; returns how many.

        Each batch commits on its own, so logins go on meanwhile; old keys must stay
        configured until this has run. ``progress(resealed, total)`` is called after
        each batch. With an ``AESGCMKeyring`` whose first key is older than another of
        its keys (by the creation time its id carries), raises ``ConfigurationError``
        and reseals nothing: that order would undo the rotation.
        """
        return maintenance.reseal_secrets(self._context, batch, progress)


def _challenge_token(challenge: object) -> str:
    """The token of a login challenge, or ChallengeExpired if it cannot be one."""
    token = (
        challenge.challenge
        if isinstance(challenge, CodeRequired | EnrollmentRequired)
        else challenge
    )
    if (
        not isinstance(token, str)
        or not token
        or len(token) > check.MAX_TOKEN
        or not token.isascii()
    ):
        msg = "not a login challenge"
        raise ChallengeExpired(msg, reason="unknown")
    return token


def _passkey_settings(passkeys: object) -> PasskeySettings | None:
    if passkeys is not None and not isinstance(passkeys, PasskeySettings):
        msg = "passkeys must be a PasskeySettings or None"
        raise ConfigurationError(msg)
    return passkeys
