"""Each login step against its physical limit.

- otp_step_sqlite: ``complete_login`` with a valid OTP on SQLite against the SQL floor:
  the same statements and commit sent bare through ``sqlite3`` with the store's own
  SQL. Challenges are made beforehand (untimed); the clock moves 60 s between rounds
  so no code is a replay.
- check_session: ``check_session`` on SQLite against the bare SQL of its lookup.
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
import hashlib
import secrets
import sys
import tempfile
import time
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.low_level import hash_secret_raw

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CHEAPEST,
    PASSWORD,
    Enrolled,
    Figure,
    Report,
    Sample,
    cheap,
    code_logins,
    enroll,
    full_login,
    interleave,
    service,
    timed,
)

from twostep import CodeRequired, InvalidCredentials, Settings, SQLiteStore
from twostep.stores import sqlite
from twostep.testing import ManualClock


def _otp_logins(store: SQLiteStore, batch: int) -> tuple[Sample, Sample]:
    """Code logins of ``batch`` users, and the bare SQL of the same logins; s per login."""
    clock = ManualClock()
    # Password cost is not part of this step: the cheapest Argon2 makes the set-up quick.
    ts = service(store, cheap(backup_code_hash=CHEAPEST), clock)
    account = ts.create_account("bench")
    people = [enroll(ts, clock, account.id, f"otp{i}@example.com") for i in range(batch)]
    measured = code_logins(ts, clock, people)
    return measured, _sql_floor(store, account.id, [p.user_id for p in people])


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
            db.execute("PRAGMA user_version").fetchone()
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


def _session_checks(store: SQLiteStore, batch: int) -> tuple[Sample, Sample]:
    """``check_session`` of ``batch`` sessions, and the bare SQL of the same checks."""
    clock = ManualClock()
    ts = service(store, cheap(backup_code_hash=CHEAPEST), clock)
    account = ts.create_account("sessions")
    people = [enroll(ts, clock, account.id, f"check{i}@example.com") for i in range(batch)]
    tokens = [full_login(ts, p).session.token for p in people]
    hashes = [hashlib.sha256(t.encode()).hexdigest() for t in tokens]
    db = store._connection()

    def measured() -> float:
        start = time.perf_counter()
        for token in tokens:
            ts.check_session(token)
        return (time.perf_counter() - start) / batch

    def floor() -> float:
        start = time.perf_counter()
        for hashed in hashes:
            db.execute("BEGIN")
            db.execute("PRAGMA user_version").fetchone()
            db.execute(sqlite._GET_SESSION_WITH_USER, (hashed,)).fetchone()
            db.execute("COMMIT")
        return (time.perf_counter() - start) / batch

    return measured, floor


def floor_figures(quick: bool) -> list[Figure]:
    """The code step and the session check on SQLite against the bare SQL they send."""
    batch, rounds = (20, 15) if quick else (50, 41)
    with tempfile.TemporaryDirectory() as tmp:
        # NORMAL: the figure is what the library adds to the statements; what a commit
        # synced to disk (the default, FULL) adds is durable_commit_cost's, and the disk's.
        store = SQLiteStore(Path(tmp) / "otp.db", synchronous="NORMAL")
        logins, login_sql = _otp_logins(store, batch)
        checks, check_sql = _session_checks(store, batch)
        login_t, login_floor, check_t, check_floor = interleave(
            [logins, login_sql, checks, check_sql], rounds
        )
        store.close()
    return [
        Figure("otp_step_sqlite", login_floor, login_t, 2.5),
        Figure("check_session", check_floor, check_t, 2.0),
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
    return code_logins(ts, clock, people)


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
        *floor_figures(quick),
        *backup_figures(quick),
        *password_figures(quick),
        *durable_figures(quick),
    ]


if __name__ == "__main__":
    for figure in main("--quick" in sys.argv):
        print(figure.line(), flush=True)
