"""Store adapters: in-memory (tests), SQLite (the embedded default), PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Read by mypy, never run: every adapter satisfies the store port, and so does the
    # transaction it yields. An adapter method whose signature drifts from ``Store`` or
    # ``Transaction`` fails the type check here, even where no code passes that adapter
    # as a ``Store`` (PostgreSQL is not imported at run time unless it is used).
    from .._store import Store, Transaction
    from . import memory, postgres, sqlite

    def _port(store: Store, transaction: Transaction) -> None: ...

    def _adapters_satisfy_the_port(
        in_memory: memory.InMemoryStore,
        in_memory_tx: memory._Tx,
        on_sqlite: sqlite.SQLiteStore,
        on_sqlite_tx: sqlite._Tx,
        on_postgres: postgres.PostgresStore,
        on_postgres_tx: postgres._Tx,
    ) -> None:
        _port(in_memory, in_memory_tx)
        _port(on_sqlite, on_sqlite_tx)
        _port(on_postgres, on_postgres_tx)
