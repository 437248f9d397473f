"""Fixtures for the example apps: twostep on SQLite, a manual clock, the seed users."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.flask_app import seed

import twostep as ts
from twostep.testing import FAST, ManualClock

PASSWORDS = {email: password for email, password, _ in seed.USERS}
OWNER, MANAGER, MEMBER = (email for email, _, _ in seed.USERS)


@pytest.fixture
def app_service(tmp_path: Path, clock: ManualClock) -> Iterator[ts.TwoStep]:
    store = ts.SQLiteStore(tmp_path / "twostep.db")
    service = ts.TwoStep(
        store, issuer="Example", clock=clock, settings=FAST, cipher=ts.AESGCMKeyring.generate()
    )
    seed.seed(service)
    yield service
    store.close()
