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

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    NEXT_CODE,
    PASSWORD,
    Enrolled,
    Figure,
    Report,
    full_login,
    interleave,
    populate_sqlite,
)

from twostep import CodeRequired, LoggedIn, TwoStep
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
    return out


if __name__ == "__main__":
    for figure in main("--quick" in sys.argv):
        print(figure.line(), flush=True)
