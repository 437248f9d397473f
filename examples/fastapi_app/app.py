"""A JSON API on FastAPI with every flow of twostep's rules; OpenAPI docs at /docs.

Run it from the repository root:
``uvicorn --factory examples.fastapi_app.app:create_app``. The routes come from
``twostep.integrations.fastapi``; this file makes the service and adds one route of
its own, to show the dependencies a host uses.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

import twostep as ts
from twostep import cli
from twostep.integrations.fastapi import CurrentSession, Service, install

from . import seed

HERE = Path(__file__).resolve().parent
ISSUER = "twostep FastAPI example"


def database_path() -> Path:
    """``TWOSTEP_DATABASE`` (a file path, as for the ``twostep`` command), else a file here."""
    return Path(os.environ.get("TWOSTEP_DATABASE") or HERE / "twostep-example.db")


def first_run(database: Path) -> bool:
    """Whether nothing is there yet: no keys set, no database, no key file beside it."""
    keys_set = os.environ.get("TWOSTEP_KEYS") or os.environ.get("TWOSTEP_KEY_FILE")
    return not keys_set and not database.exists() and not Path(f"{database}.key").exists()


def make_service() -> ts.TwoStep:
    """The ``TwoStep`` of the example, on SQLite.

    The database is :func:`database_path`; its keys come from ``TWOSTEP_KEYS`` or
    ``TWOSTEP_KEY_FILE``, else from ``<database>.key``, the key file ``twostep init``
    writes beside it (``TwoStep`` finds it there). On a first run the app runs
    ``twostep init`` itself; a database whose key file is missing is refused.
    """
    database = database_path()
    if first_run(database):
        cli.main(["init", "--database", str(database)])
    store = ts.SQLiteStore(database)
    service = ts.TwoStep(store, issuer=ISSUER)
    if not seed.is_seeded(store):
        seed.seed(service)
    print(seed.describe(), flush=True)
    return service


def create_app(service: ts.TwoStep | None = None) -> FastAPI:
    """The app; tests pass their own ``service`` (a manual clock, cheap settings)."""
    app = FastAPI(
        title="twostep FastAPI example",
        description="Password + TOTP two-step login. Authenticate with "
        "`Authorization: Bearer <token>`, the token from POST /login.",
    )
    install(app, service if service is not None else make_service())

    @app.get("/hello", tags=["example"])
    async def hello(session: CurrentSession, twostep: Service) -> dict[str, object]:
        """A route of the host's own: who is calling, and whether their 2FA is on."""
        status = await twostep.two_factor_status(session)
        return {"email": session.email, "two_factor": status.enabled}

    return app
