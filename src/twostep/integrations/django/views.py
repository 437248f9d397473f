"""The app's pages: the login pair, the security page and administration (R1-R94).

Step 1 is Django's (its ``LoginView`` and authentication backends); the code page
asks twostep for the second step of the user Django authenticated (R93, R94). Every
page renders a template under ``templates/twostep/`` that a project can override, is
sent with ``Cache-Control: no-store``, and checks Django's CSRF token on every POST.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate
from urllib.parse import quote, urlencode

from django.contrib.auth import logout as django_logout
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

import twostep as ts

from . import conf
from .errors import message, status
from .users import import_user

__all__ = [
    "LoginView",
    "activity",
    "administration",
    "administration_require",
    "administration_reset",
    "logout",
    "security",
    "security_backup_codes",
    "security_confirm",
    "security_disable",
    "security_enable",
    "security_new_phone",
    "step_up",
    "twostep_required",
    "verify",
]

#: Events a page of the Activity view shows.
ACTIVITY_PAGE = 50

View = Callable[..., HttpResponse]
SessionView = Callable[Concatenate[HttpRequest, ts.Session, ...], HttpResponse]


# -- helpers ------------------------------------------------------------------------------


def _client(request: HttpRequest) -> str | None:
    """The key twostep throttles per client (R6): the peer's address."""
    address = request.META.get("REMOTE_ADDR")
    return address if isinstance(address, str) and address else None


def _next(request: HttpRequest) -> str:
    """The page to go to after a login: a safe ``next``, else the configured one."""
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return conf.config().login_redirect_url


def _page(
    request: HttpRequest, template: str, context: dict[str, Any] | None = None, code: int = 200
) -> HttpResponse:
    context = dict(context or {})
    enrollment = context.get("enrollment")
    if isinstance(enrollment, ts.Enrollment):  # the QR code, drawn by segno: safe markup
        context["qr_svg"] = mark_safe(enrollment.qr_svg())  # noqa: S308 (segno's own SVG)
    codes = context.get("codes")
    if isinstance(codes, ts.BackupCodes):  # a download made in the page: the server keeps none
        title = _("Backup codes")
        context["download"] = "data:text/plain;charset=utf-8," + quote(codes.as_text(title=title))
    return render(request, f"twostep/{template}", context, status=code)


def _refused(
    request: HttpRequest, error: ts.TwoStepError, template: str = "error.html"
) -> HttpResponse:
    return _page(request, template, {"error": message(error)}, status(error))


def _with_next(name: str, next_url: str) -> str:
    return f"{reverse(name)}?{urlencode({'next': next_url})}"


def twostep_required(view: SessionView) -> View:
    """A view for users who passed both steps; it gets their ``twostep.Session`` too.

    Without ``TwoStepMiddleware`` it checks the session itself. A user who has not
    logged in goes to the login page, one who owes the second step to the code page.
    """

    @functools.wraps(view)
    @never_cache
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:  # noqa: ANN401 (a view's URL arguments)
        session: ts.Session | None = getattr(request, "twostep", None)
        if session is None and request.user.is_authenticated:
            token = request.session.get(conf.SESSION_KEY)
            try:
                checked = conf.service().check_session(token) if token else None
            except ts.SessionInvalid:
                checked = None
            if checked is not None and checked.user_id == str(request.user.pk):
                session = checked
            elif token:
                django_logout(request)
        if session is None:
            name = "twostep:verify" if request.user.is_authenticated else "twostep:login"
            return HttpResponseRedirect(_with_next(name, request.get_full_path()))
        return view(request, session, *args, **kwargs)

    return wrapped


# -- the login pair -----------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """Step 1: Django's own login form and authentication; then the code page."""

    template_name = "twostep/login.html"

    def get_success_url(self) -> str:
        """The code page, which then goes where the login was asked to go."""
        return _with_next("twostep:verify", self.get_redirect_url() or _next(self.request))


def _forget_login(request: HttpRequest) -> None:
    for key in (conf.CHALLENGE_KEY, conf.PENDING_USER_KEY):
        request.session.pop(key, None)


def _begin(request: HttpRequest, user: Any) -> ts.LoginStep:  # noqa: ANN401 (ditto)
    """The second step of ``user`` (R93), importing them first if need be."""
    try:
        return conf.service().begin_second_step(str(user.pk), client=_client(request))
    except ts.UnknownUser:
        if not conf.config().import_users:
            raise
    import_user(user)
    return conf.service().begin_second_step(str(user.pk), client=_client(request))


