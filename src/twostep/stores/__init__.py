"""Store adapters: in-memory (tests), SQLite (the embedded default), PostgreSQL."""
