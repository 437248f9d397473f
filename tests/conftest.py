"""Shared fixtures: every service test runs on each store, on a manual clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock, Phone

PASSWORD = "correct horse battery"
STORES = ["memory", "sqlite"]


def make_store(kind: str, tmp_path: Path) -> ts.Store:
    if kind == "memory":
        return ts.InMemoryStore()
    if kind == "sqlite":
        return ts.SQLiteStore(tmp_path / "twostep.db")
    raise ValueError(kind)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ts.Store]:
    s = make_store(request.param, tmp_path)
    yield s
    s.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def keyring() -> ts.AESGCMKeyring:
    return ts.AESGCMKeyring.generate()


@pytest.fixture
def service(store: ts.Store, clock: ManualClock, keyring: ts.AESGCMKeyring) -> ts.TwoStep:
    return ts.TwoStep(store, issuer="Acme Analytics", clock=clock, settings=FAST, cipher=keyring)


@dataclass
class World:
    """An account with an owner, a manager and a member, and a phone per enrolled user."""

    service: ts.TwoStep
    clock: ManualClock
    account: ts.Account
    owner: ts.User
    manager: ts.User
    member: ts.User
    phones: dict[str, Phone] = field(default_factory=dict)
    backup_codes: dict[str, list[str]] = field(default_factory=dict)

    def login(self, user: ts.User, *, code: str | None = None) -> ts.Session:
        """Log in all the way, enrolling if the account demands it (R3)."""
        step = self.service.login(user.email, PASSWORD)
        if isinstance(step, ts.LoggedIn):
            return step.session
        if isinstance(step, ts.EnrollmentRequired):
            phone = Phone(step.enrollment.secret, self.clock)
            done = self.service.complete_login(step, phone.code())
            assert done.backup_codes is not None
            self.phones[user.id] = phone
            self.backup_codes[user.id] = list(done.backup_codes)
            return done.session
        self.clock.advance(30)  # a fresh time step, so no code is a replay (R4)
        return self.service.complete_login(step, code or self.phones[user.id].code()).session

    def enroll(self, session: ts.Session) -> Phone:
        """Turn 2FA on for the session's user (R30)."""
        enrollment = self.service.begin_enrollment(session)
        phone = Phone(enrollment.secret, self.clock)
        codes = self.service.confirm_enrollment(session, phone.code())
        self.phones[session.user_id] = phone
        self.backup_codes[session.user_id] = list(codes)
        return phone

    def fresh_code(self, user_id: str) -> str:
        self.clock.advance(30)
        return self.phones[user_id].code()


@pytest.fixture
def world(service: ts.TwoStep, clock: ManualClock) -> World:
    account = service.create_account("Acme")
    owner = service.create_user(account.id, "owner@acme.test", PASSWORD, ts.Role.OWNER)
    manager = service.create_user(account.id, "manager@acme.test", PASSWORD, ts.Role.MANAGER)
    member = service.create_user(account.id, "member@acme.test", PASSWORD, ts.Role.MEMBER)
    return World(service, clock, account, owner, manager, member)
