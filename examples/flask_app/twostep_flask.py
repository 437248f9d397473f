"""Flask glue for twostep: the one file to copy into a Flask application.

- Flask's signed session cookie holds the twostep session token (and, between the two
  login steps, the login challenge token); :meth:`TwoStepFlask.load_user` checks the
  token with ``TwoStep.check_session`` on every request, so a session ended by R21 or
  R41 stops working at once, and a user who must set up 2FA is sent to log in (R3).
- That cookie is ``__Host-session; Secure; HttpOnly; SameSite=Lax; Path=/``
  (:func:`configure_session_cookie`), and no response may be cached
  (``Cache-Control: no-store``): pages show secret keys and backup codes.
- Every form carries a CSRF token (:func:`csrf_token`), checked on every POST.
- twostep's typed errors become messages for people (:func:`message`, R61).
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Flask, Response, abort, current_app, flash, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

import twostep as ts

TOKEN_KEY = "twostep_token"
CHALLENGE_KEY = "twostep_challenge"
CSRF_KEY = "csrf"

P = ParamSpec("P")
R = TypeVar("R")


class TwoStepFlask:
    """Binds a ``TwoStep`` service to a Flask app: session lookup, CSRF, template helpers."""

    def __init__(
        self,
        app: Flask,
        service: ts.TwoStep,
        *,
        login_endpoint: str = "login",
        secure_cookies: bool = True,
    ) -> None:
        self.service = service
        self.login_endpoint = login_endpoint
        app.extensions["twostep"] = self
        configure_session_cookie(app, secure=secure_cookies)
        app.before_request(self.check_csrf)
        app.before_request(self.load_user)
        app.after_request(self.no_store)
        app.context_processor(
            lambda: {
                "csrf_token": csrf_token,
                "current_user": current_user(),
                "may": may,
                "Action": ts.Action,
            }
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
        if request.method in {"GET", "HEAD", "OPTIONS"}:
            return
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        expected = session.get(CSRF_KEY)
        if not isinstance(expected, str) or not hmac.compare_digest(
            sent.encode(), expected.encode()
        ):
            abort(400, "The form expired or did not come from this site: reload it and retry.")

    @staticmethod
    def no_store(response: Response) -> Response:
        """Every response: pages show secret keys and backup codes, which no cache may keep."""
        response.headers["Cache-Control"] = "no-store"
        return response


def configure_session_cookie(app: Flask, *, secure: bool = True) -> None:
    """The session cookie carries the twostep session token: keep it to this site.

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


def get_service() -> ts.TwoStep:
    ext: TwoStepFlask = current_app.extensions["twostep"]
    return ext.service


def current_user() -> ts.Session | None:
    user: ts.Session | None = g.get("twostep_user")
    return user


def user() -> ts.Session:
    """The logged-in user of a view wrapped in :func:`login_required`."""
    found = current_user()
    assert found is not None, "use @login_required"
    return found


def csrf_token() -> str:
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
    """Send anonymous visitors to the login page, saying why their session ended."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
        if current_user() is None:
            ended = g.get("twostep_ended")
            flash(message(ended) if ended is not None else "Please log in.", "info")
            ext: TwoStepFlask = current_app.extensions["twostep"]
            return redirect(url_for(ext.login_endpoint))
        return view(*args, **kwargs)

    return wrapper


def start_session(new: ts.Session) -> None:
    """Log in: a fresh cookie (new CSRF token too) holding only the session token."""
    old = session.get(TOKEN_KEY)
    if isinstance(old, str):  # logging in again ends the session it replaces
        get_service().logout(old)
    session.clear()
    session[TOKEN_KEY] = new.token


def replace_session(new: ts.Session) -> None:
    """R85: a password change ended this session; the cookie holds the one replacing it."""
    session[TOKEN_KEY] = new.token
    g.twostep_user = new


def end_session() -> None:
    token = session.get(TOKEN_KEY)
    if isinstance(token, str):
        get_service().logout(token)
    session.clear()


def flash_error(error: ts.TwoStepError) -> None:
    flash(message(error), "error")


_NOT_ALLOWED = {
    "owner_only": "Only an owner can do this.",
    "owner_or_manager_only": "Only owners and managers can open Administration.",
    "account_requires_two_factor": "Your account requires 2FA, so you cannot turn it off.",
    "account_does_not_require_two_factor": (
        "Reset is for accounts that require 2FA: turn 2FA off and on again instead."
    ),
    "two_factor_off": "Turn 2FA on first.",
    "two_factor_already_on": "2FA is already on.",
    "target_is_self": "Not for your own user: use your Security page for your own settings.",
    "target_in_other_account": "No such user in your account.",
    "no_enrollment_in_progress": "Start setting up 2FA first.",
    "two_factor_required": "Your account requires 2FA: set it up first.",
    "last_owner": "The account must keep an active owner: make someone else owner first.",
}
_SESSION = {
    "revoked": "You were logged out. Please log in again.",
    "expired": "Your session expired. Please log in again.",
    "two_factor_required": "Your account requires 2FA. Log in to set it up.",
}
_CODE = {
    "malformed": "That is not a code: type the 6 digits from your app, or a backup code.",
    "replayed": "That code was already used: wait for the next code, or use another backup code.",
}
_INPUT = {
    "code_required": "You have 2FA: enter a code from your app, or a backup code.",
    "password_too_short": "That password is too short.",
    "password_too_long": "That password is too long.",
    "invalid_password": "That password is not valid.",
    "invalid_email": "That is not an email address.",
}
_CHALLENGE = {
    "too_many_attempts": "Too many wrong codes. Please log in again.",
    "unknown": "Your login is no longer valid. Please log in again.",
}


def message(error: ts.TwoStepError) -> str:
    """What to tell a person about a refusal (R61); ``error.reason`` says why."""
    match error:
        case ts.Throttled():
            return f"Too many failed attempts. Try again in {error.retry_after} seconds."
        case ts.InvalidCode():
            text = _CODE.get(error.reason, "That code is not right.")
            if error.attempts_left is not None and error.reason != "malformed":
                text += f" Attempts left: {max(error.attempts_left, 0)}."
            return text
        case ts.InvalidCredentials():
            return "Email or password is wrong."
        case ts.ChallengeExpired():
            return _CHALLENGE.get(error.reason, "That took too long. Please start again.")
        case ts.NotAllowed():
            return _NOT_ALLOWED.get(error.reason, f"Not allowed ({error.reason}).")
        case ts.SessionInvalid():
            return _SESSION.get(error.reason, "Please log in.")
        case ts.UnknownUser():
            return "No such user."
        case ts.EmailTaken():
            return "That email is already taken."
        case ts.InvalidInput():
            return _INPUT.get(error.reason, f"That input is not valid ({error.reason}).")
        case _:
            return f"Something went wrong ({error.reason})."
