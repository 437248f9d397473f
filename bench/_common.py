"""What the benchmark scripts share: the interleaved timing loop, figures, and set-up.

Every figure is a ratio of two medians measured in the same run, with baseline and
measured repetitions interleaved (and their order alternated), so that a busy or
throttled machine slows both sides alike.
"""

from __future__ import annotations

import base64
import dataclasses
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from twostep import AESGCMKeyring, Argon2Params, CodeRequired, LoggedIn, Settings, TwoStep
from twostep.stores._sql import USER_COLUMNS, user_row
from twostep.stores.sqlite import SQLiteStore
from twostep.testing import ManualClock, Phone

#: One sample: runs the operation (and its untimed set-up) and returns seconds per operation.
Sample = Callable[[], float]

PASSWORD = "correct horse battery staple"
#: Seconds between two logins of one user: two time steps, not one. About once in a
#: million codes, a code equals the next step's code; the check then records the later
#: step (R4), and the phone's next code, the same digits, is rightly refused as a replay.
NEXT_CODE = 60
CHEAPEST = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)
#: A fixed key, so that the worker processes of a run open what the parent sealed.
KEYRING = AESGCMKeyring.from_string("bench:" + base64.b64encode(bytes(range(32))).decode())


@dataclass(frozen=True)
class Figure:
    """A ratio, measured / baseline, and its target: at most ``high``, at least ``low``.

    ``unit`` is what both sides are in: seconds, or a rate such as ``"logins/s"``.
    """

    name: str
    baseline: float
    measured: float
    high: float | None
    low: float | None = None
    unit: str = "s"

    @property
    def ratio(self) -> float:
        return self.measured / self.baseline

    @property
    def ok(self) -> bool:
        return (self.high is None or self.ratio <= self.high) and (
            self.low is None or self.ratio >= self.low
        )

    @property
    def target(self) -> str:
        if self.low is None:
            return f"≤ {self.high}"
        if self.high is None:
            return f"≥ {self.low}"
        return f"{self.low} – {self.high}"  # noqa: RUF001

    def line(self) -> str:
        return (
            f"{self.name}: {self.ratio:.2f} (target {self.target}) "
            f"baseline={_fmt(self.baseline, self.unit)} measured={_fmt(self.measured, self.unit)}"
            + ("" if self.ok else "  MISSED")
        )


@dataclass(frozen=True)
class Report:
    """A figure without a target."""

    name: str
    text: str

    def line(self) -> str:
        return f"{self.name}: {self.text}"


@dataclass(frozen=True)
class Unmeasured:
    """A figure with a target that could not be taken (a peer not installed): missed."""

    name: str
    target: str
    why: str

    def line(self) -> str:
        return f"{self.name}: NOT MEASURED (target {self.target}): {self.why}  MISSED"


def _fmt(seconds: float, unit: str = "s") -> str:
    if unit != "s":
        return f"{seconds:.0f} {unit}"
    if seconds >= 1:
        return f"{seconds:.3f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f}ms"
    return f"{seconds * 1e6:.1f}us"


def interleave(samples: Sequence[Sample], rounds: int, warmup: int = 1) -> list[float]:
    """The median of each sample over ``rounds`` interleaved rounds (order alternates)."""
    for _ in range(warmup):
        for sample in samples:
            sample()
    results: list[list[float]] = [[] for _ in samples]
    order = list(range(len(samples)))
    for _ in range(rounds):
        for i in order:
            results[i].append(samples[i]())
        order.reverse()
    return [statistics.median(r) for r in results]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- set-up -----------------------------------------------------------------------------


def service(store: object, settings: Settings, clock: ManualClock | None = None) -> TwoStep:
    return TwoStep(
        store,  # type: ignore[arg-type]
        issuer="bench",
        clock=clock or ManualClock(),
        settings=settings,
        cipher=KEYRING,
    )


@dataclass
class Enrolled:
    """A user with confirmed 2FA: their email, id, phone and backup codes."""

    email: str
    user_id: str
    phone: Phone
    backup: list[str]


def enroll(
    ts: TwoStep, clock: ManualClock, account_id: str, email: str, role: str = "member"
) -> Enrolled:
    user = ts.create_user(account_id, email, PASSWORD, role)
    step = ts.login(email, PASSWORD)
    assert isinstance(step, LoggedIn)
    enrollment = ts.begin_enrollment(step.session)
    phone = Phone(enrollment.secret, clock)
    codes = ts.confirm_enrollment(step.session, phone.code())
    ts.logout(step.session)
    clock.advance(NEXT_CODE)
    return Enrolled(email, user.id, phone, list(codes.codes))


def code_logins(ts: TwoStep, clock: ManualClock, people: list[Enrolled]) -> Sample:
    """A sample: each person logs in with a fresh OTP; seconds per code step (step 2).

    The passwords (step 1) and the codes are made before the clock starts.
    """

    def sample() -> float:
        clock.advance(NEXT_CODE)
        steps = [ts.login(p.email, PASSWORD) for p in people]
        codes = [p.phone.code() for p in people]
        start = time.perf_counter()
        for step, code in zip(steps, codes, strict=True):
            assert isinstance(step, CodeRequired)
            ts.complete_login(step, code)
        return (time.perf_counter() - start) / len(people)

    return sample


def full_login(ts: TwoStep, who: Enrolled) -> LoggedIn:
    step = ts.login(who.email, PASSWORD)
    assert isinstance(step, CodeRequired)
    return ts.complete_login(step, who.phone.code())


def cheap(settings: Settings | None = None, **changes: object) -> Settings:
    """Default settings, with the cheapest Argon2 for passwords where their cost is not measured."""
    base = settings or Settings()
    return dataclasses.replace(base, password_hash=CHEAPEST, **changes)  # type: ignore[arg-type]


# -- populating a SQLite database fast ---------------------------------------------------


def populate_sqlite(
    path: Path, total_users: int, *, users_enrolled: int = 10, synchronous: str = "FULL"
) -> tuple[TwoStep, ManualClock, str, list[Enrolled]]:
    """A SQLite database holding one account of ``total_users`` enrolled users.

    ``users_enrolled`` of them are made through the API (they can log in); the rest
    are inserted with one ``executemany`` in one transaction, copying a real row's
    password hash, sealed secret and backup codes with a unique id and email each.
    """
    clock = ManualClock()
    store = SQLiteStore(path, synchronous=synchronous)
    ts = service(store, cheap(backup_code_hash=CHEAPEST), clock)
    account = ts.create_account("bench")
    people = [
        enroll(ts, clock, account.id, f"real{i}@example.com", "owner" if i == 0 else "member")
        for i in range(users_enrolled)
    ]
    with store.transaction(write=False) as tx:
        template = tx.get_user(people[-1].user_id)
    assert template is not None
    row = list(user_row(template))
    # columns: id, account_id, email, email_key, ... (see USER_COLUMNS)
    assert USER_COLUMNS.startswith("id, account_id, email, email_key,")
    placeholders = ", ".join("?" for _ in row)
    fill = total_users - users_enrolled
    prefix = uuid.uuid4().hex[:8]

    def rows() -> object:
        for i in range(fill):
            row[0] = f"{prefix}{i:024x}"
            row[2] = row[3] = f"u{i:08d}@fill.example.com"
            yield tuple(row)

    db = store._connection()
    db.execute("BEGIN IMMEDIATE")
    # Built from the constant column list; the values are bound.
    insert = f"INSERT INTO users ({USER_COLUMNS}) VALUES ({placeholders})"  # noqa: S608
    db.executemany(insert, rows())  # type: ignore[arg-type]
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return ts, clock, account.id, people
