"""Flat cost as an account grows, on SQLite.

- require_all_flat: ``set_two_factor_required(True)`` (which logs everyone out, R21)
  on an account of 100,000 users against one of 10 users.
- login_at_scale: a full login (both steps) with 1,000,000 users in the database
  against 100 users.
- sqlite_size: the database file's growth per 100,000 enrolled users.

Argon2 for passwords is set to its cheapest here, so that the store's share of a
login is not hidden under ~150 ms of hashing: that makes the figures stricter.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    NEXT_CODE,
    PASSWORD,
    Enrolled,
    Figure,
    Report,
    code_logins,
    full_login,
    interleave,
    populate_sqlite,
    service,
)

from twostep import CodeRequired, LoggedIn, SQLiteStore, TwoStep
from twostep.stores._sql import AUDIT_COLUMNS, SESSION_COLUMNS, to_us
from twostep.testing import ManualClock


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _toggle(ts: TwoStep, clock: ManualClock, owner: Enrolled) -> Callable[[], float]:
    def sample() -> float:
        clock.advance(NEXT_CODE)
        session = full_login(ts, owner).session
        start = time.perf_counter()
        ts.set_two_factor_required(session, True)
        elapsed = time.perf_counter() - start
        clock.advance(NEXT_CODE)
        ts.set_two_factor_required(full_login(ts, owner).session, False)
        return elapsed

    return sample


def _login(ts: TwoStep, clock: ManualClock, people: list[Enrolled]) -> Callable[[], float]:
    turn = [0]

    def sample() -> float:
        who = people[turn[0] % len(people)]
        turn[0] += 1
        clock.advance(NEXT_CODE)
        code = who.phone.code()
        start = time.perf_counter()
        step = ts.login(who.email, PASSWORD)
        assert isinstance(step, CodeRequired)
        done = ts.complete_login(step, code)
        elapsed = time.perf_counter() - start
        assert isinstance(done, LoggedIn)
        return elapsed

    return sample


def _fill_year(
    ts: TwoStep, clock: ManualClock, account_id: str, sessions: int, events: int
) -> float:
    """Add ``sessions`` sessions and ``events`` audit events over the last 430 days.

    Straight into the tables with ``executemany`` (not through the API): the sessions
    of the account's users, each 12 hours long, the events of the account in the
    order of their ids. Returns the seconds it took.
    """
    started = time.perf_counter()
    store = ts._context.store
    assert isinstance(store, SQLiteStore)
    db = store._connection()
    now = to_us(clock.now())
    span = 430 * 86_400 * 1_000_000
    user_ids = [row[0] for row in db.execute("SELECT id FROM users LIMIT 100000")]
    twelve_hours = 12 * 3600 * 1_000_000

    assert len(SESSION_COLUMNS.split(",")) == 9

    def session_rows() -> Iterator[tuple[object, ...]]:
        for i in range(sessions):
            issued = now - random.randrange(span)
            user = user_ids[i % len(user_ids)]
            expires = issued + twelve_hours
            yield (os.urandom(32).hex(), user, account_id, issued, expires, 0, 0, 0, issued)

    first = db.execute(
        "SELECT coalesce(max(id), 0) FROM audit WHERE account_id = ?", (account_id,)
    ).fetchone()[0]

    def audit_rows() -> Iterator[tuple[object, ...]]:
        for i in range(events):
            at = now - span + span * i // events  # oldest first, as the ids grow
            user = user_ids[i % len(user_ids)]
            yield (account_id, first + i + 1, at, "user", user, "login", None, "success", "otp", 1)

    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({', '.join('?' * 9)})",  # noqa: S608
        session_rows(),
    )
    db.executemany(
        f"INSERT INTO audit (account_id, id, {AUDIT_COLUMNS.replace('account_id, ', '')}) "  # noqa: S608
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        audit_rows(),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - started


def _check(ts: TwoStep, clock: ManualClock, people: list[Enrolled]) -> Callable[[], float]:
    clock.advance(NEXT_CODE)
    tokens = [full_login(ts, p).session.token for p in people]

    def sample() -> float:
        start = time.perf_counter()
        for token in tokens:
            ts.check_session(token)
        return (time.perf_counter() - start) / len(tokens)

    return sample


def _trail(ts: TwoStep, clock: ManualClock, owner: Enrolled) -> Callable[[], float]:
    clock.advance(NEXT_CODE)
    session = full_login(ts, owner).session

    def sample() -> float:
        start = time.perf_counter()
        page = ts.audit_trail(session)
        elapsed = time.perf_counter() - start
        assert len(page) == 100
        return elapsed

    return sample


class _TimedTransactions:
    """A store that times each of its transactions: until its commit, and with it."""

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.bodies: list[float] = []
        self.times: list[float] = []

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[object]:
        start = time.perf_counter()
        with self.inner.transaction(write=write) as tx:
            yield tx
            self.bodies.append(time.perf_counter() - start)
        self.times.append(time.perf_counter() - start)

    def close(self) -> None:
        self.inner.close()


def year_figures(quick: bool) -> list[Figure | Report]:
    """Code step, session check and first audit page with a year of data, against 100 users.

    The 100 users have 100 sessions and 1,000 audit events, so that both first pages
    of the trail are full (100 events).
    """
    users, sessions, events = (
        (2_000, 20_000, 200_000) if quick else (100_000, 1_000_000, 10_000_000)
    )
    out: list[Figure | Report] = []
    with tempfile.TemporaryDirectory(prefix="twostep-bench-") as tmp:
        root = Path(tmp)
        # NORMAL: a synced commit (the default) would hide what the data adds.
        small = populate_sqlite(root / "year100.db", 100, synchronous="NORMAL")
        _fill_year(*small[:3], 100, 1_000)  # a first page of the trail is full on both
        started = time.perf_counter()
        big = populate_sqlite(root / "year.db", users, synchronous="NORMAL")
        filled = (
            _fill_year(big[0], big[1], big[2], sessions, events) + time.perf_counter() - started
        )
        rounds = 9 if quick else 31
        pairs = [
            (
                "code_step",
                code_logins(small[0], small[1], small[3]),
                code_logins(big[0], big[1], big[3]),
            ),
            ("check_session", _check(*small[:2], small[3]), _check(*big[:2], big[3])),
            ("audit_trail", _trail(*small[:2], small[3][0]), _trail(*big[:2], big[3][0])),
        ]
        for name, at_small, at_big in pairs:
            t_small, t_big = interleave([at_small, at_big], rounds, warmup=3)
            label = f"year_{name}" + (f" ({events:,} events)" if quick else "")
            out.append(Figure(label, t_small, t_big, 1.3))
        # The purge of the year, timing each of its transactions.
        store = big[0]._context.store
        assert isinstance(store, SQLiteStore)
        timed = _TimedTransactions(store)
        settings = big[0]._context.settings
        purger = service(timed, settings, big[1])
        started = time.perf_counter()
        removed = purger.purge_expired()
        took = time.perf_counter() - started
        out.append(
            Report(
                "year_purge",
                f"{removed:,} rows in {len(timed.times):,} transactions of at most "
                f"{settings.purge_batch:,} rows (purge_batch), each "
                f"{statistics.median(timed.times) * 1e3:.1f} ms (median); the longest "
                f"{max(timed.bodies) * 1e3:.0f} ms until its commit, "
                f"{max(timed.times) * 1e3:.0f} ms with it (a commit that fills the WAL "
                f"to checkpoint_pages copies it back); {took:.1f} s in all",
            )
        )
        out.append(
            Report(
                "year_data",
                f"{users:,} users, {sessions:,} sessions, {events:,} audit events "
                f"(filled in {filled:.0f} s), against 100 users",
            )
        )
        for db in (small, big):
            db[0]._context.store.close()
    return out


def main(quick: bool) -> list[Figure | Report]:
    big_require = 10_000 if quick else 100_000
    big_login = 100_000 if quick else 1_000_000
    out: list[Figure | Report] = []
    with tempfile.TemporaryDirectory(prefix="twostep-bench-") as tmp:
        root = Path(tmp)
        # -- require_all_flat and the file size --------------------------------------
        started = time.perf_counter()
        small = populate_sqlite(root / "require10.db", 10)
        big = populate_sqlite(root / "require-big.db", big_require)
        populate_s = time.perf_counter() - started
        per_100k = (
            (_size(root / "require-big.db") - _size(root / "require10.db"))
            / (big_require - 10)
            * 100_000
        )
        rounds = 9 if quick else 31
        t_small, t_big = interleave(
            [_toggle(small[0], small[1], small[3][0]), _toggle(big[0], big[1], big[3][0])],
            rounds,
        )
        name = "require_all_flat" + (f" ({big_require:,} users)" if quick else "")
        out.append(Figure(name, t_small, t_big, 2.0))
        out.append(
            Report(
                "sqlite_size",
                f"{per_100k / 1e6:.1f} MB per 100,000 enrolled users "
                f"(10 backup codes each; {big_require:,} users populated in {populate_s:.1f} s)",
            )
        )
        for db in (small, big):
            db[0]._context.store.close()
        # -- login_at_scale ------------------------------------------------------------
        started = time.perf_counter()
        small = populate_sqlite(root / "login100.db", 100)
        big = populate_sqlite(root / "login-big.db", big_login)
        populate_s = time.perf_counter() - started
        rounds = 41 if quick else 301
        t_small, t_big = interleave(
            [_login(small[0], small[1], small[3]), _login(big[0], big[1], big[3])],
            rounds,
            warmup=10,
        )
        name = "login_at_scale" + (f" ({big_login:,} users)" if quick else "")
        out.append(Figure(name, t_small, t_big, 1.5))
        print(
            f"# populated {big_login:,} users in {populate_s:.1f} s "
            f"({_size(root / 'login-big.db') / 1e6:.0f} MB)",
            file=sys.stderr,
        )
        for db in (small, big):
            db[0]._context.store.close()
    out.extend(year_figures(quick))
    return out


if __name__ == "__main__":
    for figure in main("--quick" in sys.argv):
        print(figure.line(), flush=True)
