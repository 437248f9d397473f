"""A server-rendered Flask app with every screen of twostep's rules.

Run it from the repository root: ``flask --app examples/flask_app/app.py run``
(over plain http, with ``TWOSTEP_INSECURE_COOKIES=1``: see :func:`create_app`).
The pages come from ``twostep.integrations.flask``: login (R1-R3), set-up with a QR
code and the key as text (R10), backup codes shown once (R5, R10), the Security page
(R30-R32, R40, R85), a forgotten password reset through a link printed to the console
(R86, R87) and Administration (R20-R22, R41, R50, R60, R80-R83), with a grace period and
a requirement of admins only (R95, R96); remembered devices (R98) and security keys, or
passkeys (R100-R109), at login, on the Security page and for step-up (R99).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, redirect, url_for
from flask.typing import ResponseReturnValue

import twostep as ts
from twostep import cli
from twostep.integrations.flask import TwoStepFlask

from . import seed

HERE = Path(__file__).resolve().parent
ISSUER = "twostep Flask example"
#: What the console shows instead of an email; tests read the link after it.
RESET_LINK_PREFIX = "Password reset link for "
SAME_ANSWER = "If the address has an account, a link to reset its password is on its way."


def print_reset_link(email: str, link: str) -> None:
    """Stands in for an email: a real app sends ``link`` to ``email`` (R86)."""
    print(f"{RESET_LINK_PREFIX}{email}: {link}", flush=True)


def passkey_settings(port: int = 5000) -> ts.PasskeySettings:
    """Security keys for the pages at ``TWOSTEP_ORIGIN`` (default ``http://localhost:<port>``).

    The relying party's id is the origin's host (``localhost`` by default). Browsers
    allow WebAuthn on https pages, and on http ones only at ``localhost``: open the
    example at http://localhost:5000, not at 127.0.0.1.
    """
    origin = os.environ.get("TWOSTEP_ORIGIN") or f"http://localhost:{port}"
    host = urlsplit(origin).hostname or "localhost"
    return ts.PasskeySettings(rp_id=host, origin=origin.rstrip("/"), rp_name=ISSUER)


def database_path() -> Path:
    """``TWOSTEP_DATABASE`` (a file path, as for the ``twostep`` command), else a file here."""
    return Path(os.environ.get("TWOSTEP_DATABASE") or HERE / "twostep-example.db")


def first_run(database: Path) -> bool:
    """Whether nothing is there yet: no keys set, no database, no key file beside it."""
    keys_set = os.environ.get("TWOSTEP_KEYS") or os.environ.get("TWOSTEP_KEY_FILE")
    return not keys_set and not database.exists() and not Path(f"{database}.key").exists()


def make_service() -> ts.TwoStep:
    """The ``TwoStep`` of the example, on SQLite, with security keys (:func:`passkey_settings`).

    The database is :func:`database_path`; its keys come from ``TWOSTEP_KEYS`` or
    ``TWOSTEP_KEY_FILE``, else from ``<database>.key``, the key file ``twostep init``
    writes beside it (``TwoStep`` finds it there). On a first run the app runs
    ``twostep init`` itself; a database whose key file is missing is refused.
    """
    database = database_path()
    if first_run(database):
        cli.main(["init", "--database", str(database)])
    store = ts.SQLiteStore(database)
    service = ts.TwoStep(store, issuer=ISSUER, passkeys=passkey_settings())
    if not seed.is_seeded(store):
        seed.seed(service)
    print(seed.describe(), flush=True)
    return service


def insecure_cookies_asked() -> bool:
    """Whether ``TWOSTEP_INSECURE_COOKIES`` asks for cookies that plain http can carry."""
    return os.environ.get("TWOSTEP_INSECURE_COOKIES", "").strip().lower() in {"1", "true", "yes"}


def create_app(
    service: ts.TwoStep | None = None,
    *,
    secret_key: str | None = None,
    secure_cookies: bool | None = None,
    language: str | None = None,
) -> Flask:
    """The app; tests pass their own ``service`` (a manual clock, cheap settings).

    The session cookie is ``Secure`` (sent over https only) unless ``secure_cookies``
    is false, or is left out while ``TWOSTEP_INSECURE_COOKIES=1``: for plain http on
    one's own machine, where a browser would not send a ``Secure`` cookie back.
    ``language`` fixes the pages' language; by default the browser's is used.
    """
    app = Flask(__name__)
    app.secret_key = secret_key or os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32)
    if secure_cookies is None:
        secure_cookies = not insecure_cookies_asked()
    if not secure_cookies:
        app.logger.warning("The session cookie is not Secure: for plain http in development only.")
    TwoStepFlask(
        app,
        service if service is not None else make_service(),
        secure_cookies=secure_cookies,
        language=language,
        send_reset_link=print_reset_link,
    )

    @app.get("/")
    def index() -> ResponseReturnValue:
        return redirect(url_for("twostep.security"))

    return app
