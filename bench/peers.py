"""twostep against a peer doing the same work: Django with django-otp, on SQLite.

Ratios twostep / peer, both sides in one run, with the same TOTP parameters (6 digits,
30 s steps, one step of drift either way: django-otp's defaults), the same SQLite
(WAL mode, ``synchronous`` as ``SYNCHRONOUS`` below, on both sides) and the same
Argon2id cost where a password is hashed (``LOWERED``: t=1, m=1024 KiB, p=1):

- code_step_vs_django_otp: ``complete_login`` with a valid OTP against
  ``django_otp.verify_token`` (the device read, the code checked, the device saved);
  both with a clock moved by hand 60 s each round, so that no code is a replay.
- session_check_vs_django: ``check_session`` against what a Django request with a
  session costs: the database session loaded (``SessionStore(key)``) and
  ``django.contrib.auth.get_user``.
- logins_per_s_vs_django: full logins per second with 2 worker processes (password,
  code, session) against Django's ``authenticate``, ``django_otp.verify_token``,
  ``login`` and ``django_otp.login`` with the session saved. The target is a floor:
  at least 3 times the peer's rate.

The peers come with the ``bench`` extra (``pip install -e '.[bench]'``). Without
them each figure says so and counts as missed in a full run.
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput
from _common import (
    PASSWORD,
    Figure,
    Report,
    Sample,
    Unmeasured,
    code_logins,
    enroll,
    interleave,
    service,
)

from twostep import CodeRequired, SQLiteStore
from twostep.testing import ManualClock

#: SQLite's durability on both sides: WAL, and ``synchronous`` this. ``NORMAL``: a
#: commit survives a crash of the application, not a power loss, so that the figures
#: compare the work of each library rather than the disk's fsync (durable_commit_cost
#: states what twostep's default, ``FULL``, adds).
SYNCHRONOUS = "NORMAL"
LOWERED = throughput.LOWERED
PEERS = ("django", "django_otp")
TARGETS = {
    "code_step_vs_django_otp": "≤ 0.6",
    "session_check_vs_django": "≤ 0.25",
    "logins_per_s_vs_django": "≥ 3",
}


def _missing() -> list[str]:
    return [name for name in PEERS if importlib.util.find_spec(name) is None]


def _twostep_code_step(store: SQLiteStore, batch: int) -> Sample:
    clock = ManualClock()
    ts = service(store, throughput.SETTINGS, clock)
    account = ts.create_account("peers")
    people = [enroll(ts, clock, account.id, f"code{i}@example.com") for i in range(batch)]
    return code_logins(ts, clock, people)


def _twostep_session_check(store: SQLiteStore, batch: int) -> Sample:
    clock = ManualClock()
    ts = service(store, throughput.SETTINGS, clock)
    account = ts.create_account("sessions")
    people = [enroll(ts, clock, account.id, f"session{i}@example.com") for i in range(batch)]
    tokens = []
    for p in people:
        step = ts.login(p.email, PASSWORD)
        assert isinstance(step, CodeRequired)
        tokens.append(ts.complete_login(step, p.phone.code()).session.token)

    def sample() -> float:
        start = time.perf_counter()
        for token in tokens:
            ts.check_session(token)
        return (time.perf_counter() - start) / batch

    return sample


def _django_worker(
    db: str,
    people: list[tuple[str, int, str, str]],
    start_at: float,
    barrier: Barrier,
    seconds: float,
    results: Queue[int],
) -> None:
    import _django_peer as peer
    import pyotp

    peer.setup(db, SYNCHRONOUS)
    peer.CLOCK.now = start_at
    mine = [peer.Person(u, i, d, pyotp.TOTP(s)) for u, i, d, s in people]
    barrier.wait()
    results.put(peer.full_logins(mine, seconds))


def _django_rate(db: str, seconds: float, tag: str) -> float:
    """Full Django logins per second, ``throughput.WORKERS`` processes."""
    import _django_peer as peer
    from django.db import connections

    workers = throughput.WORKERS
    people = peer.make_people(workers * throughput.USERS_PER_WORKER, f"rate{tag}-")
    connections.close_all()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    per = throughput.USERS_PER_WORKER
    procs = []
    for w in range(workers):
        rows = [(p.username, p.user_id, p.device_id, p.totp.secret) for p in people]
        mine = rows[w * per : (w + 1) * per]
        proc = ctx.Process(
            target=_django_worker,
            args=(db, mine, peer.CLOCK.now + 3600, barrier, seconds, results),
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
            msg = "a Django worker failed"
            raise RuntimeError(msg)
    return total / elapsed


def main(quick: bool) -> list[Figure | Report | Unmeasured]:
    missing = _missing()
    if missing:
        why = f"{', '.join(missing)} not installed: pip install -e '.[bench]'"
        return [Unmeasured(name, target, why) for name, target in TARGETS.items()]
    import _django_peer as peer

    assert (peer.LoweredArgon2.time_cost, peer.LoweredArgon2.memory_cost) == (
        LOWERED.time_cost,
        LOWERED.memory_cost,
    )
    batch, rounds = (20, 7) if quick else (50, 31)
    seconds, rate_rounds = (3.0, 1) if quick else (8.0, 2)
    with tempfile.TemporaryDirectory(prefix="twostep-bench-") as tmp:
        root = Path(tmp)
        peer.setup(str(root / "django.db"), SYNCHRONOUS)
        peer.migrate()
        store = SQLiteStore(root / "twostep.db", synchronous=SYNCHRONOUS)
        django_code, ours_code = interleave(
            [
                peer.code_step(peer.make_people(batch, "code-")),
                _twostep_code_step(store, batch),
            ],
            rounds,
        )
        django_check, ours_check = interleave(
            [
                peer.session_check(peer.make_people(batch, "session-")),
                _twostep_session_check(store, batch),
            ],
            rounds,
        )
        store.close()
        ours_rates, django_rates = [], []
        for i in range(rate_rounds):
            where = str(root / f"throughput{i}.db")
            ours_rates.append(throughput.measure("sqlite", where, seconds, SYNCHRONOUS))
            django_rates.append(_django_rate(str(root / "django.db"), seconds, str(i)))
    unit = "logins/s"
    return [
        Figure("code_step_vs_django_otp", django_code, ours_code, 0.6),
        Figure("session_check_vs_django", django_check, ours_check, 0.25),
        Figure(
            "logins_per_s_vs_django",
            statistics.mean(django_rates),
            statistics.mean(ours_rates),
            None,
            low=3.0,
            unit=unit,
        ),
        Report(
            "peers_setup",
            f'SQLite WAL, synchronous="{SYNCHRONOUS}" on both sides; Argon2id '
            f"t={LOWERED.time_cost} m={LOWERED.memory_cost} KiB p={LOWERED.parallelism}; "
            f"{throughput.WORKERS} processes for the logins",
        ),
    ]


if __name__ == "__main__":
    for figure in main("--quick" in sys.argv):
        print(figure.line(), flush=True)
