"""The ``twostep`` command line: the parser, ``main``, and the commands that call ``TwoStep``."""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from . import __version__
from ._crypto import KEY_FILE_ENV, KEYS_ENV, AESGCMKeyring
from ._domain import Role
from ._errors import TwoStepError
from ._service import TwoStep
from ._setup import (
    DATABASE_ENV,
    UsageError,
    cmd_init,
    cmd_migrate,
    database_from,
    load_keyring,
    open_store,
)
from ._store import Store
from .stores.sqlite import store_error

if TYPE_CHECKING:
    from ._unit_of_work import Context

__all__ = ["main"]

ISSUER_ENV = "TWOSTEP_ISSUER"
PASSWORD_ENV = "TWOSTEP_PASSWORD"  # noqa: S105 (the name of a variable, not a password)
DEFAULT_ISSUER = "twostep"
#: ``rotate-key --reseal`` prints its progress every so many batches (of 200 users).
RESEAL_REPORT_EVERY = 10
#: ``import-users`` prints its progress every so many lines.
IMPORT_REPORT_EVERY = 1000


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors reported on one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 (passed on to argparse)
        kwargs.setdefault("allow_abbrev", False)  # `--password` must not mean --password-stdin
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            # Never echo stray values: one of them may be a password typed in the wrong place.
            words = message.removeprefix(prefix).split()
            message = prefix + " ".join(w if w.startswith("-") else "<value>" for w in words)
        msg = f"{message} (see `{self.prog} --help`)"
        raise UsageError(msg)


# -- commands ------------------------------------------------------------------------


def _service(
    args: argparse.Namespace,
    store: Store,
    keyring: AESGCMKeyring | None = None,
    *,
    check_keys: bool = False,
) -> TwoStep:
    """The service; ``check_keys`` for the commands that open stored secrets.

    The others do not check: the operator's reset must work when a key is lost.
    """
    if keyring is None:
        keyring = load_keyring(args.database, args.err)
    return TwoStep(store, issuer=args.issuer, cipher=keyring, check_keys=check_keys)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo  # imported here: only the demo needs it

    run_demo(args.out, issuer=args.issuer)
    return 0


def _cmd_create_account(args: argparse.Namespace) -> int:
    store = open_store(database_from(args))
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
            msg = "--password-stdin: no password on standard input"
            raise UsageError(msg)
        return password
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not stdin.isatty():
        msg = f"no password: use --password-stdin or set {PASSWORD_ENV}"
        raise UsageError(msg)
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        msg = "the passwords differ"
        raise UsageError(msg)
    return password


def _cmd_create_user(args: argparse.Namespace) -> int:
    database = database_from(args)
    password = _read_password(args)
    store = open_store(database)
    try:
        user = _service(args, store).create_user(args.account_id, args.email, password, args.role)
    finally:
        store.close()
    print(user.id, file=args.out)
    return 0