def _logged_in(request: HttpRequest, done: ts.LoggedIn) -> HttpResponse:
    """Both steps passed: a new Django session key, holding the twostep session."""
    next_url = _next(request)
    _forget_login(request)
    request.session.cycle_key()  # what a login does: no session fixation across the steps
    request.session[conf.SESSION_KEY] = done.session.token
    if done.backup_codes is not None:  # the login included an enrolment (R3): shown once
        return _page(request, "backup_codes.html", {"codes": done.backup_codes, "next": next_url})
    return HttpResponseRedirect(next_url)


@never_cache
@sensitive_post_parameters("code")
def verify(request: HttpRequest) -> HttpResponse:
    """Step 2: a code, or the enrolment the account requires (R1, R3), for Django's user."""
    if not request.user.is_authenticated:
        return HttpResponseRedirect(_with_next("twostep:login", _next(request)))
    if getattr(request, "twostep", None) is not None:
        return HttpResponseRedirect(_next(request))
    if request.method == "POST":
        return _complete(request)
    return _start(request)


def _start(request: HttpRequest) -> HttpResponse:
    _forget_login(request)
    try:
        step = _begin(request, request.user)
    except ts.TwoStepError as error:  # throttled (R6), no email, not importable
        context = {"error": message(error), "restart": True, "next": _next(request)}
        return _page(request, "verify.html", context, status(error))
    if isinstance(step, ts.LoggedIn):  # R2: no 2FA, and the account does not require it
        return _logged_in(request, step)
    request.session[conf.CHALLENGE_KEY] = step.challenge
    request.session[conf.PENDING_USER_KEY] = str(request.user.pk)
    enrollment = step.enrollment if isinstance(step, ts.EnrollmentRequired) else None
    return _page(request, "verify.html", {"enrollment": enrollment, "next": _next(request)})


def _complete(request: HttpRequest) -> HttpResponse:
    challenge = request.session.get(conf.CHALLENGE_KEY)
    if not challenge or request.session.get(conf.PENDING_USER_KEY) != str(request.user.pk):
        return HttpResponseRedirect(_with_next("twostep:verify", _next(request)))
    try:
        done = conf.service().complete_login(
            challenge, request.POST.get("code", ""), client=_client(request)
        )
    except ts.InvalidCode as error:  # the same challenge takes another code
        context = {"error": message(error), "retry": True, "next": _next(request)}
        return _page(request, "verify.html", context, 400)
    except ts.TwoStepError as error:  # expired, used up, throttled: start the step again
        _forget_login(request)
        context = {"error": message(error), "restart": True, "next": _next(request)}
        return _page(request, "verify.html", context, status(error))
    return _logged_in(request, done)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """End both sessions: twostep's and Django's."""
    token = request.session.get(conf.SESSION_KEY)
    if token:
        conf.service().logout(token)
    django_logout(request)
    return HttpResponseRedirect(reverse("twostep:login"))


# -- one's own security settings (R5, R10, R30-R32, R40) ----------------------------------


def _security_page(
    request: HttpRequest, session: ts.Session, *, notice: str = "", error: str = "", code: int = 200
) -> HttpResponse:
    state = conf.service().two_factor_status(session)
    context = {"status": state, "notice": notice, "error": error, "session": session}
    return _page(request, "security.html", context, code)


@twostep_required
@require_GET
def security(request: HttpRequest, session: ts.Session) -> HttpResponse:
    """Two-step login on or off, required or not, backup codes left, and the actions."""
    return _security_page(request, session)


def _code_action(
    action: Callable[[HttpRequest, ts.Session, str], HttpResponse],
) -> View:
    """A POST of the security page that takes a code; a refusal shows the page again."""

    @twostep_required
    @require_POST
    @sensitive_post_parameters("code")
    @functools.wraps(action)
    def wrapped(request: HttpRequest, session: ts.Session) -> HttpResponse:
        try:
            return action(request, session, request.POST.get("code", ""))
        except ts.TwoStepError as error:
            return _security_page(request, session, error=message(error), code=status(error))

    return wrapped


@twostep_required
@require_POST
def security_enable(request: HttpRequest, session: ts.Session) -> HttpResponse:
    """R30: a new secret to scan; nothing changes until its first code (R11)."""
    try:
        enrollment = conf.service().begin_enrollment(session)
    except ts.TwoStepError as error:
        return _security_page(request, session, error=message(error), code=status(error))
    return _page(request, "setup.html", {"enrollment": enrollment})


@_code_action
def security_confirm(request: HttpRequest, session: ts.Session, code: str) -> HttpResponse:
    """R10, R40: the app's first code turns the new secret on; the backup codes, once."""
    try:
        codes = conf.service().confirm_enrollment(session, code)
    except ts.InvalidCode as error:
        return _page(request, "setup.html", {"error": message(error), "retry": True}, 400)
    return _page(
        request, "backup_codes.html", {"codes": codes, "next": reverse("twostep:security")}
    )


