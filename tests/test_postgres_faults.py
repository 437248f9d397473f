"""What ``PostgresStore`` does when the server fails, or the schema changes under it.

Commits of write transactions are synchronous whatever the server's default; an
outage fails requests within the store's ``timeout`` with ``reason="unavailable"``,
and once the server is back the next request goes through, dead pooled connections
replaced; a schema migrated by a newer twostep is refused before anything is written.
The outage tests stop and start a throwaway server of their own, one for the module.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import twostep as ts
from tests import pgserver
from twostep.stores._migrations import SCHEMA_VERSION
from twostep.stores.postgres import PostgresStore

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
#: How much longer than its timeout a refused request may take (a loaded CI machine).
MARGIN = 0.75


@pytest.fixture
def dsn() -> Iterator[str]:
    """An empty schema of its own on the test server."""
    where, schema = pgserver.new_schema()
    yield where
    pgserver.drop_schema(schema)


@pytest.fixture(scope="module")
def server() -> Iterator[pgserver.Cluster]:
    """A server of this module's own, which its tests stop and start (and leave running)."""
    pgserver.base_dsn()  # skips, or fails when PostgreSQL is required, without one
    if pgserver._bindir() is None:
        reason = "stopping a server needs the PostgreSQL binaries (initdb, pg_ctl)"
        if os.environ.get(pgserver.REQUIRE_ENV) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = pgserver.start_cluster()
    yield cluster
    with suppress(RuntimeError):  # a server left stopped: its directory goes all the same
        cluster.stop()


@dataclass
class Outages:
    """A schema of its own on the module's server, and the server to stop."""

    dsn: str
    server: pgserver.Cluster

    def halt(self) -> None:
        self.server.halt()

    def resume(self) -> None:
        self.server.resume()


@pytest.fixture
def cluster(server: pgserver.Cluster) -> Iterator[Outages]:
    """The module's server, running, with a fresh schema; running again afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    yield Outages(pgserver.with_schema(server.dsn, name), server)
    with suppress(RuntimeError):  # already running
        server.resume()


def _account(account_id: str = "a1") -> ts.Account:
    return ts.Account(id=account_id, name="Acme", created_at=NOW)


def _with_options(dsn: str, options: str) -> str:
    current = conninfo_to_dict(dsn).get("options") or ""
    return make_conninfo(dsn, options=f"{current} {options}".strip())


# -- durability ---------------------------------------------------------------------------


def test_write_transactions_commit_synchronously_whatever_the_server_default(dsn: str) -> None:
    store = PostgresStore(_with_options(dsn, "-c synchronous_commit=off"))
    with store.transaction() as tx:
        setting = tx._conn.execute("SHOW synchronous_commit").fetchone()
    assert setting == ("on",)
    with store._connection() as conn:  # only for the transaction: the session keeps its own
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
        conn.rollback()
    store.close()


# -- the schema changed under a running process --------------------------------------------


def test_a_transaction_after_a_newer_twostep_migrated_is_refused_and_writes_nothing(
    dsn: str,
) -> None:
    store = PostgresStore(dsn)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            "INSERT INTO twostep_schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,)
        )
    with pytest.raises(ts.StoreError, match="restart") as caught, store.transaction() as tx:
        tx.put_account(_account())
    assert caught.value.reason == "schema_changed"
    with pytest.raises(ts.StoreError) as caught, store.transaction(write=False) as tx:
        tx.get_account("a1")
    assert caught.value.reason == "schema_changed"
    with psycopg.connect(dsn) as admin:
        assert admin.execute("SELECT count(*) FROM accounts").fetchone() == (0,)
    store.close()


# -- outages --------------------------------------------------------------------------------


def _refused_in_time(store: PostgresStore, timeout: float, *, write: bool) -> None:
    start = time.monotonic()
    with pytest.raises(ts.StoreError) as caught, store.transaction(write=write) as tx:
        tx.get_account("a1")
    elapsed = time.monotonic() - start
    assert caught.value.reason == "unavailable", caught.value
    assert elapsed < timeout + MARGIN, elapsed


def test_an_outage_fails_requests_within_the_timeout_and_the_next_one_after_it_works(
    cluster: Outages,
) -> None:
    store = PostgresStore(cluster.dsn, min_size=2, max_size=4, timeout=1.0)
    with store.transaction() as tx:
        tx.put_account(_account())
    cluster.halt()
    _refused_in_time(store, 1.0, write=False)  # the pooled connections are dead
    _refused_in_time(store, 1.0, write=True)  # and no new one can be made
    cluster.resume()
    start = time.monotonic()
    with store.transaction(write=False) as tx:
        assert tx.get_account("a1") is not None
    assert time.monotonic() - start < 0.5
    store.close()


def test_a_restart_between_requests_costs_the_next_request_nothing(
    cluster: Outages,
) -> None:
    store = PostgresStore(cluster.dsn, min_size=3, max_size=3, timeout=5.0)
    with store.transaction() as tx:
        tx.put_account(_account())
    cluster.halt()
    cluster.resume()  # every pooled connection is now dead
    start = time.monotonic()
    with store.transaction(write=False) as tx:
        assert tx.get_account("a1") is not None
    assert time.monotonic() - start < 0.5  # not a second per dead connection
    store.close()


def test_opening_a_store_during_an_outage_fails_within_the_timeout(
    cluster: Outages,
) -> None:
    cluster.halt()
    start = time.monotonic()
    with pytest.raises(ts.StoreError) as caught:
        PostgresStore(cluster.dsn, timeout=1.0)
    assert caught.value.reason == "unavailable"
    assert time.monotonic() - start < 1.0 + MARGIN
