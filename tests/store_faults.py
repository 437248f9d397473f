"""Faults of the database that the tests cause on purpose: a full database, a full disk.

- :func:`fill_sqlite` makes a SQLite database full with SQLite's own size limit
  (``PRAGMA max_page_count`` on the store's connection): it runs anywhere.
- :func:`files_cannot_grow` makes every file of this process unable to grow
  (``RLIMIT_FSIZE``), as a full disk does: SQLite's commits, which append to the
  write-ahead log, then fail. POSIX only; the tests that use it skip elsewhere.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime

import pytest

import twostep as ts
from twostep._domain import SessionRecord, ThrottleKey, ThrottleScope, ThrottleState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
#: SQLite's largest page count: what lifting the limit sets.
NO_LIMIT = 2**31 - 2


def fill_sqlite(store: ts.SQLiteStore) -> None:
    """Make the database full, as far as the flows of a test world can tell.

    SQLite's size limit is set at the database's current size on the store's
    connection (this thread's), the free pages are used up by a table of filler,
    and the pages every flow writes first, throttle counters (the first write of a
    password step and of a slow code check) and sessions (a code login), get rows
    smaller than any a flow writes until none fits: a flow then needs a new page.
    """
    db = store._connection()
    db.execute("CREATE TABLE filler (x BLOB)")
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    # The limit cannot go below the current size: asking for 1 sets it there.
    assert db.execute("PRAGMA max_page_count = 1").fetchone()[0] == pages
    for size in (65536, 4096, 512, 64, 8, 1):
        with suppress(sqlite3.OperationalError):  # the raw connection: sqlite3's own error
            while True:
                db.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))

    def fill_with(write: Callable[[ts.Transaction, int], None]) -> None:
        refused: list[ts.StoreError] = []
        for i in itertools.count():
            try:
                with store.transaction() as tx:
                    write(tx, i)
            except ts.StoreError as error:
                refused.append(error)
                break
        assert [e.reason for e in refused] == ["full"], refused

    fill_with(
        lambda tx, i: tx.put_throttle(
            ThrottleState(ThrottleKey(ThrottleScope.CLIENT, str(i)), 1, None, T0)
        )
    )
    fill_with(lambda tx, i: tx.put_session(SessionRecord(str(i), "u", "a", T0, T0, 0, 0)))


def make_room(store: ts.SQLiteStore) -> None:
    """Lift the limit that :func:`fill_sqlite` set: space returns."""
    store._connection().execute(f"PRAGMA max_page_count = {NO_LIMIT}")


@contextmanager
def files_cannot_grow(size: int = 0) -> Iterator[None]:
    """No file of this process grows past ``size`` bytes while the block runs.

    A write past that size fails with ``EFBIG`` (``SIGXFSZ`` is ignored meanwhile), as a
    write to a full disk fails: SQLite reports it as a disk I/O error. Nothing else of
    the test may write a file in the block.
    """
    resource = pytest.importorskip("resource")
    if not hasattr(signal, "SIGXFSZ") or os.name != "posix":
        pytest.skip("needs RLIMIT_FSIZE and SIGXFSZ (POSIX)")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
