"""Step 1 is Django's own authenticate(); step 2 is twostep's (R93, R94).

Django's session is started (``django.contrib.auth.login``) only once twostep has
issued its session: a user who must enter a code, or enrol, has no Django session
before they do.
"""

from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model, login, logout
from django.http import HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

import twostep as ts

from .glue import twostep

CHALLENGE, PENDING_USER, SESSION = "twostep_challenge", "twostep_pending_user", "twostep_session"


def _form(request, title: str, fields: str, extra: str = "", status: int = 200) -> HttpResponse:
    """A page with one form; ``fields`` is this module's own HTML."""
    html = format_html(
        '<h1>{}</h1>{}<form method="post"><input type="hidden" name="csrfmiddlewaretoken"'
        ' value="{}">{}<button>Go</button></form>',
        title,
        extra,
        get_token(request),
        mark_safe(fields),  # noqa: S308 (constant HTML of this module)
    )
    return HttpResponse(html, status=status)


def _login_page(request, error: str = "", status: int = 200) -> HttpResponse:
    fields = '<input name="username"><input name="password" type="password">'
    return _form(request, "Log in", fields, format_html("<p>{}</p>", error), status)


def _code_page(
    request, step: ts.CodeRequired | ts.EnrollmentRequired, error: str = ""
) -> HttpResponse:
    extra: SafeString = format_html("<p>{}</p>", error)
    if isinstance(step, ts.EnrollmentRequired):  # R3: set the app up first
        enrollment = step.enrollment
        extra += format_html(
            "<p>Scan this code with your authenticator app, or type the key {}</p>{}",
            enrollment.secret_groups,
            mark_safe(enrollment.qr_svg()),  # noqa: S308 (an SVG that segno made)
        )
    return _form(
        request, "Enter the code", '<input name="code" autocomplete="one-time-code">', extra
    )


def _start_session(request, user_id: str, session: ts.Session) -> None:
    """Both sessions begin together, after the second step."""
    login(request, get_user_model().objects.get(pk=user_id))
    request.session[SESSION] = session.token


def login_view(request):
    if request.method != "POST":
        return _login_page(request)
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return _login_page(request, "Username or password is wrong", status=401)
    try:
        step = twostep().begin_second_step(str(user.pk), client=request.META.get("REMOTE_ADDR"))
    except ts.Throttled as error:
        return _login_page(request, f"Too many attempts; try again in {error.retry_after} s", 429)
    if isinstance(step, ts.LoggedIn):  # R2: no 2FA, and the account does not require it
        _start_session(request, str(user.pk), step.session)
        return HttpResponseRedirect("/")
    request.session[CHALLENGE] = step.challenge
    request.session[PENDING_USER] = str(user.pk)
    return _code_page(request, step)


def code_view(request):
    challenge = request.session.get(CHALLENGE)
    user_id = request.session.get(PENDING_USER)
    if request.method != "POST" or challenge is None or user_id is None:
        return HttpResponseRedirect("/login/")
    try:
        done = twostep().complete_login(
            challenge, request.POST.get("code", ""), client=request.META.get("REMOTE_ADDR")
        )
    except ts.InvalidCode as error:
        fields = '<input name="code" autocomplete="one-time-code">'
        left = format_html("<p>That code did not work ({} left)</p>", error.attempts_left)
        return _form(request, "Enter the code", fields, left, status=400)
    except ts.TwoStepError:  # ChallengeExpired, Throttled: start over
        request.session.flush()
        return _login_page(request, "Please log in again", status=401)
    del request.session[CHALLENGE], request.session[PENDING_USER]
    _start_session(request, user_id, done.session)
    if done.backup_codes is not None:  # the login included an enrolment (R3): show them once
        codes = format_html_join("", "<li>{}</li>", ((c,) for c in done.backup_codes))
        return HttpResponse(format_html("<h1>Your backup codes</h1><ul>{}</ul>", codes))
    return HttpResponseRedirect("/")


def home_view(request):
    """A page behind both steps: Django's session and twostep's, checked on each request."""
    token = request.session.get(SESSION)
    if not request.user.is_authenticated or token is None:
        return HttpResponseRedirect("/login/")
    try:
        session = twostep().check_session(token)
    except ts.SessionInvalid:  # revoked (R21, R41), expired, 2FA now required
        logout(request)
        return HttpResponseRedirect("/login/")
    return HttpResponse(format_html("<p>Hello {}</p>", session.email))
