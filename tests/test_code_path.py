"""One path for every code (R6, R60): a throttled user or a dead challenge costs nothing slow.

For each operation that takes a code, a user whose code throttle is blocked is refused
before any code is checked: no Argon2 hash of a backup code, no new backup codes. So a
right code and a wrong one answer in the same time, and timing cannot find the code
while the throttle holds (the bound of docs/security.md). Backup codes are hashed with a
noticeable cost here, so that a leak would show as a ratio of ~100, not ~1.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

import twostep as ts
import twostep._code_check as code_check
from twostep.testing import FAST, ManualClock, Phone

from .conftest import PASSWORD, World, ask_code

#: Backup codes cost a few ms each to hash: ten of them would stand out of a throttled answer.
SLOW_CODES = replace(FAST, backup_code_hash=ts.Argon2Params(1, 4096, 1))
WRONG_BACKUP = "zzzzz-zzzzz"
FAILURES_TO_BLOCK = SLOW_CODES.code_throttle.free_failures + 1
TRIES = 15


def wrong_otp(phone: Phone) -> str:
    nearby = {phone.code(offset_steps=k) for k in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in nearby)


@dataclass
class Throttled:
    """An operation for a user whose code throttle is blocked, with a right and a wrong code."""

    call: Callable[[str], object]
    right: str
    wrong: str


@pytest.fixture
def slow_world(store: ts.Store, clock: ManualClock, keyring: ts.AESGCMKeyring) -> World:
    service = ts.TwoStep(store, issuer="Acme", clock=clock, settings=SLOW_CODES, cipher=keyring)
    account = service.create_account("Acme")
    owner = service.create_user(account.id, "owner@acme.test", PASSWORD, ts.Role.OWNER)
    manager = service.create_user(account.id, "manager@acme.test", PASSWORD, ts.Role.MANAGER)
    member = service.create_user(account.id, "member@acme.test", PASSWORD, ts.Role.MEMBER)
    return World(service, clock, account, owner, manager, member)


def block(call: Callable[[str], object], wrong: str) -> None:
    for _ in range(FAILURES_TO_BLOCK):
        with pytest.raises(ts.InvalidCode):
            call(wrong)


def enrolled_member(world: World) -> tuple[ts.Session, Phone]:
    session = world.login(world.member)
    phone = world.enroll(session)
    world.clock.advance(30)
    return session, phone


def login_code(world: World, backup: bool) -> Throttled:
    _, phone = enrolled_member(world)
    for _ in range(FAILURES_TO_BLOCK):  # a challenge dies after 5 wrong codes: one each
        step = ask_code(world.service, world.member.email)
        with pytest.raises(ts.InvalidCode):
            world.service.complete_login(step, wrong_otp(phone))
    step = ask_code(world.service, world.member.email)
    right = world.backup_codes[world.member.id][0] if backup else phone.code()
    wrong = WRONG_BACKUP if backup else wrong_otp(phone)
    return Throttled(lambda c: world.service.complete_login(step, c), right, wrong)


def login_enrolment(world: World, backup: bool) -> Throttled:
    owner = world.login(world.owner)
    world.service.set_two_factor_required(owner, True)
    for _ in range(FAILURES_TO_BLOCK):
        step = world.service.login(world.member.email, PASSWORD)
        assert isinstance(step, ts.EnrollmentRequired)
        with pytest.raises(ts.InvalidCode):
            world.service.complete_login(step, "000000")
    step = world.service.login(world.member.email, PASSWORD)
    assert isinstance(step, ts.EnrollmentRequired)
    phone = Phone(step.enrollment.secret, world.clock)
    return Throttled(
        lambda c: world.service.complete_login(step, c), phone.code(), wrong_otp(phone)
    )


def confirm_enrollment(world: World, backup: bool) -> Throttled:
    session = world.login(world.member)
    phone = Phone(world.service.begin_enrollment(session).secret, world.clock)

    def call(code: str) -> object:
        return world.service.confirm_enrollment(session, code)

    block(call, wrong_otp(phone))
    return Throttled(call, phone.code(), wrong_otp(phone))


def with_confirmed_code(
    method: str, *, required: bool = False
) -> Callable[[World, bool], Throttled]:
    def setup(world: World, backup: bool) -> Throttled:
        session, phone = enrolled_member(world)
        if required:
            owner = world.login(world.owner)
            world.service.set_two_factor_required(owner, True)
            session = world.login(world.member)
        action = getattr(world.service, method)

        def call(code: str) -> object:
            return action(session, code)

        block(call, wrong_otp(phone))
        right = world.backup_codes[world.member.id][1] if backup else phone.code()
        return Throttled(call, right, WRONG_BACKUP if backup else wrong_otp(phone))

    return setup


OPERATIONS: dict[str, Callable[[World, bool], Throttled]] = {
    "complete_login": login_code,
    "complete_login_enrolment": login_enrolment,
    "confirm_enrollment": confirm_enrollment,
    "disable_two_factor": with_confirmed_code("disable_two_factor"),
    "begin_reset": with_confirmed_code("begin_reset", required=True),
    "regenerate_backup_codes": with_confirmed_code("regenerate_backup_codes"),
}
CASES = [
    pytest.param(name, backup, id=f"{name}-{'backup' if backup else 'otp'}")
    for name in OPERATIONS
    for backup in (False, True)
    if not (backup and name in ("complete_login_enrolment", "confirm_enrollment"))
]


@pytest.fixture
def slow_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the slow work of the code path: backup-code hashes and new backup codes."""
    done: list[str] = []
    real_hash, real_make = code_check.hash_backup_code, code_check.make_backup_codes

    def hashed(*args: object, **kwargs: object) -> bytes:
        done.append("hash")
        return real_hash(*args, **kwargs)  # type: ignore[arg-type]

    def made(*args: object, **kwargs: object) -> object:
        done.append("new_codes")
        return real_make(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(code_check, "hash_backup_code", hashed)
    monkeypatch.setattr(code_check, "make_backup_codes", made)
    return done


def refused_in(call: Callable[[str], object], code: str) -> float:
    started = time.perf_counter()
    with pytest.raises(ts.Throttled):
        call(code)
    return time.perf_counter() - started


@pytest.mark.parametrize(("operation", "backup"), CASES)
def test_r6_a_throttled_code_answers_in_the_same_time_right_or_wrong(
    slow_world: World, slow_work: list[str], operation: str, backup: bool
) -> None:
    case = OPERATIONS[operation](slow_world, backup)
    slow_work.clear()
    right, wrong = [], []
    for _ in range(TRIES):  # interleaved, so that a busy moment hits both alike
        right.append(refused_in(case.call, case.right))
        wrong.append(refused_in(case.call, case.wrong))
    # Refused before any check: nothing slow was done for either code.
    assert slow_work == []
    ratio = statistics.median(right) / statistics.median(wrong)
    assert 1 / 3 < ratio < 3, f"right/wrong = {ratio:.2f}"


@pytest.mark.parametrize(("operation", "backup"), CASES)
def test_r60_each_throttled_attempt_is_audited_and_counts_nothing(
    slow_world: World, operation: str, backup: bool
) -> None:
    case = OPERATIONS[operation](slow_world, backup)
    owner_session = slow_world.login(slow_world.owner)
    before = slow_world.service.audit_trail(owner_session, limit=10_000)
    for code in (case.right, case.wrong):
        with pytest.raises(ts.Throttled):
            case.call(code)
    after = slow_world.service.audit_trail(owner_session, limit=10_000)
    new = after[: len(after) - len(before)]
    # R75: the second attempt, within the collapse window, is counted on the first's event.
    assert [(e.outcome, e.reason, e.actor_id, e.repeats) for e in new] == [
        (ts.Outcome.THROTTLED, "user", slow_world.member.id, 2)
    ]


def test_r6_a_backup_code_on_a_dead_challenge_costs_no_hash(
    slow_world: World, slow_work: list[str]
) -> None:
    _, _ = enrolled_member(slow_world)
    step = ask_code(slow_world.service, slow_world.member.email)
    slow_world.clock.advance(seconds=SLOW_CODES.challenge_ttl.total_seconds())
    slow_work.clear()
    with pytest.raises(ts.ChallengeExpired):
        slow_world.service.complete_login(step, slow_world.backup_codes[slow_world.member.id][0])
    assert slow_work == []


def test_r6_a_wrong_code_makes_no_new_backup_codes(slow_world: World, slow_work: list[str]) -> None:
    session, phone = enrolled_member(slow_world)
    slow_work.clear()
    with pytest.raises(ts.InvalidCode):
        slow_world.service.regenerate_backup_codes(session, wrong_otp(phone))
    assert slow_work == []
    codes = slow_world.service.regenerate_backup_codes(session, phone.code())
    assert len(codes) == SLOW_CODES.backup_code_count
    assert slow_work == ["new_codes"]
