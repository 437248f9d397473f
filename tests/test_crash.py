"""A process killed in the middle of a flow leaves the database as before the flow.

A child process (spawned, with its own store opened from the path or DSN) runs one
flow: confirming an enrolment (R10/R11), an owner's reset (R41), confirming a
self-reset on a new phone (R40), regenerating backup codes (R5). Its store is
wrapped so that the write transaction stops just before its commit, after every
write of the flow; the parent then kills it with SIGKILL, compares every table
with a copy taken before the flow, and finishes the same flow itself, to show no
lock was left behind.
"""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock, Phone

PASSWORD = "correct horse battery"
SETTINGS = replace(FAST, enrollment_ttl=timedelta(days=1))

Snapshot = dict[str, list[tuple[Any, ...]]]


def open_store(kind: str, where: str) -> ts.Store:
    if kind == "sqlite":
        return ts.SQLiteStore(where)
    from twostep.stores.postgres import PostgresStore

    return PostgresStore(where, min_size=0, max_size=2)


def snapshot(kind: str, where: str) -> Snapshot:
    """Every row of every table, read on a connection of its own."""
    tables: Snapshot = {}
    if kind == "sqlite":
        db = sqlite3.connect(where)
        try:
            names = [
                r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            for name in names:
                tables[name] = sorted(db.execute(f"SELECT * FROM {name}"), key=repr)  # noqa: S608
        finally:
            db.close()
        return tables
    import psycopg

    with psycopg.connect(where) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        ]
        for name in names:
            rows = conn.execute(f"SELECT * FROM {name}").fetchall()  # noqa: S608
            tables[name] = sorted(rows, key=repr)
    return tables


class _Recording:
    """A transaction that notes whether the flow wrote a user."""

    def __init__(self, tx: ts.Transaction) -> None:
        self._tx = tx
        self.wrote_user = False

    def put_user(self, user: ts.User) -> None:
        self.wrote_user = True
        self._tx.put_user(user)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


class PausingStore:
    """Stops the first write transaction that changes a user, just before its commit."""

    def __init__(self, inner: ts.Store, paused: Any) -> None:
        self._inner = inner
        self._paused = paused

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        with self._inner.transaction(write=write) as tx:
            recording = _Recording(tx)
            yield recording
            if write and recording.wrote_user:
                self._paused.set()
                threading.Event().wait()  # until the parent kills this process

    def close(self) -> None:
        self._inner.close()


def _child(
    kind: str,
    where: str,
    key_line: str,
    now: datetime,
    flow: str,
    args: tuple[str, ...],
    paused: Any,
) -> None:
    store = PausingStore(open_store(kind, where), paused)
    service = ts.TwoStep(
        store,
        issuer="Crash Test",
        clock=ManualClock(now),
        settings=SETTINGS,
        cipher=ts.AESGCMKeyring.from_string(key_line),
    )
    getattr(service, flow)(*args)
    raise AssertionError("the flow was expected to be killed before its commit")


