"""Each login step against its physical limit.

- otp_step_memory / otp_step_sqlite: ``complete_login`` with a valid OTP, against
  ``pyotp.TOTP.verify(code, valid_window=1)``. Challenges are made beforehand
  (untimed); the clock moves 60 s between rounds so no code is a replay.
- backup_code_step / backup_code_flat: ``complete_login`` with a backup code against
  one Argon2id hash with the backup-code parameters; 20 stored codes against 10.
- password_step / unknown_email: ``login`` (step 1) against one Argon2id verify with
  the password parameters; an unknown email against a known one with a wrong password.
- durable_commit_cost (no target): ``complete_login`` with a valid OTP on SQLite with
  ``synchronous="FULL"`` (the default: the commit is synced to disk) against the same
  with ``"NORMAL"``, in the temporary directory (``TMPDIR`` chooses the disk).
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
import tempfile
import time
from pathlib import Path

import pyotp
from argon2 import PasswordHasher, Type
from argon2.low_level import hash_secret_raw

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CHEAPEST,
    NEXT_CODE,
    PASSWORD,
    Enrolled,
    Figure,
    Report,
    Sample,
    cheap,
    enroll,
    interleave,
    service,
    timed,
)

from twostep import CodeRequired, InMemoryStore, InvalidCredentials, Settings, SQLiteStore
from twostep.stores import sqlite
from twostep.testing import ManualClock


def _otp_figure(
    name: str, store: object, high: float, *, batch: int, rounds: int
) -> tuple[Figure, float]:
    """The figure, and for SQLite the median of the bare SQL of the same logins."""
    clock = ManualClock()
    # Password cost is not part of this step: the cheapest Argon2 makes the set-up quick.
    ts = service(store, cheap(backup_code_hash=CHEAPEST), clock)
    account = ts.create_account("bench")
    people = [enroll(ts, clock, account.id, f"otp{i}@example.com") for i in range(batch)]
    verifiers = [pyotp.TOTP(p.phone._totp.secret) for p in people]

    def baseline() -> float:
        codes = [v.now() for v in verifiers]
        start = time.perf_counter()
        for v, c in zip(verifiers, codes, strict=True):
            v.verify(c, valid_window=1)
        return (time.perf_counter() - start) / batch

    def measured() -> float:
        clock.advance(NEXT_CODE)
        steps = [ts.login(p.email, PASSWORD) for p in people]
        codes = [p.phone.code() for p in people]
        start = time.perf_counter()
        for step, code in zip(steps, codes, strict=True):
            assert isinstance(step, CodeRequired)
            ts.complete_login(step, code)
        return (time.perf_counter() - start) / batch

    samples = [baseline, measured]
    if isinstance(store, SQLiteStore):
        samples.append(_sql_floor(store, account.id, [p.user_id for p in people]))
    base, meas, *floor = interleave(samples, rounds)
    return Figure(name, base, meas, high), (floor[0] / base if floor else 0.0)


def _sql_floor(store: SQLiteStore, account_id: str, user_ids: list[str]) -> Sample:
    """The statements a code login sends, sent bare through sqlite3 with the store's SQL.

    The physical limit of the SQLite figure: no Python around the statements, no
    code check, no row turned into objects; the same transaction, pages and commit.
    """
    db = store._connection()
    at = 1_800_000_000_000_000
    row = (account_id, "user", None, "login", None, "success", "otp", 1)  # 1: repeats

    def sample() -> float:
        tokens = [secrets.token_hex(32) for _ in user_ids]
        db.execute("BEGIN IMMEDIATE")
        for user_id, token in zip(user_ids, tokens, strict=True):
            db.execute(
                "INSERT INTO challenges VALUES (?, ?, 'code', ?, ?, 0)", (token, user_id, at, at)
            )
        db.execute("COMMIT")
        start = time.perf_counter()
        for user_id, token in zip(user_ids, tokens, strict=True):
            db.execute("BEGIN IMMEDIATE")
            db.execute(sqlite._GET_CHALLENGE, (token,)).fetchone()
            db.execute(sqlite._GET_USER, (user_id,)).fetchone()
            db.execute(sqlite._GET_ACCOUNT, (account_id,)).fetchone()
            db.execute(sqlite._GET_THROTTLE, (f"user:{user_id}",)).fetchone()
            # A changed value (SQLite skips a row written back unchanged); a lower step
            # only lets later codes through, so the measured logins are not disturbed.
            db.execute("UPDATE users SET last_step = last_step - 1 WHERE id = ?", (user_id,))
            db.execute("DELETE FROM challenges WHERE token_hash = ?", (token,))
            session = (secrets.token_hex(32), user_id, account_id, at, at, 0, 0, 0, at)
            db.execute(sqlite._PUT_SESSION, session)
            db.execute(sqlite._ADD_AUDIT, (at, *row))
            db.execute("COMMIT")
        return (time.perf_counter() - start) / len(user_ids)

    return sample


def otp_figures(quick: bool) -> list[Figure | Report]:
    batch, rounds = (20, 15) if quick else (50, 41)
    memory, _ = _otp_figure("otp_step_memory", InMemoryStore(), 2.0, batch=batch, rounds=rounds)
    with tempfile.TemporaryDirectory() as tmp:
        # NORMAL: the figure is what the library adds to the statements; what a commit
        # synced to disk (the default, FULL) adds is durable_commit_cost's, and the disk's.
        store = SQLiteStore(Path(tmp) / "otp.db", synchronous="NORMAL")
        on_sqlite, floor = _otp_figure("otp_step_sqlite", store, 5.0, batch=batch, rounds=rounds)
        store.close()
    return [
        memory,
        on_sqlite,
        Report(
            "otp_step_sqlite_floor",
            f"{floor:.2f} (no target): the same statements and commit sent bare through "
            "sqlite3, against the same baseline",
        ),
    ]


def backup_figures(quick: bool) -> list[Figure]:
    """One backup-code login per sample; each stored set is used for at most 5 logins."""
    rounds = 6 if quick else 21
    uses_per_user = 5
    settings = Settings()
    params = settings.backup_code_hash
    clock = ManualClock()
    with tempfile.TemporaryDirectory() as tmp:
        stores = {n: SQLiteStore(Path(tmp) / f"backup{n}.db") for n in (10, 20)}
        services = {n: service(stores[n], cheap(backup_code_count=n), clock) for n in (10, 20)}
        people: dict[int, list[Enrolled]] = {}
        for n, ts in services.items():
            account = ts.create_account("bench")
            count = -(-(rounds + 1) // uses_per_user)
            people[n] = [
                enroll(ts, clock, account.id, f"b{n}-{i}@example.com") for i in range(count)
            ]
        uses = {10: 0, 20: 0}

        def with_codes(n: int) -> float:
            i = uses[n]
            uses[n] += 1
            who = people[n][i // uses_per_user]
            step = services[n].login(who.email, PASSWORD)
            assert isinstance(step, CodeRequired)
            code = who.backup[i % uses_per_user]
            return timed(lambda: services[n].complete_login(step, code))

        salt = b"0123456789abcdef"

        def baseline() -> float:
            return timed(
                lambda: hash_secret_raw(
                    b"abcdefghjk",
                    salt,
                    time_cost=params.time_cost,
                    memory_cost=params.memory_cost,
                    parallelism=params.parallelism,
                    hash_len=32,
                    type=Type.ID,
                )
            )

        base, ten, twenty = interleave(
            [baseline, lambda: with_codes(10), lambda: with_codes(20)], rounds
        )
        for store in stores.values():
            store.close()
    return [
        Figure("backup_code_step", base, ten, 1.3),
        Figure("backup_code_flat", ten, twenty, 1.1),
    ]


def password_figures(quick: bool) -> list[Figure]:
    """Step 1 with the default Argon2 parameters, on SQLite."""
    rounds = 5 if quick else 21
    settings = Settings()
    p = settings.password_hash
    hasher = PasswordHasher(
        time_cost=p.time_cost, memory_cost=p.memory_cost, parallelism=p.parallelism, type=Type.ID
    )
    stored = hasher.hash(PASSWORD)
    clock = ManualClock()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "password.db")
        ts = service(store, dataclasses.replace(settings, backup_code_hash=CHEAPEST), clock)
        account = ts.create_account("bench")
        who = enroll(ts, clock, account.id, "known@example.com")
        counter = [0]

        def baseline() -> float:
            return timed(lambda: hasher.verify(stored, PASSWORD))

        def two_factor_user() -> float:
            return timed(lambda: ts.login(who.email, PASSWORD))

        def refused(email: str, password: str) -> float:
            # A day apart, so the email's throttle has forgotten earlier failures (R6).
            clock.advance(86_401)
            start = time.perf_counter()
            try:
                ts.login(email, password)
            except InvalidCredentials:
                pass
            else:
                msg = "the login should have been refused"
                raise AssertionError(msg)
            return time.perf_counter() - start

        def unknown() -> float:
            counter[0] += 1
            return refused(f"nobody{counter[0]}@example.com", PASSWORD)

        def wrong() -> float:
            return refused(who.email, "not the password at all")

        base, step1, unknown_t, wrong_t = interleave(
            [baseline, two_factor_user, unknown, wrong], rounds
        )
        store.close()
    return [
        Figure("password_step", base, step1, 1.1),
        Figure("unknown_email", wrong_t, unknown_t, 1.1, low=0.9),
    ]


def _code_logins(store: SQLiteStore, batch: int) -> Sample:
    """Code logins of ``batch`` enrolled users, each round; seconds per login."""
    clock = ManualClock()
    ts = service(store, cheap(backup_code_hash=CHEAPEST), clock)
    account = ts.create_account("bench")
    people = [enroll(ts, clock, account.id, f"durable{i}@example.com") for i in range(batch)]

    def sample() -> float:
        clock.advance(NEXT_CODE)
        steps = [ts.login(p.email, PASSWORD) for p in people]
        codes = [p.phone.code() for p in people]
        start = time.perf_counter()
        for step, code in zip(steps, codes, strict=True):
            assert isinstance(step, CodeRequired)
            ts.complete_login(step, code)
        return (time.perf_counter() - start) / batch

    return sample


def durable_figures(quick: bool) -> list[Figure | Report]:
    """What syncing each commit to disk adds to a code login on SQLite."""
    batch, rounds = (10, 5) if quick else (20, 15)
    with tempfile.TemporaryDirectory() as tmp:
        full = SQLiteStore(Path(tmp) / "full.db")  # the default: synchronous="FULL"
        normal = SQLiteStore(Path(tmp) / "normal.db", synchronous="NORMAL")
        normal_t, full_t = interleave(
            [_code_logins(normal, batch), _code_logins(full, batch)], rounds
        )
        full.close()
        normal.close()
    return [
        Report(
            "durable_commit_cost",
            f"{full_t / normal_t:.2f} (no target): a code login on SQLite with "
            f'synchronous="FULL" (the default), {full_t * 1e6:.0f}us, against '
            f'"NORMAL", {normal_t * 1e6:.0f}us',
        )
    ]


def main(quick: bool) -> list[Figure | Report]:
    return [
        *otp_figures(quick),
        *backup_figures(quick),
        *password_figures(quick),
        *durable_figures(quick),
    ]


if __name__ == "__main__":
    for figure in main("--quick" in sys.argv):
        print(figure.line(), flush=True)
