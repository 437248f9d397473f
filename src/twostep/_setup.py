"""Installation set-up for ``twostep``: the database, the keys, ``init`` and ``migrate``."""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import stat
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TextIO

from ._crypto import KEY_FILE_ENV, KEYS_ENV, AESGCMKeyring
from ._errors import ConfigurationError, StoreError
from ._store import Store
from .stores.sqlite import SQLiteStore

DATABASE_ENV = "TWOSTEP_DATABASE"
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


class UsageError(Exception):
    """The command line is wrong: exit status 2."""


# -- where things are ----------------------------------------------------------------


def is_postgres(database: str) -> bool:
    return database.startswith(_POSTGRES_PREFIXES)


def database_from(args: argparse.Namespace) -> str:
    """``--database`` or ``TWOSTEP_DATABASE``: a SQLite file path, or a ``postgresql://`` DSN."""
    database: str | None = args.database
    if not database:
        msg = f"no database: pass --database or set {DATABASE_ENV}"
        raise UsageError(msg)
    return database


def default_key_file(database: str) -> Path:
    """Where ``twostep init`` puts the key of a SQLite database: ``<database>.key``."""
    return Path(f"{database}.key")  # as AESGCMKeyring.from_environment(database=) finds it


def _read_key_file(path: Path, err: TextIO, source: str) -> AESGCMKeyring:
    """The keys in ``path``; a bad file is a ``ConfigurationError`` naming ``source``."""
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0  # reading it says what is wrong
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"twostep: warning: {path} is readable by others; chmod 600 it", file=err)
    return AESGCMKeyring.from_file(path, source=source)


def load_keyring(database: str, err: TextIO) -> AESGCMKeyring:
    """``TWOSTEP_KEYS``, else ``TWOSTEP_KEY_FILE``, else (SQLite) ``<database>.key``.

    A malformed, unreadable or non-UTF-8 source raises ``ConfigurationError`` naming it.
    """
    if os.environ.get(KEYS_ENV):
        return AESGCMKeyring.from_string(os.environ[KEYS_ENV], source=KEYS_ENV)
    if os.environ.get(KEY_FILE_ENV):
        path = Path(os.environ[KEY_FILE_ENV])
        return _read_key_file(path, err, f"{KEY_FILE_ENV} ({path})")
    if not is_postgres(database):
        path = default_key_file(database)
        if path.exists():
            return _read_key_file(path, err, f"the key file {path}")
        msg = (
            f"no encryption key: set {KEYS_ENV} or {KEY_FILE_ENV}, "
            f"or keep the key file made by `twostep init` at {path}"
        )
        raise ConfigurationError(msg)
    msg = f"no encryption key: set {KEYS_ENV} or {KEY_FILE_ENV}"
    raise ConfigurationError(msg)


def _postgres(dsn: str, *, migrate: bool) -> Store:
    # Imported by name, when asked for: psycopg is an optional extra.
    try:
        module = importlib.import_module("twostep.stores.postgres")
        factory: Callable[..., Store] = module.PostgresStore
        return factory(dsn, migrate=migrate)
    except ImportError as error:
        msg = f"PostgreSQL needs the extra: pip install 'twostep[postgres]' ({error})"
        raise ConfigurationError(msg) from None


def open_store(database: str, *, migrate: bool = False, create: bool = False) -> Store:
    """The store behind ``--database``; a SQLite file must exist unless ``create``."""
    if is_postgres(database):
        return _postgres(database, migrate=migrate or create)
    if not create and not Path(database).exists():
        msg = f"no database at {database}: create it with `twostep init`"
        raise StoreError(msg)
    return SQLiteStore(database, migrate=migrate or create)


def _holds_sealed_secrets(store: Store, *, batch: int = 500) -> bool:
    """Whether any user has a TOTP secret, confirmed or pending; stops at the first."""
    after = ""
    with store.transaction(write=False) as tx:
        while True:
            page = tx.users_page(after, batch)
            for user in page:
                state = user.two_factor
                if state.secret is not None or state.pending_secret is not None:
                    return True
            if len(page) < batch:
                return False
            after = page[-1].id


def _schema_version(store: Store) -> int | None:
    version: Callable[[], int] | None = getattr(store, "schema_version", None)
    return version() if version is not None else None


# -- init and migrate ----------------------------------------------------------------


def _new_key_path(args: argparse.Namespace, database: str) -> Path | None:
    """Where ``init`` writes the key; ``None`` when the keys live in ``TWOSTEP_KEYS``."""
    if args.key_file:
        return Path(args.key_file)
    if os.environ.get(KEY_FILE_ENV):
        return Path(os.environ[KEY_FILE_ENV])
    if os.environ.get(KEYS_ENV):
        return None  # the keys are managed in the environment
    if is_postgres(database):
        msg = f"say where the key file goes: --key-file or {KEY_FILE_ENV}"
        raise UsageError(msg)
    return default_key_file(database)


def _write_key_file(path: Path) -> None:
    """A new key line, in a file made with mode 0600; fails if the file exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        if hasattr(os, "fchmod"):  # the umask cannot have widened it, but be explicit
            os.fchmod(f.fileno(), 0o600)
        f.write(AESGCMKeyring.new_key_line() + "\n")


def cmd_init(args: argparse.Namespace) -> int:
    """Create (or bring forward) the schema, then write a new key file.

    Refuses, changing nothing, when the key file exists, and when the database already
    holds sealed TOTP secrets (confirmed or pending): a new key could not open them.
    With ``TWOSTEP_KEYS`` set (and no key file asked for), no key file is written.
    """
    database = database_from(args)
    key_path = _new_key_path(args, database)
    if key_path is not None and key_path.exists():
        msg = f"{key_path} exists; refusing to overwrite it (without it no stored secret opens)"
        raise ConfigurationError(msg)

    store = open_store(database, create=True)
    try:
        version = _schema_version(store)
        # A new key opens nothing sealed under the old one: refuse before writing it.
        # Read only: a database that already has the current schema is left untouched.
        sealed = key_path is not None and _holds_sealed_secrets(store)
    finally:
        store.close()
    if sealed:
        msg = (
            "the database already holds sealed TOTP secrets, which a new key cannot open: "
            f"refusing to write one to {key_path}; the original key is needed "
            f"(restore its key file, or set {KEYS_ENV} or {KEY_FILE_ENV})"
        )
        raise ConfigurationError(msg)
    shown = "PostgreSQL database" if is_postgres(database) else f"database {database}"
    print(f"{shown} ready (schema version {version})", file=args.out)

    if key_path is None:
        print(f"keys come from {KEYS_ENV}; no key file written", file=args.out)
        return 0
    _write_key_file(key_path)
    print(
        f"key file {key_path} written (mode 0600): back it up and keep it secret; "
        "without it no enrolled user can log in",
        file=args.out,
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the schema migrations the database lacks; say from which version to which."""
    database = database_from(args)
    before: int | None = None
    if not is_postgres(database) and Path(database).exists():
        with closing(sqlite3.connect(database)) as db:
            before = int(db.execute("PRAGMA user_version").fetchone()[0])
    store = open_store(database, migrate=True)
    try:
        after = _schema_version(store)
    finally:
        store.close()
    if before is not None and before == after:
        print(f"schema already at version {after}", file=args.out)
    elif before is not None:
        print(f"schema migrated from version {before} to {after}", file=args.out)
    else:
        print(f"schema at version {after}", file=args.out)
    return 0
