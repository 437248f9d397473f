"""Units of work: one store transaction, the time it runs at, and the audit events it writes.

Every story runs its loads, checks and writes inside one :class:`UnitOfWork`. It commits
when its block ends; any error rolls everything back, except :class:`KeepAndRaise`, which
commits what was written (an audit event of a refusal, a failure counted by a throttle)
and then raises the refusal. Audit events reach the host's hook only once committed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import NamedTuple

from ._audit import AuditAction, AuditEvent, Outcome
from ._clock import Clock
from ._crypto import Cipher
from ._errors import TwoStepError
from ._passwords import Passwords
from ._settings import PasskeySettings, Settings
from ._store import Store, Transaction

__all__ = ["Context", "EventHook", "KeepAndRaise", "UnitOfWork", "Work"]

EventHook = Callable[[AuditEvent], None]
_THROTTLED = Outcome.THROTTLED  # a module global: cheaper to reach than the enum's member


class KeepAndRaise(Exception):
    """Raised inside a unit of work: commit what was written, then raise ``error``."""

    def __init__(self, error: TwoStepError) -> None:
        super().__init__(type(error).__name__)
        self.error = error


class Work:
    """What a story sees inside a unit of work: the transaction, its time, its events.

    ``collapse`` is ``Settings.audit_collapse_window`` (R75), ``step_up_within``
    ``Settings.step_up_within`` (R99).
    """

    __slots__ = ("collapse", "events", "now", "step_up_within", "tx")

    def __init__(
        self,
        tx: Transaction,
        now: datetime,
        collapse: timedelta | None = None,
        step_up_within: timedelta | None = None,
    ) -> None:
        self.tx = tx
        self.now = now
        self.collapse = collapse
        self.step_up_within = step_up_within
        self.events: list[AuditEvent] = []

    def audit(
        self,
        action: AuditAction,
        outcome: Outcome,
        *,
        account_id: str | None,
        actor_id: str | None,
        target_id: str | None = None,
        reason: str | None = None,
        actor: str = "user",
    ) -> None:
        """Record an audit event (R60) in this unit of work.

        A throttled attempt is counted on the event of the same attempts that began
        within ``collapse`` of now, if there is one (R75): only then is the store asked
        for it, so other events cost no query more. The host's hook sees every attempt.
        """
        # Positional, in AuditEvent's field order: a quarter cheaper than by keyword,
        # and every login pays for one (bench/: otp_step_memory).
        now = self.now
        event = AuditEvent(now, action, outcome, account_id, actor_id, target_id, reason, actor)
        if (
            outcome is not _THROTTLED
            or self.collapse is None
            or not self.tx.repeat_audit(event, now - self.collapse)
        ):
            self.tx.add_audit(event)
        self.events.append(event)


class Context(NamedTuple):
    """What every story needs from the installation: the store, the clock, the keys.

    (A named tuple rather than a dataclass: ``import twostep`` is measured, bench/.)
    """

    store: Store
    clock: Clock
    settings: Settings
    cipher: Cipher
    issuer: str
    passwords: Passwords
    on_event: EventHook | None
    #: The relying party of security keys (R100); ``None``: security keys are off.
    passkeys: PasskeySettings | None = None

    def work(self, *, write: bool = True) -> UnitOfWork:
        """A unit of work; ``write=False`` promises to change nothing and may lock less."""
        return UnitOfWork(self, write)

    def publish(self, event: AuditEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a host's hook must not break a login that is committed
            import logging  # only here: importing it adds ~4 ms to `import twostep`

            logging.getLogger("twostep").exception("twostep event hook failed for %s", event.action)


class UnitOfWork:
    """One store transaction as a context manager that yields its :class:`Work`."""

    __slots__ = ("_context", "_transaction", "_work", "_write")

    def __init__(self, context: Context, write: bool) -> None:
        self._context = context
        self._write = write

    def __enter__(self) -> Work:
        self._transaction = self._context.store.transaction(write=self._write)
        context = self._context
        self._work = Work(
            self._transaction.__enter__(),
            context.clock.now(),
            context.settings.audit_collapse_window,
            context.settings.step_up_within,
        )
        return self._work

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, KeepAndRaise):
            self._transaction.__exit__(None, None, None)  # commit what was written
            self._publish_all()
            raise error.error from None
        self._transaction.__exit__(kind, error, traceback)
        if error is None:
            self._publish_all()

    def _publish_all(self) -> None:
        for event in self._work.events:
            self._context.publish(event)