@_code_action
def security_disable(request: HttpRequest, session: ts.Session, code: str) -> HttpResponse:
    """R31, R32: turn one's own 2FA off with a code, when the account does not require it."""
    conf.service().disable_two_factor(session, code)
    return _security_page(request, session, notice=_("Two-step login is off."))


@_code_action
def security_backup_codes(request: HttpRequest, session: ts.Session, code: str) -> HttpResponse:
    """R5: a fresh set of backup codes replaces the old one."""
    codes = conf.service().regenerate_backup_codes(session, code)
    return _page(
        request, "backup_codes.html", {"codes": codes, "next": reverse("twostep:security")}
    )


@_code_action
def security_new_phone(request: HttpRequest, session: ts.Session, code: str) -> HttpResponse:
    """R40: a new phone; the old one keeps working until the new one's code confirms it."""
    enrollment = conf.service().begin_reset(session, code)
    return _page(request, "setup.html", {"enrollment": enrollment})


# -- administration (R20-R22, R41, R50, R60) ----------------------------------------------


def _administration_page(
    request: HttpRequest,
    session: ts.Session,
    *,
    notice: str = "",
    error: str = "",
    code: int = 200,
    step_up_asked: bool = False,
) -> HttpResponse:
    try:
        overview = conf.service().two_factor_overview(session)
    except ts.TwoStepError as refused:
        return _refused(request, refused)
    context = {
        "overview": overview,
        "is_owner": session.role == ts.Role.OWNER,
        "session": session,
        "notice": notice,
        "error": error,
        "step_up": step_up_asked,
    }
    return _page(request, "administration.html", context, code)


@twostep_required
@require_GET
def administration(request: HttpRequest, session: ts.Session) -> HttpResponse:
    """R50: who has 2FA on; owners require it for everyone (R20) and reset users (R41)."""
    return _administration_page(request, session)


@twostep_required
@require_POST
def administration_require(request: HttpRequest, session: ts.Session) -> HttpResponse:
    """R20-R22: an owner requires 2FA for everyone (everyone is logged out) or lifts it."""
    required = request.POST.get("required") == "on"
    try:
        conf.service().set_two_factor_required(session, required)
    except ts.TwoStepError as error:
        return _administration_page(request, session, error=message(error), code=status(error))
    if required:  # R21: every session ended, this one too
        django_logout(request)
        return HttpResponseRedirect(reverse("twostep:login"))
    notice = _("Two-step login is optional for the account.")
    return _administration_page(request, session, notice=notice)


@twostep_required
@require_POST
def administration_reset(request: HttpRequest, session: ts.Session) -> HttpResponse:
    """R41: an owner removes another user's 2FA; that user's sessions end."""
    try:
        conf.service().reset_two_factor(session, request.POST.get("user_id", ""))
    except ts.TwoStepError as error:
        asked = isinstance(error, ts.StepUpRequired)  # R99: a fresh code first
        return _administration_page(
            request, session, error=message(error), code=status(error), step_up_asked=asked
        )
    return _administration_page(request, session, notice=_("Two-step login was reset."))


@twostep_required
@require_POST
@sensitive_post_parameters("code")
def step_up(request: HttpRequest, session: ts.Session) -> HttpResponse:
    """R99: a fresh code in this session, before an owner's sensitive change."""
    try:
        conf.service().step_up(session, request.POST.get("code", ""))
    except ts.TwoStepError as error:
        return _administration_page(
            request, session, error=message(error), code=status(error), step_up_asked=True
        )
    notice = _("Code accepted: you can make the change now.")
    return _administration_page(request, session, notice=notice)


@twostep_required
@require_GET
def activity(request: HttpRequest, session: ts.Session) -> HttpResponse:
    """R60, R76: the account's audit trail, newest first: who did what to whom."""
    try:
        page = conf.service().audit_page(
            session, limit=ACTIVITY_PAGE, cursor=request.GET.get("cursor") or None
        )
    except ts.TwoStepError as error:
        return _refused(request, error)
    rows = [
        {
            "at": event.at,
            "actor": page.actor_of(event),
            "action": event.action,
            "target": page.who(event.target_id) if event.target_id != event.actor_id else "",
            "outcome": event.outcome,
            "reason": event.reason or "",
            "repeats": event.repeats,
        }
        for event in page.events
    ]
    return _page(request, "activity.html", {"rows": rows, "next_cursor": page.next_cursor})
