"""Full logins per second (both steps) with 2 worker processes, on SQLite and PostgreSQL.

No target yet. Argon2 is lowered for this run only (``LOWERED`` below, for passwords
and backup codes), so that the figure shows what the library and the store add
rather than the hash. Each worker logs in its own users, each with its own clock
that moves 30 s after every round of them, so that no code is a replay.
PostgreSQL is measured when ``TWOSTEP_TEST_POSTGRES_DSN`` names a reachable server.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import NEXT_CODE, PASSWORD, Enrolled, Report, enroll, service

from twostep import Argon2Params, CodeRequired, Settings, SQLiteStore, Store
from twostep.testing import ManualClock, Phone

WORKERS = 2
USERS_PER_WORKER = 20
LOWERED = Argon2Params(time_cost=1, memory_cost=1024, parallelism=1)
SETTINGS = dataclasses.replace(Settings(), password_hash=LOWERED, backup_code_hash=LOWERED)
DSN_ENV = "TWOSTEP_TEST_POSTGRES_DSN"


def _open(kind: str, where: str, synchronous: str = "FULL") -> Store:
    if kind == "sqlite":
        return SQLiteStore(where, synchronous=synchronous)
    from twostep.stores.postgres import PostgresStore

    return PostgresStore(where, max_size=2)


def _worker(
    kind: str,
    where: str,
    people: list[tuple[str, str]],
    start_at: datetime,
    barrier: Barrier,
    seconds: float,
    results: Queue[int],
    synchronous: str,
) -> None:
    store = _open(kind, where, synchronous)
    clock = ManualClock(start_at)
    ts = service(store, SETTINGS, clock)
    phones = [(email, Phone(secret, clock)) for email, secret in people]
    barrier.wait()
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        clock.advance(NEXT_CODE)
        for email, phone in phones:
            step = ts.login(email, PASSWORD)
            assert isinstance(step, CodeRequired)
            ts.complete_login(step, phone.code())
            done += 1
    results.put(done)
    store.close()


def measure(kind: str, where: str, seconds: float, synchronous: str = "FULL") -> float:
    """Full logins per second, ``WORKERS`` processes (SQLite with ``synchronous``)."""
    store = _open(kind, where, synchronous)
    clock = ManualClock()
    ts = service(store, SETTINGS, clock)
    account = ts.create_account("throughput")
    tag = uuid.uuid4().hex[:8]
    people: list[Enrolled] = [
        enroll(ts, clock, account.id, f"t{tag}-{i}@example.com")
        for i in range(WORKERS * USERS_PER_WORKER)
    ]
    store.close()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WORKERS + 1)
    results = ctx.Queue()
    start_at = clock.now() + timedelta(minutes=1)
    procs = []
    for w in range(WORKERS):
        mine = people[w * USERS_PER_WORKER : (w + 1) * USERS_PER_WORKER]
        pairs = [(p.email, p.phone._totp.secret) for p in mine]
        proc = ctx.Process(
            target=_worker,
            args=(kind, where, pairs, start_at, barrier, seconds, results, synchronous),
        )
        proc.start()
        procs.append(proc)
    barrier.wait()
    started = time.perf_counter()
    total: int = sum(results.get(timeout=seconds * 20 + 60) for _ in procs)
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            msg = f"a {kind} worker failed"
            raise RuntimeError(msg)
    return total / elapsed


def main(quick: bool) -> list[Report]:
    seconds = 3.0 if quick else 15.0
    params = f"Argon2id t={LOWERED.time_cost} m={LOWERED.memory_cost} KiB p={LOWERED.parallelism}"
    out = []
    with tempfile.TemporaryDirectory(prefix="twostep-bench-") as tmp:
        rate = measure("sqlite", str(Path(tmp) / "throughput.db"), seconds)
    out.append(
        Report("logins_per_s_sqlite", f"{rate:.0f} full logins/s, {WORKERS} processes ({params})")
    )
    dsn = os.environ.get(DSN_ENV)
    text = "skipped: no PostgreSQL"
    if dsn:
        try:
            import twostep.stores.postgres  # noqa: F401
        except ImportError:
            pass
        else:
            rate = measure("postgres", dsn, seconds)
            text = f"{rate:.0f} full logins/s, {WORKERS} processes ({params})"
    out.append(Report("logins_per_s_postgres", text))
    return out


if __name__ == "__main__":
    for report in main("--quick" in sys.argv):
        print(report.line(), flush=True)
