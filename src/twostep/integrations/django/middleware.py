"""The middleware: no page for a Django-authenticated user who has not passed the second step.

Put it after ``AuthenticationMiddleware``. On every request of an authenticated user it
checks the twostep session kept in Django's session (R21, R41: a revoked one logs the
user out of Django too) and sets ``request.twostep`` to it. A user authenticated by
Django who has no twostep session yet (whatever logged them in: this app's login page,
the admin's, a password reset) is sent to the code step, and reaches no other page
until they pass it (R93, R94).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

import twostep as ts

from . import conf

__all__ = ["TwoStepMiddleware"]

#: The app's own pages, open to a user who owes the second step (by URL name).
OPEN_VIEWS = ("twostep:login", "twostep:verify", "twostep:logout")


class TwoStepMiddleware:
    """Sets ``request.twostep`` (a ``twostep.Session`` or ``None``) and enforces the step."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Check the twostep session of an authenticated user; send them on if they owe it."""
        request.twostep = None  # type: ignore[attr-defined]
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            refused = self._check(request, str(user.pk))
            if refused is not None:
                return refused
        return self.get_response(request)

    def _check(self, request: HttpRequest, user_id: str) -> HttpResponse | None:
        token = request.session.get(conf.SESSION_KEY)
        if token is not None:
            try:
                session = conf.service().check_session(token)
            except ts.SessionInvalid:
                session = None
            if session is not None and session.user_id == user_id:
                request.twostep = session  # type: ignore[attr-defined]
                return None
            # Ended (R21, R41, expiry) or someone else's: end Django's session as well.
            logout(request)
            return None if _is_open(request) else _redirect("twostep:login", request)
        if _is_open(request):
            return None
        return _redirect("twostep:verify", request)


def _is_open(request: HttpRequest) -> bool:
    path = request.path_info
    if any(path == reverse(name) for name in OPEN_VIEWS):
        return True
    return any(path.startswith(prefix) for prefix in conf.config().exempt_paths)


def _redirect(name: str, request: HttpRequest) -> HttpResponse:
    """To ``name``, coming back to the page asked for (a GET) afterwards."""
    url = reverse(name)
    if request.method == "GET":
        url += "?" + urlencode({"next": request.get_full_path()})
    return HttpResponseRedirect(url)
