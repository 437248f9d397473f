"""``twostep``: the operator's command line, and ``twostep demo``.

Every command but ``demo`` and a bare ``rotate-key`` works on the database named by
``--database`` or ``TWOSTEP_DATABASE``: a SQLite file path, or a ``postgresql://``
DSN (with ``pip install 'twostep[postgres]'``). Keys come from ``TWOSTEP_KEYS`` or
``TWOSTEP_KEY_FILE``; for SQLite, when neither is set, from ``<database>.key``
(the file ``twostep init`` writes).

Exit status: 0 on success, 1 when ``twostep`` refused or failed (one line on
stderr says why), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
import sqlite3
import stat
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, NoReturn, TextIO

from . import __version__
from ._crypto import KEY_FILE_ENV, KEYS_ENV, AESGCMKeyring
from ._domain import Role
from ._errors import ConfigurationError, StoreError, TwoStepError
from ._service import TwoStep
from ._store import Store
from .stores.sqlite import SQLiteStore

__all__ = ["main"]

DATABASE_ENV = "TWOSTEP_DATABASE"
ISSUER_ENV = "TWOSTEP_ISSUER"
PASSWORD_ENV = "TWOSTEP_PASSWORD"  # noqa: S105 (the name of a variable, not a password)
DEFAULT_ISSUER = "twostep"
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


class UsageError(Exception):
    """The command line is wrong: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors reported on one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--password` must not mean --password-stdin
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            # Never echo stray values: one of them may be a password typed in the wrong place.
            words = message.removeprefix(prefix).split()
            message = prefix + " ".join(w if w.startswith("-") else "<value>" for w in words)
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# -- where things are ----------------------------------------------------------------


def _is_postgres(database: str) -> bool:
    return database.startswith(_POSTGRES_PREFIXES)


def _database(args: argparse.Namespace) -> str:
    database: str | None = args.database
    if not database:
        raise UsageError(f"no database: pass --database or set {DATABASE_ENV}")
    return database


def default_key_file(database: str) -> Path:
    """Where ``twostep init`` puts the key of a SQLite database: ``<database>.key``."""
    return Path(f"{database}.key")


def _read_key_file(path: Path, err: TextIO) -> AESGCMKeyring:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"twostep: warning: {path} is readable by others; chmod 600 it", file=err)
    return AESGCMKeyring.from_string(path.read_text())


def _keyring(database: str, err: TextIO) -> AESGCMKeyring:
    """``TWOSTEP_KEYS``, else ``TWOSTEP_KEY_FILE``, else (SQLite) ``<database>.key``."""
    if os.environ.get(KEYS_ENV):
        return AESGCMKeyring.from_string(os.environ[KEYS_ENV])
    if os.environ.get(KEY_FILE_ENV):
        return _read_key_file(Path(os.environ[KEY_FILE_ENV]), err)
    if not _is_postgres(database):
        path = default_key_file(database)
        if path.exists():
            return _read_key_file(path, err)
        raise ConfigurationError(
            f"no encryption key: set {KEYS_ENV} or {KEY_FILE_ENV}, "
            f"or keep the key file made by `twostep init` at {path}"
        )
    raise ConfigurationError(f"no encryption key: set {KEYS_ENV} or {KEY_FILE_ENV}")


def _postgres(dsn: str, *, migrate: bool) -> Store:
    # Imported by name, when asked for: psycopg is an optional extra.
    try:
        module = importlib.import_module("twostep.stores.postgres")
        factory: Callable[..., Store] = module.PostgresStore
        return factory(dsn, migrate=migrate)
    except ImportError as error:
        raise ConfigurationError(
            f"PostgreSQL needs the extra: pip install 'twostep[postgres]' ({error})"
        ) from None


def _open_store(database: str, *, migrate: bool = False, create: bool = False) -> Store:
    """The store behind ``--database``; a SQLite file must exist unless ``create``."""
    if _is_postgres(database):
        return _postgres(database, migrate=migrate or create)
    if not create and not Path(database).exists():
        raise StoreError(f"no database at {database}: create it with `twostep init`")
    return SQLiteStore(database, migrate=migrate or create)


def _service(
    args: argparse.Namespace, store: Store, keyring: AESGCMKeyring | None = None
) -> TwoStep:
    if keyring is None:
        keyring = _keyring(args.database, args.err)
    return TwoStep(store, issuer=args.issuer, cipher=keyring)


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


# -- commands ------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo  # imported here: only the demo needs it

    run_demo(args.out, issuer=args.issuer)
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    """Create (or bring forward) the schema, then write a new key file.

    Refuses, changing nothing, when the key file exists, and when the database already
    holds sealed TOTP secrets (confirmed or pending): a new key could not open them.
    With ``TWOSTEP_KEYS`` set (and no key file asked for), no key file is written.
    """
    database = _database(args)
    key_path: Path | None = None
    if args.key_file:
        key_path = Path(args.key_file)
    elif os.environ.get(KEY_FILE_ENV):
        key_path = Path(os.environ[KEY_FILE_ENV])
    elif os.environ.get(KEYS_ENV):
        key_path = None  # the keys are managed in the environment
    elif _is_postgres(database):
        raise UsageError(f"say where the key file goes: --key-file or {KEY_FILE_ENV}")
    else:
        key_path = default_key_file(database)
    if key_path is not None and key_path.exists():
        raise ConfigurationError(
            f"{key_path} exists; refusing to overwrite it (without it no stored secret opens)"
        )

    store = _open_store(database, create=True)
    try:
        version = _schema_version(store)
        # A new key opens nothing sealed under the old one: refuse before writing it.
        # Read only: a database that already has the current schema is left untouched.
        sealed = key_path is not None and _holds_sealed_secrets(store)
    finally:
        store.close()
    if sealed:
        raise ConfigurationError(
            "the database already holds sealed TOTP secrets, which a new key cannot open: "
            f"refusing to write one to {key_path}; the original key is needed "
            f"(restore its key file, or set {KEYS_ENV} or {KEY_FILE_ENV})"
        )
    shown = "PostgreSQL database" if _is_postgres(database) else f"database {database}"
    print(f"{shown} ready (schema version {version})", file=args.out)

    if key_path is None:
        print(f"keys come from {KEYS_ENV}; no key file written", file=args.out)
        return 0
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        if hasattr(os, "fchmod"):  # the umask cannot have widened it, but be explicit
            os.fchmod(f.fileno(), 0o600)
        f.write(AESGCMKeyring.new_key_line() + "\n")
    print(
        f"key file {key_path} written (mode 0600): back it up and keep it secret; "
        "without it no enrolled user can log in",
        file=args.out,
    )
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    database = _database(args)
    before: int | None = None
    if not _is_postgres(database) and Path(database).exists():
        with closing(sqlite3.connect(database)) as db:
            before = int(db.execute("PRAGMA user_version").fetchone()[0])
    store = _open_store(database, migrate=True)
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


def _cmd_create_account(args: argparse.Namespace) -> int:
    store = _open_store(_database(args))
    try:
        account = _service(args, store).create_account(args.name)
    finally:
        store.close()
    print(account.id, file=args.out)
    return 0


def _read_password(args: argparse.Namespace) -> str:
    """From stdin (``--password-stdin``), ``TWOSTEP_PASSWORD``, or typed twice; never argv."""
    stdin: TextIO = args.stdin
    if args.password_stdin:
        password: str = stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: no password on standard input")
        return password
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not stdin.isatty():
        raise UsageError(f"no password: use --password-stdin or set {PASSWORD_ENV}")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        raise UsageError("the passwords differ")
    return password


def _cmd_create_user(args: argparse.Namespace) -> int:
    database = _database(args)
    password = _read_password(args)
    store = _open_store(database)
    try:
        user = _service(args, store).create_user(args.account_id, args.email, password, args.role)
    finally:
        store.close()
    print(user.id, file=args.out)
    return 0


def _cmd_reset_2fa(args: argparse.Namespace) -> int:
    store = _open_store(_database(args))
    try:
        user = _service(args, store).operator_reset_two_factor(args.email)
    finally:
        store.close()
    print(
        f"2FA reset for {user.email} ({user.id}): secret and backup codes removed, "
        "sessions ended; recorded in the audit trail",
        file=args.out,
    )
    return 0


def _cmd_rotate_key(args: argparse.Namespace) -> int:
    if not args.reseal:
        print(AESGCMKeyring.new_key_line(), file=args.out)
        print(
            f"put this key first in {KEYS_ENV} (or the key file), keep the old ones after it, "
            "restart the application, then run `twostep rotate-key --reseal`",
            file=args.err,
        )
        return 0
    database = _database(args)
    keyring = _keyring(database, args.err)
    store = _open_store(database)
    try:
        count = _service(args, store, keyring).reseal_secrets()
    finally:
        store.close()
    print(f"{count} secret(s) resealed under key {keyring.current_key_id}", file=args.out)
    return 0


def _cmd_purge(args: argparse.Namespace) -> int:
    store = _open_store(_database(args))
    try:
        count = _service(args, store).purge_expired()
    finally:
        store.close()
    print(
        f"{count} expired login challenge(s), session(s), pending enrolment(s) "
        "and forgotten throttle counter(s) removed",
        file=args.out,
    )
    return 0


# -- the parser ----------------------------------------------------------------------


def _parser() -> _Parser:
    def add_globals(p: argparse.ArgumentParser, *, defaults: bool) -> None:
        p.add_argument(
            "--database",
            metavar="PATH_OR_DSN",
            default=os.environ.get(DATABASE_ENV) if defaults else argparse.SUPPRESS,
            help=f"SQLite file or postgresql:// DSN (env {DATABASE_ENV})",
        )
        p.add_argument(
            "--issuer",
            default=os.environ.get(ISSUER_ENV, DEFAULT_ISSUER) if defaults else argparse.SUPPRESS,
            help=f"the name authenticator apps show (env {ISSUER_ENV}, default {DEFAULT_ISSUER!r})",
        )

    parser = _Parser(
        prog="twostep",
        description="Password + TOTP two-step login: the demo and the operator commands.",
        epilog=(
            f"Keys: {KEYS_ENV}, else {KEY_FILE_ENV}, else (SQLite) the file <database>.key "
            "written by `twostep init`."
        ),
    )
    add_globals(parser, defaults=True)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str, run: Callable[[argparse.Namespace], int]) -> _Parser:
        sub: _Parser = commands.add_parser(name, help=help_text, description=help_text)
        add_globals(sub, defaults=False)
        sub.set_defaults(run=run)
        return sub

    command("demo", "play the whole story of the rules on a temporary database", _cmd_demo)
    init = command(
        "init",
        "create the database schema and a new key file (mode 0600); refuses when the key "
        "file exists, or when the database already holds sealed TOTP secrets",
        _cmd_init,
    )
    init.add_argument(
        "--key-file",
        metavar="PATH",
        help=f"where to write the key (default: {KEY_FILE_ENV}, else <database>.key)",
    )
    command("migrate", "apply the schema migrations the database lacks", _cmd_migrate)
    account = command("create-account", "create an account; prints its id", _cmd_create_account)
    account.add_argument("name")
    user = command(
        "create-user",
        f"create a user; the password is typed, or read from {PASSWORD_ENV} or stdin",
        _cmd_create_user,
    )
    user.add_argument("account_id", metavar="ACCOUNT_ID")
    user.add_argument("email", metavar="EMAIL")
    user.add_argument("--role", choices=[r.value for r in Role], default=Role.MEMBER.value)
    user.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    reset = command(
        "reset-2fa",
        "R42: reset a locked-out user's 2FA out of band (e.g. the only owner)",
        _cmd_reset_2fa,
    )
    reset.add_argument("email", metavar="EMAIL")
    rotate = command(
        "rotate-key",
        "print a new key line; with --reseal, re-encrypt secrets under the current key",
        _cmd_rotate_key,
    )
    rotate.add_argument(
        "--reseal",
        action="store_true",
        help="re-encrypt every TOTP secret under the current (first) key; prints the count",
    )
    command(
        "purge",
        "remove expired challenges, sessions, enrolments and forgotten throttle counters",
        _cmd_purge,
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the ``twostep`` command line; returns the exit status."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            raise UsageError("a command is needed (see `twostep --help`)")
        args.out, args.err = out, err
        args.stdin = stdin if stdin is not None else sys.stdin
        status: int = args.run(args)
    except UsageError as error:
        print(f"twostep: error: {error}", file=err)
        return 2
    except TwoStepError as error:
        print(f"twostep: {_one_line(str(error))}", file=err)
        return 1
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        print(f"twostep: {error.strerror or error}{where}", file=err)
        return 1
    except KeyboardInterrupt:
        print("twostep: interrupted", file=err)
        return 1
    return status


def _one_line(text: str) -> str:
    return " ".join(text.split())
