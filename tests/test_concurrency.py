"""Exactly-once under concurrency: many workers race on one database (R4-R6, R21, R103).

Each race runs on SQLite (a file) and PostgreSQL, with threads sharing one store
(one app server) and with separate processes that each open their own store from
the path or DSN (several app servers). All workers wait on a barrier, then act at
once; every race is repeated for many rounds. The counts are printed (``pytest -s``)
and written to test-artifacts/race-counts.txt.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

import twostep as ts
from twostep._domain import ThrottleKey, ThrottleScope
from twostep.testing import FAST, ManualClock, Phone

from .authenticator import ORIGIN, RP_ID, SoftKey

WORKERS = 8
THREAD_ROUNDS = 40
PROCESS_ROUNDS = 15
PASSWORD = "correct horse battery"
ISSUER = "Race Test"
# Nobody is blocked during a race, so every failure must show up in the counters.
GENEROUS = ts.ThrottleSettings(free_failures=10**9, forget_after=timedelta(days=3650))
SETTINGS = replace(
    FAST,
    code_throttle=GENEROUS,
    password_throttle=GENEROUS,
    client_throttle=GENEROUS,
    challenge_ttl=timedelta(days=1),
    enrollment_ttl=timedelta(days=1),
    session_ttl=timedelta(days=365),
)
PASSKEYS = ts.PasskeySettings(rp_id=RP_ID, origin=ORIGIN)
ARTIFACT = Path(__file__).resolve().parent.parent / "test-artifacts" / "race-counts.txt"

#: One call of a ``TwoStep`` method: (name, positional args, keyword args); picklable.
Call = tuple[str, tuple[Any, ...], dict[str, Any]]
#: What a call gave: ("ok", summary) or ("error", exception class name, reason).
Outcome = tuple[Any, ...]


def open_store(kind: str, where: str) -> ts.Store:
    if kind == "sqlite":
        return ts.SQLiteStore(where)
    from twostep.stores.postgres import PostgresStore

    return PostgresStore(where, min_size=0, max_size=WORKERS + 2)


def _summary(result: object) -> object:
    """A picklable digest of a result: tokens and codes, which the test needs to go on."""
    if isinstance(result, ts.LoggedIn):
        codes = list(result.backup_codes) if result.backup_codes is not None else None
        return {"kind": "logged_in", "token": result.session.token, "codes": codes}
    if isinstance(result, ts.EnrollmentRequired | ts.CodeRequired):
        return {"kind": type(result).__name__}
    if isinstance(result, ts.BackupCodes):
        return {"kind": "codes", "codes": list(result)}
    return None


def perform(service: ts.TwoStep, call: Call) -> Outcome:
    name, args, kwargs = call
    try:
        return ("ok", _summary(getattr(service, name)(*args, **kwargs)))
    except ts.TwoStepError as error:
        return ("error", type(error).__name__, getattr(error, "reason", None))


class Racers(Protocol):
    def race(self, calls: list[Call], now: datetime) -> list[Outcome]: ...
    def close(self) -> None: ...


class ThreadRacers:
    """Threads of one app server: one store object, one ``TwoStep``."""

    def __init__(self, service: ts.TwoStep) -> None:
        self._service = service
        self._barrier = threading.Barrier(WORKERS)
        self._pool = ThreadPoolExecutor(WORKERS)

    def _run(self, call: Call) -> Outcome:
        self._barrier.wait(timeout=60)
        return perform(self._service, call)

    def race(self, calls: list[Call], now: datetime) -> list[Outcome]:
        # The parent's clock already reads ``now``; the threads share it.
        assert len(calls) == WORKERS
        return list(self._pool.map(self._run, calls))

    def close(self) -> None:
        self._pool.shutdown()


def _serve(
    conn: multiprocessing.connection.Connection,
    barrier: Any,
    kind: str,
    where: str,
    key_line: str,
) -> None:
    """An app server in its own process: its own store and ``TwoStep``; runs calls."""
    store = open_store(kind, where)
    clock = ManualClock()
    service = ts.TwoStep(
        store,
        issuer=ISSUER,
        clock=clock,
        settings=SETTINGS,
        cipher=ts.AESGCMKeyring.from_string(key_line),
        passkeys=PASSKEYS,
    )
    conn.send("ready")
    while (message := conn.recv()) is not None:
        now, call = message
        clock.set(now)
        barrier.wait(timeout=60)
        conn.send(perform(service, call))
    store.close()


class ProcessRacers:
    """Separate processes (spawned, as separate app servers would be)."""

    def __init__(self, kind: str, where: str, key_line: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(WORKERS)
        self._conns: list[multiprocessing.connection.Connection] = []
        self._procs: list[Any] = []
        for _ in range(WORKERS):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=_serve, args=(theirs, barrier, kind, where, key_line), daemon=True
            )
            proc.start()
            self._conns.append(mine)
            self._procs.append(proc)
        for conn in self._conns:
            assert self._recv(conn) == "ready"

    @staticmethod
    def _recv(conn: multiprocessing.connection.Connection) -> Any:
        if not conn.poll(120):
            raise TimeoutError("a race worker did not answer")
        return conn.recv()

    def race(self, calls: list[Call], now: datetime) -> list[Outcome]:
        assert len(calls) == WORKERS
        for conn, call in zip(self._conns, calls, strict=True):
            conn.send((now, call))
        return [self._recv(conn) for conn in self._conns]

    def close(self) -> None:
        for conn in self._conns:
            conn.send(None)
        for proc in self._procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()


@dataclass
class Arena:
    """A database, a ``TwoStep`` of the test's own on it, and the racing workers."""

    kind: str
    mode: str
    store: ts.Store
    service: ts.TwoStep
    clock: ManualClock
    racers: Racers
    rounds: int
    counts: dict[str, Counter[str]] = field(default_factory=dict)

    def race(self, calls: list[Call]) -> list[Outcome]:
        outcomes = self.racers.race(calls, self.clock.now())
        crashed = [o for o in outcomes if o[0] == "error" and o[1] == "StoreError"]
        assert not crashed, crashed
        return outcomes

    def record(self, race: str, outcomes: list[Outcome]) -> None:
        tally = self.counts.setdefault(race, Counter())
        tally["rounds"] += 1
        for o in outcomes:
            tally["ok" if o[0] == "ok" else f"{o[1]}:{o[2]}"] += 1

    def new_user(self, account: ts.Account, role: ts.Role = ts.Role.MEMBER) -> ts.User:
        email = f"{uuid.uuid4().hex}@race.test"
        return self.service.create_user(account.id, email, PASSWORD, role)

    def session(self, user: ts.User) -> ts.Session:
        step = self.service.login(user.email, PASSWORD)
        assert isinstance(step, ts.LoggedIn)
        return step.session

    def enroll(self, user: ts.User) -> tuple[ts.Session, Phone, list[str]]:
        session = self.session(user)
        enrollment = self.service.begin_enrollment(session)
        phone = Phone(enrollment.secret, self.clock)
        codes = self.service.confirm_enrollment(session, phone.code())
        return session, phone, list(codes)

    def fresh_code(self, phone: Phone) -> str:
        self.clock.advance(30)  # a new time step: no code of an earlier round is valid
        return phone.code()

    def challenges(self, user: ts.User) -> list[str]:
        steps = [self.service.login(user.email, PASSWORD) for _ in range(WORKERS)]
        assert all(isinstance(s, ts.CodeRequired) for s in steps)
        return [s.challenge for s in steps if isinstance(s, ts.CodeRequired)]

    def failures(self, key: ThrottleKey) -> int:
        with self.store.transaction(write=False) as tx:
            state = tx.get_throttle(key)
        return 0 if state is None else state.failures


