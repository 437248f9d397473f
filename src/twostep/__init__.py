"""twostep: password + TOTP two-step login for the users of an account."""

from typing import TYPE_CHECKING

from ._audit import AuditAction, AuditEvent, Outcome
from ._clock import Clock, SystemClock
from ._crypto import AESGCMKeyring, Cipher
from ._domain import (
    Account,
    RequiredOf,
    Role,
    ThrottleKey,
    ThrottleScope,
    ThrottleState,
    User,
)
from ._errors import (
    ChallengeExpired,
    ConfigurationError,
    EmailTaken,
    InvalidCode,
    InvalidCredentials,
    InvalidInput,
    NotAllowed,
    SessionInvalid,
    StepUpRequired,
    StoreError,
    Throttled,
    TwoStepError,
    UnknownAccount,
    UnknownUser,
)
from ._policy import POLICY, Action, Decision, decide
from ._provisioning import Enrollment, provisioning_uri
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
    UserOverview,
)
from ._service import TwoStep
from ._settings import Argon2Params, PasskeySettings, Settings, ThrottleSettings
from ._store import PurgeBatch, SealedKeyUse, SessionWithUser, Store, Transaction

if TYPE_CHECKING:
    from ._async import AsyncTwoStep
    from ._audit_pages import AuditPage, AuditQuery
    from ._user_pages import UserPage
    from .stores.memory import InMemoryStore
    from .stores.sqlite import SQLiteStore

__all__ = [
    "POLICY",
    "AESGCMKeyring",
    "Account",
    "AccountOverview",
    "Action",
    "Argon2Params",
    "AsyncTwoStep",
    "AuditAction",
    "AuditEvent",
    "AuditPage",
    "AuditQuery",
    "BackupCodes",
    "ChallengeExpired",
    "Cipher",
    "Clock",
    "CodeRequired",
    "ConfigurationError",
    "Decision",
    "DeviceInfo",
    "DeviceToken",
    "EmailTaken",
    "Enrollment",
    "EnrollmentRequired",
    "InMemoryStore",
    "InvalidCode",
    "InvalidCredentials",
    "InvalidInput",
    "LoggedIn",
    "LoginStep",
    "PasswordReset",
    "PasskeySettings",
    "NotAllowed",
    "PurgeBatch",
    "Outcome",
    "RequiredOf",
    "Role",
    "SQLiteStore",
    "SealedKeyUse",
    "SecurityKeyInfo",
    "Session",
    "SessionInvalid",
    "SessionWithUser",
    "Settings",
    "StepUpRequired",
    "Store",
    "StoreError",
    "SystemClock",
    "ThrottleKey",
    "ThrottleScope",
    "ThrottleSettings",
    "ThrottleState",
    "Throttled",
    "Transaction",
    "TwoFactorStatus",
    "TwoStep",
    "TwoStepError",
    "UnknownAccount",
    "UnknownUser",
    "User",
    "UserOverview",
    "UserPage",
    "decide",
    "provisioning_uri",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The stores load on first use (PEP 562), so that `import twostep` does not pay
    # for sqlite3 in a host that keeps its state elsewhere.
    if name == "AsyncTwoStep":  # asyncio too loads on first use
        from ._async import AsyncTwoStep

        return AsyncTwoStep
    if name == "SQLiteStore":
        from .stores.sqlite import SQLiteStore

        return SQLiteStore
    if name == "InMemoryStore":
        from .stores.memory import InMemoryStore

        return InMemoryStore
    if name in {"AuditPage", "AuditQuery"}:  # likewise the audit trail's pages (R76)
        from . import _audit_pages

        return getattr(_audit_pages, name)
    if name == "UserPage":  # and the pages of users (R83)
        from ._user_pages import UserPage

        return UserPage
    msg = f"module 'twostep' has no attribute {name!r}"
    raise AttributeError(msg)
