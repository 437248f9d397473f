"""The extension: session lookup, CSRF, cookie flags, no caching, language, helpers."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from flask import Flask, Response, abort, current_app, flash, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

import twostep as ts

from .. import _i18n
from ._setups import PendingSetups

TOKEN_KEY = "twostep_token"  # noqa: S105 (a key of the cookie, not a token)
CHALLENGE_KEY = "twostep_challenge"
CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_EXEMPT = "twostep_csrf_exempt"
#: The remembered device's cookie (R98), with the ``__Host-`` prefix when ``Secure``.
DEVICE_COOKIE = "twostep_device"

#: Delivers a password-reset link (``email``, ``link``), e.g. by email (R86).
SendResetLink = Callable[[str, str], None]

P = ParamSpec("P")
R = TypeVar("R")


class TwoStepFlask:
    """twostep in a Flask app: ``TwoStepFlask(app, service)`` and its pages are there.

    It registers the ``twostep`` blueprint (login, the security page, administration;
    under ``url_prefix``), checks the session cookie on every request (R21, R41),
    checks a CSRF token on every POST, PUT, PATCH and DELETE of the app, sets the
    session cookie's flags (R110) and marks every response ``no-store`` (R111).
    ``secure_cookies=False`` drops ``Secure`` for plain http on one's own machine.
    ``language`` fixes the language of the pages; by default each request's
    ``Accept-Language`` picks one of :data:`LANGUAGES`. ``send_reset_link`` delivers
    a password-reset link: with it, the login page offers "Forgot your password?".
    ``home_endpoint`` is where a login ends (the security page by default).

    The pages follow the service's options: a grace period (R95) shows its deadline on
    every page; the code step offers to remember the device (R98) in a long-lived
    cookie (``HttpOnly``, ``SameSite=Lax``, ``Secure`` with ``secure_cookies``); and
    with ``passkeys`` on the service (R100), security keys are offered on the security
    page, at the code step and for step-up.

    The set-up page keeps the enrolment it shows in the memory of the process, never
    in the cookie, until its first code confirms it, so that a wrong code shows the
    same QR code and key again (R11).
    """

    def __init__(
        self,
        app: Flask,
        service: ts.TwoStep,
        *,
        secure_cookies: bool = True,
        url_prefix: str | None = None,
        language: str | None = None,
        send_reset_link: SendResetLink | None = None,
        home_endpoint: str = "twostep.security",
    ) -> None:
        from ._views import blueprint

        if language is not None and language not in _i18n.LANGUAGES:
            msg = f"language must be one of {_i18n.LANGUAGES}, not {language!r}"
            raise ValueError(msg)
        self.service = service
        self.language = language
        self.send_reset_link = send_reset_link
        self.home_endpoint = home_endpoint
        self.secure_cookies = secure_cookies
        self.device_cookie = f"__Host-{DEVICE_COOKIE}" if secure_cookies else DEVICE_COOKIE
        #: Enrolments awaiting their first code, so a wrong code shows the same QR code.
        self.setups = PendingSetups(
            max(service.settings.enrollment_ttl, service.settings.challenge_ttl)
        )
        app.extensions["twostep"] = self
        configure_session_cookie(app, secure=secure_cookies)
        app.before_request(self.choose_language)
        app.before_request(self.check_csrf)
        app.before_request(self.load_user)
        app.after_request(self.no_store)
        app.context_processor(self.template_context)
        app.register_blueprint(blueprint, url_prefix=url_prefix)

    def choose_language(self) -> None:
        g.twostep_language = self.language or _i18n.negotiate(
            request.headers.get("Accept-Language")
        )

    def load_user(self) -> None:
        """R21/R41: the session token in the cookie is checked on every request."""
        g.twostep_user = None
        token = session.get(TOKEN_KEY)
        if not isinstance(token, str):
            return
        try:
            g.twostep_user = self.service.check_session(token)
        except ts.SessionInvalid as error:
            session.pop(TOKEN_KEY, None)
            g.twostep_ended = error

    def check_csrf(self) -> None:
        """R112: every request that may change something carries the session's CSRF token."""
        if request.method in SAFE_METHODS:
            return
        view = current_app.view_functions.get(request.endpoint or "")
        if getattr(view, CSRF_EXEMPT, False):
            return
        sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
        expected = session.get(CSRF_KEY)
        if not isinstance(expected, str) or not hmac.compare_digest(
            sent.encode(), expected.encode()
        ):
            abort(400, gettext("The form expired or did not come from this site: reload it."))

    @staticmethod
    def no_store(response: Response) -> Response:
        """R111: pages show secret keys and backup codes, which no cache may keep."""
        response.headers["Cache-Control"] = "no-store"
        return response

    def template_context(self) -> dict[str, Any]:
        return {
            "_": translate,
            "csrf_token": csrf_token,
            "twostep_user": current_user(),
            "twostep_language": language(),
            "twostep_forgot": self.send_reset_link is not None,
            "twostep_home": self.home_endpoint,
            "twostep_passkeys": self.service.passkeys is not None,
            "twostep_remember_days": self.service.settings.remember_device_for.days,
            "may": may,
            "Action": ts.Action,
        }