_results: dict[tuple[str, str], dict[str, Counter[str]]] = {}


def _report() -> None:
    lines = []
    for (kind, mode), races in sorted(_results.items()):
        for race, tally in sorted(races.items()):
            rest = ", ".join(f"{k}={v}" for k, v in sorted(tally.items()) if k != "rounds")
            lines.append(f"{kind:8} {mode:9} {race:22} rounds={tally['rounds']:3} {rest}")
    total = sum(t["rounds"] for races in _results.values() for t in races.values())
    lines.append(f"total rounds: {total}, {WORKERS} workers each")
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text("\n".join(lines) + "\n")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    """A database and its key: the arenas of both modes race on it, so they share the key."""
    key_line = ts.AESGCMKeyring.new_key_line()
    if request.param == "sqlite":
        yield "sqlite", str(tmp_path_factory.mktemp("race") / "race.db"), key_line
        return
    from tests import pgserver

    dsn, schema = pgserver.new_schema()
    yield "postgres", dsn, key_line
    pgserver.drop_schema(schema)


@pytest.fixture(scope="module", params=["threads", "processes"])
def arena(request: pytest.FixtureRequest, database: tuple[str, str, str]) -> Iterator[Arena]:
    kind, where, key_line = database
    mode: str = request.param
    clock = ManualClock()
    store = open_store(kind, where)
    service = ts.TwoStep(
        store,
        issuer=ISSUER,
        clock=clock,
        settings=SETTINGS,
        cipher=ts.AESGCMKeyring.from_string(key_line),
        passkeys=PASSKEYS,
    )
    racers: Racers
    if mode == "threads":
        racers, rounds = ThreadRacers(service), THREAD_ROUNDS
    else:
        racers, rounds = ProcessRacers(kind, where, key_line), PROCESS_ROUNDS
    arena = Arena(kind, mode, store, service, clock, racers, rounds)
    try:
        yield arena
    finally:
        racers.close()
        store.close()
        _results[(kind, mode)] = arena.counts
        _report()
        for race, tally in sorted(arena.counts.items()):
            print(f"\n{kind} {mode} {race}: {dict(tally)}")  # noqa: T201 (the tallies, for -s)