def _cmd_reset_2fa(args: argparse.Namespace) -> int:
    store = open_store(database_from(args))
    try:
        user = _service(args, store).operator_reset_two_factor(args.email)
    finally:
        store.close()
    print(
        f"2FA reset for {user.email} ({user.id}): secret, backup codes and security keys "
        "removed, sessions ended; recorded in the audit trail",
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
    database = database_from(args)
    keyring = load_keyring(database, args.err)
    store = open_store(database)
    batches = 0

    def progress(done: int, total: int) -> None:
        nonlocal batches
        batches += 1
        if batches % RESEAL_REPORT_EVERY == 0:
            print(f"resealed {done:,} / {total:,}", file=args.err, flush=True)

    try:
        service = _service(args, store, keyring, check_keys=True)
        count = service.reseal_secrets(progress=progress)
    finally:
        store.close()
    print(f"{count} secret(s) resealed under key {keyring.current_key_id}", file=args.out)
    return 0


def _cmd_purge(args: argparse.Namespace) -> int:
    store = open_store(database_from(args))
    try:
        count = _service(args, store).purge_expired()
    finally:
        store.close()
    print(
        f"{count} expired login challenge(s), session(s), pending enrolment(s), "
        "forgotten throttle counter(s) and audit event(s) past retention removed",
        file=args.out,
    )
    return 0


# -- the users' life, by the operator (R80-R83, R90) -----------------------------------


def _operator_context(args: argparse.Namespace, store: Store) -> Context:
    """What the operator's stories of :mod:`twostep._stories.operator_users` run on."""
    return _service(args, store)._context  # noqa: SLF001 (the CLI is part of the package)


def _yes_no(value: str) -> bool:
    return value in {"on", "yes"}


def _cmd_list_users(args: argparse.Namespace) -> int:
    from ._stories import operator_users

    store = open_store(database_from(args))
    try:
        users = operator_users.list_users(
            _operator_context(args, store),
            args.account,
            role=args.role,
            two_factor=None if args.two_factor is None else _yes_no(args.two_factor),
            active=None if args.active is None else _yes_no(args.active),
        )
        rows = [
            (u.email, u.role.value, "on" if u.has_second_factor else "off", _yes(u.active))
            for u in users
        ]
    finally:
        store.close()
    head = ("EMAIL", "ROLE", "2FA", "ACTIVE")
    width = max(len(head[0]), *(len(r[0]) for r in rows)) if rows else len(head[0])
    for email, role, two_factor, active in (head, *rows):
        print(f"{email:<{width}}  {role:<7}  {two_factor:<3}  {active}", file=args.out)
    print(f"{len(rows)} user(s)", file=args.err)
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _cmd_set_role(args: argparse.Namespace) -> int:
    from ._stories import operator_users

    store = open_store(database_from(args))
    try:
        user = operator_users.set_role(_operator_context(args, store), args.email, args.role)
    finally:
        store.close()
    print(
        f"{user.email} ({user.id}) is now {user.role.value}; recorded in the audit trail",
        file=args.out,
    )
    return 0


def _cmd_set_active(args: argparse.Namespace) -> int:
    from ._stories import operator_users

    active = args.command == "reactivate"
    store = open_store(database_from(args))
    try:
        user = operator_users.set_active(_operator_context(args, store), args.email, active)
    finally:
        store.close()
    what = "reactivated" if active else "deactivated, sessions ended"
    print(f"{user.email} ({user.id}) {what}; recorded in the audit trail", file=args.out)
    return 0


def _cmd_delete_user(args: argparse.Namespace) -> int:
    from ._stories import operator_users

    database = database_from(args)
    if not args.yes:
        stdin: TextIO = args.stdin
        if not stdin.isatty():
            msg = "delete-user: not confirmed; pass --yes when standard input is not a terminal"
            raise UsageError(msg)
        print(f"Delete {args.email} and their secrets? [y/N] ", end="", file=args.err, flush=True)
        if stdin.readline().strip().lower() not in {"y", "yes"}:
            print("twostep: nothing deleted", file=args.err)
            return 1
    store = open_store(database)
    try:
        user = operator_users.delete_user(_operator_context(args, store), args.email)
    finally:
        store.close()
    print(f"{user.email} ({user.id}) deleted; recorded in the audit trail", file=args.out)
    return 0


def _import_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, record or why the line is bad), from CSV or JSON lines.

    A file whose first non-blank character is ``{`` is JSON lines; else CSV with the
    header ``email,role,hash``.
    """
    with path.open(encoding="utf-8", newline="") as f:
        first = f.read(1)
        while first.isspace():
            first = f.read(1)
        f.seek(0)
        if first == "{":
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    yield number, "not a JSON object"
                    continue
                yield number, record if isinstance(record, dict) else "not a JSON object"
            return
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "email" not in reader.fieldnames:
            yield 1, "the CSV header must be email,role,hash"
            return
        for record in reader:
            yield reader.line_num, dict(record)


def _cmd_import_users(args: argparse.Namespace) -> int:
    database = database_from(args)
    path = Path(args.file)
    store = open_store(database)
    imported = failed = seen = 0
    try:
        service = _service(args, store)
        for number, record in _import_rows(path):
            seen += 1
            problem = record if isinstance(record, str) else _import_one(service, args, record)
            if problem is None:
                imported += 1
            else:
                failed += 1
                print(f"twostep: {path}:{number}: {_one_line(problem)}", file=args.err)
            if seen % IMPORT_REPORT_EVERY == 0:
                print(f"{seen:,} line(s) read, {imported:,} imported", file=args.err, flush=True)
    finally:
        store.close()
    print(f"{imported} user(s) imported, {failed} line(s) failed", file=args.out)
    return 1 if failed else 0


def _import_one(service: TwoStep, args: argparse.Namespace, record: dict[str, Any]) -> str | None:
    """Import one record; ``None``, or why it failed (the other lines go on)."""
    email, role = record.get("email"), record.get("role") or Role.MEMBER.value
    password_hash = record.get("hash") or None
    if not isinstance(email, str) or not email:
        return "no email"
    if not isinstance(role, str) or (
        password_hash is not None and not isinstance(password_hash, str)
    ):
        return "role and hash must be text"
    try:
        service.import_user(args.account, email, role=role, password_hash=password_hash)
    except TwoStepError as error:
        return str(error)
    return None


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
        cmd_init,
    )
    init.add_argument(
        "--key-file",
        metavar="PATH",
        help=f"where to write the key (default: {KEY_FILE_ENV}, else <database>.key)",
    )
    command("migrate", "apply the schema migrations the database lacks", cmd_migrate)
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
        "remove expired challenges, sessions, enrolments, forgotten throttle counters "
        "and audit events past retention",
        _cmd_purge,
    )
    listing = command(
        "list-users",
        "R83: list users (email, role, 2FA, active), of one account or of all",
        _cmd_list_users,
    )
    listing.add_argument("--account", metavar="ID", help="only the users of this account")
    listing.add_argument("--role", choices=[r.value for r in Role], help="only this role")
    listing.add_argument(
        "--2fa", dest="two_factor", choices=["on", "off"], help="only users with 2FA on, or off"
    )
    listing.add_argument(
        "--active", choices=["yes", "no"], help="only active, or deactivated, users"
    )
    set_role = command(
        "set-role",
        "R80: change a user's role (a demotion ends their sessions); an account keeps an "
        "active owner",
        _cmd_set_role,
    )
    set_role.add_argument("email", metavar="EMAIL")
    set_role.add_argument("role", metavar="ROLE", choices=[r.value for r in Role])
    for name, text in (
        ("deactivate", "R81: deactivate a user: sessions end, login is refused, data stays"),
        ("reactivate", "R81: let a deactivated user log in again, with the 2FA they had"),
    ):
        command(name, text, _cmd_set_active).add_argument("email", metavar="EMAIL")
    delete = command(
        "delete-user",
        "R82: delete a user and their secrets (the audit trail stays); asks to confirm",
        _cmd_delete_user,
    )
    delete.add_argument("email", metavar="EMAIL")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    imports = command(
        "import-users",
        "R90: import users from a CSV file (header email,role,hash) or JSON lines "
        '({"email": ..., "role": ..., "hash": ...}); an empty hash makes a user without '
        "a twostep password; a bad line is reported and the others go on",
        _cmd_import_users,
    )
    imports.add_argument("file", metavar="FILE")
    imports.add_argument(
        "--account", metavar="ID", required=True, help="the account the users join"
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the ``twostep`` command line; returns the exit status.

    Every command but ``demo`` and a bare ``rotate-key`` works on the database named by
    ``--database`` or ``TWOSTEP_DATABASE``. Exit status: 0 on success, 1 when ``twostep``
    refused or failed (one line on stderr says why), 2 for a usage error.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        args = _parse(argv)
        args.out, args.err = out, err
        args.stdin = stdin if stdin is not None else sys.stdin
        status: int = args.run(args)
    except UsageError as error:
        print(f"twostep: error: {error}", file=err)
        return 2
    except TwoStepError as error:
        print(f"twostep: {_one_line(str(error))}", file=err)
        return 1
    except sqlite3.Error as error:  # a SQLite file read outside a store, as `migrate` does
        print(f"twostep: {_one_line(str(store_error(error)))}", file=err)
        return 1
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        print(f"twostep: {error.strerror or error}{where}", file=err)
        return 1
    except KeyboardInterrupt:
        print("twostep: interrupted", file=err)
        return 1
    return status


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    args = _parser().parse_args(argv)
    if args.command is None:
        msg = "a command is needed (see `twostep --help`)"
        raise UsageError(msg)
    return args


def _one_line(text: str) -> str:
    return " ".join(text.split())
