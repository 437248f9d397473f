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
        # NORMAL: these tests are not about durability (test_store_faults.py checks the
        # FULL default); a synced commit each time made these tests a third slower.
        return ts.SQLiteStore(tmp_path / "twostep.db", synchronous="NORMAL")
    if kind == "postgres":  # a fresh schema on the test server (tests/pgserver.py)
        from tests import pgserver

        return pgserver.make_store()
    raise ValueError(kind)


#: Every store, PostgreSQL included, for the modules whose stories must hold on each:
#: ``store = pytest.fixture(params=ALL_STORES, name="store")(every_store)``.
ALL_STORES = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def every_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ts.Store]:
    """A store of the kind ``request.param`` names, closed when the test ends."""
    made = make_store(request.param, tmp_path)
    yield made
    made.close()


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


def store_snapshot(store: ts.Store, *, skip: tuple[str, ...] = ()) -> dict[str, object]:
    """Everything a store holds, table by table, to compare before and after an action.

    ``skip`` names tables to leave out ("audit", "throttles", "challenges", ...), for
    actions that the rules say must record something there (a counted failure).
    """
    import sqlite3

    tables: dict[str, object] = {}
    if isinstance(store, ts.InMemoryStore):
        tables = {
            "accounts": dict(store.accounts),
            "users": dict(store.users),
            "emails": dict(store.emails),
            "members": {k: frozenset(v) for k, v in store.members.items()},
            "challenges": dict(store.challenges),
            "sessions": dict(store.sessions),
            "devices": dict(store.devices),
            "throttles": dict(store.throttles),
            "security_keys": dict(store.security_keys),
            "credentials": dict(store.credentials),
            "audit": [event for _, event in store.audit],  # without positions, as SQL rows
        }
    elif isinstance(store, ts.SQLiteStore):
        db = sqlite3.connect(store.path)
        try:
            names = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            for name in names:
                tables[name] = sorted(
                    db.execute(f"SELECT * FROM {name}").fetchall(),  # noqa: S608
                    key=repr,
                )
        finally:
            db.close()
    elif any(c.__name__ == "PostgresStore" for c in type(store).__mro__):
        with store._connection() as conn:  # type: ignore[attr-defined]
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' "
                    "ORDER BY table_name"
                )
            ]
            for name in names:
                tables[name] = sorted(
                    conn.execute(f"SELECT * FROM {name}").fetchall(),  # noqa: S608
                    key=repr,
                )
            conn.rollback()
    else:
        raise TypeError(f"no snapshot for {type(store).__name__}")
    for name in skip:
        tables.pop(name, None)
    return tables


def ask_code(service: ts.TwoStep, email: str) -> ts.CodeRequired:
    """Step 1 of a login for a user with 2FA: the challenge that asks for a code (R1)."""
    step = service.login(email, PASSWORD)
    assert isinstance(step, ts.CodeRequired), step
    return step
