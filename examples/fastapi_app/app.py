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
from twostep.integrations.fastapi import CurrentSession, Service, install

from . import seed

HERE = Path(__file__).resolve().parent
ISSUER = "twostep FastAPI example"


def make_service() -> ts.TwoStep:
    """The ``TwoStep`` of the example, on SQLite.

    The database is ``TWOSTEP_DATABASE`` (a file path, as for the ``twostep`` command;
    default: a file beside this one); keys come from ``TWOSTEP_KEYS`` /
    ``TWOSTEP_KEY_FILE``, else from a key file made on first run.
    """
    store = ts.SQLiteStore(os.environ.get("TWOSTEP_DATABASE") or HERE / "twostep-example.db")
    cipher = None  # TwoStep reads TWOSTEP_KEYS or TWOSTEP_KEY_FILE itself
    if not os.environ.get("TWOSTEP_KEYS") and not os.environ.get("TWOSTEP_KEY_FILE"):
        key_file = HERE / "twostep.key"
        if not key_file.exists():
            key_file.touch(mode=0o600)
            key_file.write_text(ts.AESGCMKeyring.new_key_line() + "\n")
        cipher = ts.AESGCMKeyring.from_string(key_file.read_text())
    service = ts.TwoStep(store, issuer=ISSUER, cipher=cipher)
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
