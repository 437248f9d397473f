"""A host's twostep for the adapters' tests: SQLite, a manual clock, an owner and a member."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock

OWNER, MEMBER = "owner@host.example", "member@host.example"
PASSWORD = "correct horse battery"


@pytest.fixture
def host_service(tmp_path: Path, clock: ManualClock) -> Iterator[ts.TwoStep]:
    store = ts.SQLiteStore(tmp_path / "twostep.db", synchronous="NORMAL")
    service = ts.TwoStep(
        store, issuer="Host", clock=clock, settings=FAST, cipher=ts.AESGCMKeyring.generate()
    )
    account = service.create_account("Host")
    service.create_user(account.id, OWNER, PASSWORD, ts.Role.OWNER)
    service.create_user(account.id, MEMBER, PASSWORD, ts.Role.MEMBER)
    yield service
    store.close()
