"""Shared by the CLI tests: run ``twostep`` in-process, create an owner, name a PostgreSQL DSN."""

from __future__ import annotations

import io
from pathlib import Path

from twostep.cli import main

from .conftest import PASSWORD

ENV_VARS = (
    "TWOSTEP_DATABASE",
    "TWOSTEP_KEYS",
    "TWOSTEP_KEY_FILE",
    "TWOSTEP_PASSWORD",
    "TWOSTEP_ISSUER",
)


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err, stdin=io.StringIO(stdin))
    return status, out.getvalue(), err.getvalue()


def create_owner(db: Path) -> tuple[str, str]:
    status, out, err = run("--database", str(db), "create-account", "Acme")
    assert status == 0, err
    account_id = out.strip()
    status, out, err = run(
        "--database",
        str(db),
        "create-user",
        account_id,
        "ada@acme.test",
        "--role",
        "owner",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert status == 0, err
    return account_id, out.strip()


def as_url(dsn: str) -> str:
    """A libpq key=value DSN written as the ``postgresql://`` URL the CLI takes."""
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    url = f"postgresql://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}"
    return url + (f"?options={quote(str(p['options']))}" if p.get("options") else "")