@dataclass
class Setup:
    kind: str
    where: str
    key_line: str
    service: ts.TwoStep
    clock: ManualClock
    account: ts.Account
    owner: ts.User
    member: ts.User

    def session(self, user: ts.User, phone: Phone | None = None) -> ts.Session:
        step = self.service.login(user.email, PASSWORD)
        if isinstance(step, ts.LoggedIn):
            return step.session
        assert isinstance(step, ts.CodeRequired)
        assert phone is not None
        self.clock.advance(30)
        return self.service.complete_login(step, phone.code()).session

    def enroll(self, user: ts.User) -> tuple[ts.Session, Phone, list[str]]:
        session = self.session(user)
        phone = Phone(self.service.begin_enrollment(session).secret, self.clock)
        codes = list(self.service.confirm_enrollment(session, phone.code()))
        return session, phone, codes

    def kill_during(self, flow: str, *args: str, counted_for: str | None = None) -> None:
        """Run ``flow`` in a child, kill it before it commits; the tables must not change.

        A flow that takes a code and does slow work admits the attempt on the user's
        throttle in a commit of its own first (R71): with ``counted_for``, that attempt in
        flight, and no failure, is the only change allowed (R74).
        """
        before = snapshot(self.kind, self.where)
        ctx = multiprocessing.get_context("spawn")
        paused = ctx.Event()
        child = ctx.Process(
            target=_child,
            args=(self.kind, self.where, self.key_line, self.clock.now(), flow, args, paused),
        )
        child.start()
        try:
            assert paused.wait(timeout=120), "the child never reached its commit"
            child.kill()
            child.join(timeout=60)
            assert child.exitcode == -signal.SIGKILL
        finally:
            if child.is_alive():
                child.kill()
                child.join()
        after = snapshot(self.kind, self.where)
        if counted_for is not None:
            old, new = before.pop("throttles"), after.pop("throttles")
            added = [row for row in new if row not in old]
            assert [(row[0], row[1]) for row in added] == [(f"user:{counted_for}", 0)]
            assert [row for row in old if row not in new] == []
        assert after == before


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Setup]:
    schema = None
    if request.param == "sqlite":
        where = str(tmp_path / "crash.db")
    else:
        from tests import pgserver

        where, schema = pgserver.new_schema()
    key_line = ts.AESGCMKeyring.new_key_line()
    clock = ManualClock()
    store = open_store(request.param, where)
    service = ts.TwoStep(
        store,
        issuer="Crash Test",
        clock=clock,
        settings=SETTINGS,
        cipher=ts.AESGCMKeyring.from_string(key_line),
    )
    account = service.create_account("Acme")
    owner = service.create_user(account.id, "owner@crash.test", PASSWORD, ts.Role.OWNER)
    member = service.create_user(account.id, "member@crash.test", PASSWORD)
    yield Setup(request.param, where, key_line, service, clock, account, owner, member)
    store.close()
    if schema is not None:
        from tests import pgserver

        pgserver.drop_schema(schema)


def test_r11_killed_enrolment_confirmation_leaves_2fa_off(setup: Setup) -> None:  # R10, R11
    session = setup.session(setup.member)
    phone = Phone(setup.service.begin_enrollment(session).secret, setup.clock)
    setup.kill_during(
        "confirm_enrollment", session.token, phone.code(), counted_for=setup.member.id
    )
    assert not setup.service.two_factor_status(session).enabled
    # Nothing is left locked: the same confirmation now goes through.
    assert len(setup.service.confirm_enrollment(session, phone.code())) == 10
    assert setup.service.two_factor_status(session).enabled


def test_r41_killed_owner_reset_leaves_the_user_enrolled(setup: Setup) -> None:  # R41
    _, phone, _ = setup.enroll(setup.member)
    member_session = setup.session(setup.member, phone)
    owner_session = setup.session(setup.owner)
    setup.kill_during("reset_two_factor", owner_session.token, setup.member.id)
    assert setup.service.check_session(member_session).two_factor_enabled
    setup.service.reset_two_factor(owner_session, setup.member.id)
    with pytest.raises(ts.SessionInvalid):
        setup.service.check_session(member_session)


def test_r40_killed_self_reset_keeps_the_old_phone(setup: Setup) -> None:  # R40
    _, old_phone, _ = setup.enroll(setup.member)
    owner_session = setup.session(setup.owner)
    setup.service.set_two_factor_required(owner_session, True)
    session = setup.session(setup.member, old_phone)
    setup.clock.advance(30)
    new_phone = Phone(setup.service.begin_reset(session, old_phone.code()).secret, setup.clock)
    setup.clock.advance(30)
    setup.kill_during(
        "confirm_enrollment", session.token, new_phone.code(), counted_for=setup.member.id
    )
    setup.session(setup.member, old_phone)  # the old phone still works (R11)
    setup.clock.advance(30)
    setup.service.confirm_enrollment(session, new_phone.code())
    setup.session(setup.member, new_phone)


def test_r5_killed_regeneration_keeps_the_old_backup_codes(setup: Setup) -> None:  # R5
    session, phone, codes = setup.enroll(setup.member)
    setup.clock.advance(30)
    setup.kill_during(
        "regenerate_backup_codes", session.token, phone.code(), counted_for=setup.member.id
    )
    assert setup.service.two_factor_status(session).backup_codes_remaining == len(codes)
    step = setup.service.login(setup.member.email, PASSWORD)
    assert isinstance(step, ts.CodeRequired)
    setup.service.complete_login(step, codes[0])  # an old code still works
    new = list(setup.service.regenerate_backup_codes(session, phone.code()))
    assert new != codes
