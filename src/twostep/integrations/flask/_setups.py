"""The set-up pages' enrolments under way, kept in the server's memory (R10, R11).

After a wrong first code the set-up page shows the same QR code and key again: the
enrolment is unchanged (R11), and the user may simply have typed the code wrong. The
page needs the :class:`~twostep.Enrollment` for that, which holds the secret, so it is
kept here, in the memory of the process, and never in the session cookie (Flask's is
signed, not encrypted: anyone holding it can read it).

Each enrolment is kept under a digest of what the cookie already holds (the login's
challenge, or the session token), so only the browser that started it finds it, and
until it is confirmed, ended, or older than its lifetime. A process keeps at most
``limit`` of them, dropping the oldest first.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import NamedTuple

import twostep as ts

#: The most enrolments one process keeps at once.
LIMIT = 10_000


class PendingSetup(NamedTuple):
    """An enrolment waiting for its first code, and the page that showed it."""

    enrollment: ts.Enrollment
    mode: str  # "login", "enable" or "reset"
    kept_at: float


class PendingSetups:
    """The enrolments under way of one app, by the cookie value that owns each."""

    def __init__(
        self,
        lifetime: timedelta,
        *,
        limit: int = LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lifetime = lifetime.total_seconds()
        self._limit = limit
        self._clock = clock
        self._kept: OrderedDict[str, PendingSetup] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def __repr__(self) -> str:
        return f"PendingSetups({len(self)} kept)"

    @staticmethod
    def _key(owner: str) -> str:
        """The owner (a challenge or a session token) is not kept as it is."""
        return hashlib.sha256(owner.encode()).hexdigest()

    def keep(self, owner: str, enrollment: ts.Enrollment, mode: str) -> None:
        """Keep ``enrollment`` for ``owner``, replacing the one it had."""
        now = self._clock()
        key = self._key(owner)
        with self._lock:
            self._kept.pop(key, None)
            self._kept[key] = PendingSetup(enrollment, mode, now)
            while self._kept:  # the oldest first: drop those past their lifetime
                oldest = next(iter(self._kept.values()))
                if now - oldest.kept_at <= self._lifetime and len(self._kept) <= self._limit:
                    break
                self._kept.popitem(last=False)

    def find(self, owner: str) -> PendingSetup | None:
        """The enrolment ``owner`` started, unless it is older than its lifetime."""
        key = self._key(owner)
        with self._lock:
            found = self._kept.get(key)
            if found is not None and self._clock() - found.kept_at > self._lifetime:
                del self._kept[key]
                return None
            return found

    def drop(self, owner: str) -> None:
        """Forget what ``owner`` started: confirmed, or ended."""
        with self._lock:
            self._kept.pop(self._key(owner), None)