def configure_session_cookie(app: Flask, *, secure: bool = True) -> None:
    """R110: the session cookie carries the twostep session token: keep it to this site.

    ``Secure`` (https only) with the ``__Host-`` prefix, which browsers accept only
    with ``Secure``, ``Path=/`` and no ``Domain``, so no subdomain can set or shadow
    it; ``HttpOnly`` (no script reads it); ``SameSite=Lax`` (not sent with other
    sites' POSTs). ``secure=False`` is for plain http on one's own machine: the cookie
    is then ``session``, without ``Secure`` or the prefix, and keeps the rest.
    Flask's defaults hold every one of these keys, so they are set, not defaulted.
    """
    app.config.update(
        SESSION_COOKIE_NAME="__Host-session" if secure else "session",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
    )


def extension() -> TwoStepFlask:
    """The app's :class:`TwoStepFlask`."""
    ext: TwoStepFlask = current_app.extensions["twostep"]
    return ext


def get_service() -> ts.TwoStep:
    """The app's ``TwoStep``."""
    return extension().service


def current_user() -> ts.Session | None:
    """The logged-in user of this request, or ``None``."""
    found: ts.Session | None = g.get("twostep_user")
    return found


def user() -> ts.Session:
    """The logged-in user of a view wrapped in :func:`login_required`."""
    found = current_user()
    if found is None:
        msg = "no user logged in: wrap the view in @login_required"
        raise RuntimeError(msg)
    return found


def language() -> str:
    """The language of this request's pages and messages."""
    chosen: str | None = g.get("twostep_language")
    return chosen or _i18n.LANGUAGES[0]


def gettext(text: str) -> str:
    """``text`` in this request's language."""
    return _i18n.translations(language()).gettext(text)


def translate(text: str, **values: object) -> str:
    """Templates' ``_``: ``text`` translated, ``%(name)s`` filled with escaped ``values``."""
    translated = gettext(text)
    if not values:
        return translated
    return Markup.escape(translated) % values


def message(error: ts.TwoStepError) -> str:
    """What to tell a person about ``error`` (R61), in this request's language."""
    return _i18n.message(error, _i18n.translations(language()))


def csrf_token() -> str:
    """The CSRF token of this browser session, for a hidden ``csrf_token`` field or a header."""
    token = session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = session[CSRF_KEY] = secrets.token_urlsafe(32)
    return token


def may(action: ts.Action) -> bool:
    """Whether the user's role may do ``action``, read from twostep's policy table (R50).

    Only for showing or hiding controls: the service decides for real on every call.
    """
    found = current_user()
    return found is not None and found.role in ts.POLICY[action].roles


def login_required(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
    """Send anonymous visitors to the login page, saying why their session ended.

    A user whose account now requires 2FA (R3, R21) is told so and logs in again,
    which sets 2FA up inside the login.
    """

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
        if current_user() is None:
            ended = g.get("twostep_ended")
            flash(message(ended) if ended is not None else gettext("Please log in."), "info")
            return redirect(url_for("twostep.login"))
        return view(*args, **kwargs)

    return wrapper


def csrf_exempt(view: Callable[P, R]) -> Callable[P, R]:
    """Let a view of the host take requests without the CSRF token (R112).

    For requests that no browser session sends: a webhook signed by its sender, an API
    authenticated by a header. Never for a view that reads the session cookie.
    """
    setattr(view, CSRF_EXEMPT, True)
    return view


def start_session(new: ts.Session) -> None:
    """Log in: a fresh cookie (new CSRF token too) holding only the session token."""
    old = session.get(TOKEN_KEY)
    if isinstance(old, str):  # logging in again ends the session it replaces
        get_service().logout(old)
    session.clear()
    session[TOKEN_KEY] = new.token
    g.twostep_user = new


def replace_session(new: ts.Session) -> None:
    """R85: a password change ended this session; the cookie holds the one replacing it."""
    session[TOKEN_KEY] = new.token
    g.twostep_user = new


def end_session() -> None:
    """Log out: the twostep session ends and the cookie is emptied."""
    token = session.get(TOKEN_KEY)
    if isinstance(token, str):
        get_service().logout(token)
    session.clear()
    g.twostep_user = None


def flash_error(error: ts.TwoStepError) -> None:
    """Show ``error`` to the person on the next page."""
    flash(message(error), "error")