def _ok(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [o[1] for o in outcomes if o[0] == "ok"]


def _errors(outcomes: list[Outcome]) -> Counter[str]:
    return Counter(o[1] for o in outcomes if o[0] == "error")


def test_r4_same_otp_on_many_challenges_logs_in_exactly_once(arena: Arena) -> None:  # R4
    account = arena.service.create_account("otp race")
    user = arena.new_user(account)
    _, phone, _ = arena.enroll(user)
    for _ in range(arena.rounds):
        challenges = arena.challenges(user)
        code = arena.fresh_code(phone)
        outcomes = arena.race([("complete_login", (c, code), {}) for c in challenges])
        arena.record("same_otp", outcomes)
        assert len(_ok(outcomes)) == 1, outcomes
        assert _errors(outcomes) == {"InvalidCode": WORKERS - 1}, outcomes


def test_r103_one_assertion_sent_many_times_logs_in_exactly_once(arena: Arena) -> None:  # R103
    account = arena.service.create_account("key race")
    user = arena.new_user(account)
    key = SoftKey()
    session = arena.session(user)
    created = key.create(arena.service.begin_security_key_registration(session))
    arena.service.finish_security_key_registration(session, created, "Key")
    for _ in range(arena.rounds):
        step = arena.service.login(user.email, PASSWORD)
        assert isinstance(step, ts.CodeRequired)
        assertion = key.get(arena.service.security_key_login_options(step))
        call = ("complete_login_with_security_key", (step.challenge, assertion), {})
        outcomes = arena.race([call] * WORKERS)
        arena.record("same_assertion", outcomes)
        assert len(_ok(outcomes)) == 1, outcomes
        assert _errors(outcomes) == {"ChallengeExpired": WORKERS - 1}, outcomes


def test_r104_one_counter_value_on_many_challenges_logs_in_once(arena: Arena) -> None:  # R104
    account = arena.service.create_account("counter race")
    user = arena.new_user(account)
    key = SoftKey()
    session = arena.session(user)
    created = key.create(arena.service.begin_security_key_registration(session))
    arena.service.finish_security_key_registration(session, created, "Key")
    for round_ in range(arena.rounds):
        # Right assertions, each for its own login, all with the same counter value:
        # only one may pass, or the counter would not have grown for the others.
        steps = [arena.service.login(user.email, PASSWORD) for _ in range(WORKERS)]
        count = round_ + 2
        calls: list[Call] = []
        for step in steps:
            assert isinstance(step, ts.CodeRequired)
            options = arena.service.security_key_login_options(step)
            assertion = key.get(options, sign_count=count)
            calls.append(("complete_login_with_security_key", (step.challenge, assertion), {}))
        outcomes = arena.race(calls)
        arena.record("same_sign_count", outcomes)
        assert len(_ok(outcomes)) == 1, outcomes
        assert _errors(outcomes) == {"InvalidCode": WORKERS - 1}, outcomes
        assert {o[2] for o in outcomes if o[0] == "error"} == {"sign_count"}, outcomes


def test_r5_same_backup_code_on_many_challenges_logs_in_exactly_once(arena: Arena) -> None:  # R5
    account = arena.service.create_account("backup race")
    user = arena.new_user(account)
    session, phone, codes = arena.enroll(user)
    for _ in range(arena.rounds):
        if not codes:
            codes = list(arena.service.regenerate_backup_codes(session, arena.fresh_code(phone)))
        code = codes.pop()
        challenges = arena.challenges(user)
        outcomes = arena.race([("complete_login", (c, code), {}) for c in challenges])
        arena.record("same_backup_code", outcomes)
        assert len(_ok(outcomes)) == 1, outcomes
        assert _errors(outcomes) == {"InvalidCode": WORKERS - 1}, outcomes
        status = arena.service.two_factor_status(session)
        assert status.backup_codes_remaining == len(codes)


def test_r10_confirming_one_enrolment_many_times_enables_it_once(arena: Arena) -> None:  # R10
    account = arena.service.create_account("enrol race")
    user = arena.new_user(account)
    session = arena.session(user)
    for _ in range(arena.rounds):
        phone = Phone(arena.service.begin_enrollment(session).secret, arena.clock)
        code = arena.fresh_code(phone)
        outcomes = arena.race([("confirm_enrollment", (session.token, code), {})] * WORKERS)
        arena.record("confirm_enrolment", outcomes)
        winners = _ok(outcomes)
        assert len(winners) == 1, outcomes
        assert sum(_errors(outcomes).values()) == WORKERS - 1
        # The serial end state: 2FA on with this phone and the one set handed out.
        status = arena.service.two_factor_status(session)
        assert status.enabled
        assert status.backup_codes_remaining == len(winners[0]["codes"])
        step = arena.service.login(user.email, PASSWORD)
        assert isinstance(step, ts.CodeRequired)
        session = arena.service.complete_login(step, winners[0]["codes"][0]).session
        arena.service.disable_two_factor(session, arena.fresh_code(phone))


def test_r5_regenerating_backup_codes_in_parallel_leaves_one_set(arena: Arena) -> None:  # R5
    account = arena.service.create_account("regenerate race")
    user = arena.new_user(account)
    session, _, codes = arena.enroll(user)
    for _ in range(arena.rounds):
        # Each worker proves itself with a different unused code of the current set.
        calls: list[Call] = [
            ("regenerate_backup_codes", (session.token, codes[i]), {}) for i in range(WORKERS)
        ]
        outcomes = arena.race(calls)
        arena.record("regenerate_codes", outcomes)
        winners = _ok(outcomes)
        assert len(winners) == 1, outcomes
        assert _errors(outcomes) == {"InvalidCode": WORKERS - 1}, outcomes
        new = winners[0]["codes"]
        assert arena.service.two_factor_status(session).backup_codes_remaining == len(new)
        # The old set is gone, even its codes that nobody raced with ...
        with pytest.raises(ts.InvalidCode):
            arena.service.disable_two_factor(session, codes[-1])
        # ... and the winner's set works.
        step = arena.service.login(user.email, PASSWORD)
        assert isinstance(step, ts.CodeRequired)
        arena.service.complete_login(step, new[-1])
        codes = new[:-1]


def test_r21_no_session_survives_the_requirement_it_raced(arena: Arena) -> None:  # R21
    account = arena.service.create_account("requirement race")
    owner = arena.new_user(account, ts.Role.OWNER)
    _, phone, _ = arena.enroll(owner)
    members = [arena.new_user(account) for _ in range(WORKERS - 1)]
    for _ in range(arena.rounds):
        step = arena.service.login(owner.email, PASSWORD)
        assert isinstance(step, ts.CodeRequired)
        owner_session = arena.service.complete_login(step, arena.fresh_code(phone)).session
        arena.service.set_two_factor_required(owner_session, False)
        before = [arena.session(m) for m in members]
        calls: list[Call] = [("set_two_factor_required", (owner_session.token, True), {})]
        calls += [("login", (m.email, PASSWORD), {}) for m in members]
        outcomes = arena.race(calls)
        arena.record("require_vs_logins", outcomes)
        assert outcomes[0] == ("ok", None)
        kinds = Counter(o[1]["kind"] for o in outcomes[1:] if o[0] == "ok")
        assert sum(kinds.values()) == WORKERS - 1, outcomes
        assert set(kinds) <= {"logged_in", "EnrollmentRequired"}
        # Whatever the order, no session from before the requirement works after it.
        tokens = [o[1]["token"] for o in outcomes[1:] if o[1]["kind"] == "logged_in"]
        tokens += [s.token for s in [owner_session, *before]]
        for token in tokens:
            with pytest.raises(ts.SessionInvalid):
                arena.service.check_session(token)
        tally = arena.counts["require_vs_logins"]
        tally["session_issued_then_revoked"] += kinds["logged_in"]
        tally["enrolment_demanded"] += kinds["EnrollmentRequired"]


def test_r6_parallel_failures_lose_no_throttle_increment(arena: Arena) -> None:  # R6
    account = arena.service.create_account("throttle race")
    user = arena.new_user(account)
    _, phone, _ = arena.enroll(user)
    client = f"198.51.100.{arena.rounds}"
    # Guesses at an unknown email lock no user row: only the store's own locking
    # keeps their counters (and the client's, shared with the code guesses) exact.
    nobody = f"nobody-{uuid.uuid4().hex}@race.test"
    keys = [
        ThrottleKey(ThrottleScope.USER, user.id),
        ThrottleKey(ThrottleScope.EMAIL, nobody),
        ThrottleKey(ThrottleScope.CLIENT, client),
    ]
    half = WORKERS // 2
    for _ in range(arena.rounds):
        with arena.store.transaction() as tx:  # every counter starts missing: the hard case
            for key in keys:
                tx.delete_throttle(key)
        challenges = arena.challenges(user)[:half]
        arena.clock.advance(30)
        near = {phone.code(offset_steps=k) for k in (-1, 0, 1)}
        wrong = next(c for c in (f"{n:06d}" for n in range(0, 10**6, 7919)) if c not in near)
        calls: list[Call] = [("complete_login", (c, wrong), {"client": client}) for c in challenges]
        calls += [("login", (nobody, "wrong password!"), {"client": client})] * half
        outcomes = arena.race(calls)
        arena.record("parallel_failures", outcomes)
        assert _errors(outcomes) == {"InvalidCode": half, "InvalidCredentials": half}, outcomes
        assert arena.failures(keys[0]) == half
        assert arena.failures(keys[1]) == half
        assert arena.failures(keys[2]) == WORKERS
