"""twostep in a Flask application: ``pip install 'twostep[flask]'``.

::

    app = Flask(__name__)
    app.secret_key = os.environ["FLASK_SECRET_KEY"]
    TwoStepFlask(app, ts.TwoStep(ts.SQLiteStore("twostep.db"), issuer="My app"))

gives the app the login pages (password, code, enrolment inside the login), the
security page (turn 2FA on with a QR code, backup codes, turn off, move to a new
phone, change the password) and Administration (require 2FA, users, resets, the
activity), as the ``twostep`` blueprint. Every request's session cookie is checked
with ``TwoStep.check_session`` (R21, R41); :func:`login_required` guards the host's
own views and :func:`current_user` is the logged-in user. The pages are templates
under ``twostep/`` (``twostep/base.html`` is their layout) that the host overrides
in its own templates folder; what they say is translated (:data:`LANGUAGES`).
"""

from __future__ import annotations

from .._i18n import LANGUAGES
from ._core import (
    CHALLENGE_KEY,
    CSRF_FIELD,
    CSRF_HEADER,
    CSRF_KEY,
    TOKEN_KEY,
    SendResetLink,
    TwoStepFlask,
    configure_session_cookie,
    csrf_exempt,
    csrf_token,
    current_user,
    get_service,
    language,
    login_required,
    may,
    message,
    user,
)

__all__ = [
    "CHALLENGE_KEY",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "CSRF_KEY",
    "LANGUAGES",
    "TOKEN_KEY",
    "SendResetLink",
    "TwoStepFlask",
    "configure_session_cookie",
    "csrf_exempt",
    "csrf_token",
    "current_user",
    "get_service",
    "language",
    "login_required",
    "may",
    "message",
    "user",
]
