"""twostep in a FastAPI application: ``pip install 'twostep[fastapi]'``.

::

    app = FastAPI()
    install(app, ts.TwoStep(ts.SQLiteStore("twostep.db"), issuer="My app"))

gives the app a JSON API of twostep's flows: logging in (password, code, enrolment
inside the login), one's own 2FA (enrol with a QR code, backup codes, turn off, move
to a new phone) and administration (require 2FA, the overview, resets, the audit
trail). The routes are ``async`` and await an :class:`~twostep.AsyncTwoStep`, so no
Argon2 hash or store call blocks the event loop. The client authenticates with
``Authorization: Bearer <token>``, the token from ``POST /login``; no cookie is set
or read (R112). Every twostep error becomes a status and a JSON body whose
``message`` is in the language the request asks for (:data:`STATUS`, R61).
:data:`CurrentSession` and :data:`Service` are dependencies for the host's routes.
"""

from __future__ import annotations

from .._i18n import LANGUAGES
from ._app import (
    CurrentSession,
    NoStore,
    Service,
    client_of,
    current_session,
    error_body,
    error_response,
    get_service,
    install,
    language_of,
    validation_response,
)
from ._models import ERRORS, STATUS, ErrorOut
from ._routes import router

__all__ = [
    "ERRORS",
    "LANGUAGES",
    "STATUS",
    "CurrentSession",
    "ErrorOut",
    "NoStore",
    "Service",
    "client_of",
    "current_session",
    "error_body",
    "error_response",
    "get_service",
    "install",
    "language_of",
    "router",
    "validation_response",
]
