"""The pages: logging in, one's own security settings, administration.

One blueprint, ``twostep``; each page is a template under ``twostep/`` that a host
overrides by putting its own of the same name in its templates folder. The login
flow (R1-R6) lives in :func:`_answer_login_step` and :func:`_finish_login`: the
password step, the code step and an enrolment inside the login all pass there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as cookie
from flask.typing import ResponseReturnValue
from markupsafe import Markup

import twostep as ts

from ._core import (
    CHALLENGE_KEY,
    end_session,
    extension,
    flash_error,
    get_service,
    gettext,
    login_required,
    may,
    message,
    replace_session,
    start_session,
    user,
)

blueprint = Blueprint(
    "twostep",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/twostep-static",
)

#: How many users the Users page lists at once.
USERS_PER_PAGE = 50
#: How many events the Activity page shows.
EVENTS_PER_PAGE = 50
#: Where the login keeps what the user can give at the code step (R102).
FACTORS_KEY = "twostep_factors"
#: The longest remembered-device cookie the login reads (R98: longer ones are refused).
MAX_DEVICE_COOKIE = 200
#: Browsers and systems named in a remembered device's label, first match wins.
BROWSERS: tuple[tuple[str, str], ...] = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Safari/", "Safari"),
)
SYSTEMS: tuple[tuple[str, str], ...] = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def _client() -> str | None:
    """The key twostep throttles per client (R6): the peer's address."""
    return request.remote_addr


def _home() -> ResponseReturnValue:
    return redirect(url_for(extension().home_endpoint))


def _setup_page(enrollment: ts.Enrollment | None, action: str, mode: str) -> str:
    """The set-up page (R10): the QR code and the key as text, then the first code."""
    qr = Markup(enrollment.qr_svg(scale=5)) if enrollment is not None else None  # noqa: S704 (segno's SVG)
    return render_template(
        "twostep/setup.html", enrollment=enrollment, qr=qr, action=action, mode=mode
    )


def _setup_again(owner: str, action: str, mode: str) -> str:
    """After a wrong first code (R11): the same QR code and key, the enrolment unchanged.

    ``owner`` is the login's challenge or the session token that started the enrolment;
    if this process no longer holds it (expired, or started in another process), the
    page asks for the code alone and offers a new key.
    """
    found = extension().setups.find(owner)
    if found is None:
        return _setup_page(None, action, mode)
    return _setup_page(found.enrollment, action, found.mode)


def _codes_page(codes: ts.BackupCodes, email: str) -> str:
    """Backup codes, shown once (R5, R10), with a download made in the page."""
    title = gettext("%(issuer)s: backup codes for %(email)s") % {
        "issuer": get_service().issuer,
        "email": email,
    }
    href = "data:text/plain;charset=utf-8," + quote(codes.as_text(title=title))
    return render_template("twostep/backup_codes.html", codes=codes, href=href)


# -- logging in (R1-R6) ------------------------------------------------------------------


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if request.method == "GET":
        return render_template("twostep/login.html")
    email = request.form.get("email", "")
    try:
        step = get_service().login(
            email, request.form.get("password", ""), client=_client(), device=_device_token()
        )
    except ts.TwoStepError as error:
        flash_error(error)
        return render_template("twostep/login.html", email=email)
    return _answer_login_step(step)


def _device_cookie() -> tuple[str, str] | None:
    """The remembered device's id and token from its cookie (R98), if it holds one."""
    value = request.cookies.get(extension().device_cookie, "")
    device_id, _, token = value.partition(":")
    if not device_id or not token or len(value) > MAX_DEVICE_COOKIE or not value.isascii():
        return None
    return device_id, token


def _device_token() -> str | None:
    """R98: the token a remembered device gives ``login``; an unknown one asks for a code."""
    found = _device_cookie()
    return found[1] if found is not None else None


def _device_label(user_agent: str) -> str:
    """A short name for a remembered device (R98), e.g. "Firefox on Linux"."""
    browser = next((name for mark, name in BROWSERS if mark in user_agent), "A browser")
    system = next((name for mark, name in SYSTEMS if mark in user_agent), None)
    return f"{browser} on {system}" if system else browser


def _remember_device(response: Response, session: ts.Session) -> None:
    """R98: a long-lived, HttpOnly cookie lets this browser skip the code step."""
    try:
        device = get_service().remember_device(
            session, label=_device_label(request.headers.get("User-Agent", ""))
        )
    except ts.TwoStepError as error:  # e.g. ended meanwhile: the login itself stands
        flash_error(error)
        return
    life = device.expires_at - session.issued_at
    response.set_cookie(
        extension().device_cookie,
        f"{device.device_id}:{device.token}",
        max_age=max(int(life / timedelta(seconds=1)), 0),
        path="/",
        secure=extension().secure_cookies,
        httponly=True,
        samesite="Lax",
    )


def _answer_login_step(step: ts.LoginStep) -> ResponseReturnValue:
    """What follows the password step: logged in, a code, or setting 2FA up (R1-R3)."""
    cookie.pop(CHALLENGE_KEY, None)
    cookie.pop(FACTORS_KEY, None)
    match step:
        case ts.LoggedIn(session=new):  # R2, R95, R98
            start_session(new)
            return _home()
        case ts.CodeRequired(challenge=challenge, second_factors=factors):  # R1, R102
            cookie[CHALLENGE_KEY] = challenge
            cookie[FACTORS_KEY] = list(factors)
            return redirect(url_for("twostep.login_code"))
        case ts.EnrollmentRequired(challenge=challenge, enrollment=enrollment):  # R3
            cookie[CHALLENGE_KEY] = challenge
            extension().setups.keep(challenge, enrollment, "login")
            return _setup_page(enrollment, url_for("twostep.login_setup"), "login")
    raise AssertionError(step)  # unreachable: LoginStep has these three kinds


def _finish_login(
    again: Callable[[], ResponseReturnValue],
    complete: Callable[[str], ts.LoggedIn] | None = None,
) -> ResponseReturnValue:
    """The code step (R1, R4-R6), or the enrolment's first code (R3); ``again`` re-asks.

    ``complete`` answers the login challenge (a security key's assertion, R103); by
    default, with the form's code.
    """
    challenge = cookie.get(CHALLENGE_KEY)
    if not isinstance(challenge, str):
        flash(gettext("Please log in."), "info")
        return redirect(url_for("twostep.login"))
    if complete is None:

        def complete(challenge: str) -> ts.LoggedIn:
            code = request.form.get("code", "")
            return get_service().complete_login(challenge, code, client=_client())

    try:
        done = complete(challenge)
    except ts.ChallengeExpired as error:  # R6: log in again
        cookie.pop(CHALLENGE_KEY, None)
        extension().setups.drop(challenge)
        flash_error(error)
        return redirect(url_for("twostep.login"))
    except ts.TwoStepError as error:  # wrong, replayed, throttled (R4, R6)
        flash_error(error)
        return again()
    extension().setups.drop(challenge)
    start_session(done.session)
    if done.backup_codes is not None:  # R3: the login included an enrolment
        return _codes_page(done.backup_codes, done.session.email)
    response = make_response(_home())
    if request.form.get("remember") == "on":  # R98
        _remember_device(response, done.session)
    return response


def _code_page() -> str:
    factors = cookie.get(FACTORS_KEY)
    with_key = isinstance(factors, list) and "security_key" in factors
    return render_template("twostep/code.html", with_key=with_key)


@blueprint.route("/login/code", methods=["GET", "POST"])
def login_code() -> ResponseReturnValue:
    if request.method == "GET":
        if CHALLENGE_KEY not in cookie:
            return redirect(url_for("twostep.login"))
        return _code_page()
    return _finish_login(_code_page)


def _options(make: Callable[[], str]) -> ResponseReturnValue:
    """WebAuthn options as JSON for the page's script (R101, R103, R106); a refusal as text."""
    try:
        return Response(make(), mimetype="application/json")
    except ts.TwoStepError as error:
        return Response(message(error), status=400, mimetype="text/plain")


@blueprint.post("/login/security-key/options")
def login_key_options() -> ResponseReturnValue:
    """R103: the options for ``navigator.credentials.get()`` at the code step."""
    challenge = cookie.get(CHALLENGE_KEY)
    if not isinstance(challenge, str):
        return Response(gettext("Please log in."), status=400, mimetype="text/plain")
    return _options(lambda: get_service().security_key_login_options(challenge))


@blueprint.post("/login/security-key")
def login_key() -> ResponseReturnValue:
    """R103: the code step answered by a security key."""
    credential = request.form.get("credential", "")
    return _finish_login(
        _code_page,
        lambda challenge: get_service().complete_login_with_security_key(
            challenge, credential, client=_client()
        ),
    )


@blueprint.post("/login/setup")
def login_setup() -> ResponseReturnValue:
    return _finish_login(
        lambda: _setup_again(cookie[CHALLENGE_KEY], url_for("twostep.login_setup"), "login")
    )


@blueprint.post("/logout")
def logout() -> ResponseReturnValue:
    # A remembered device outlives the logout (R98): that is what it is for.
    end_session()
    flash(gettext("You are logged out."), "info")
    return redirect(url_for("twostep.login"))


# -- a forgotten password (R86, R87) ---------------------------------------------------------


@blueprint.route("/password/forgot", methods=["GET", "POST"])
def forgot_password() -> ResponseReturnValue:
    send = extension().send_reset_link
    if send is None:  # the host delivers no links
        abort(404)
    if request.method == "GET":
        return render_template("twostep/forgot.html")
    email = request.form.get("email", "")
    try:
        reset = get_service().begin_password_reset(email, client=_client())
    except ts.TwoStepError as error:  # malformed, throttled: nothing about the account
        flash_error(error)
        return render_template("twostep/forgot.html", email=email)
    # The same answer for anyone: an unknown email gets a token that opens nothing.
    send(email, url_for("twostep.reset_password", token=reset.token, _external=True))
    return render_template("twostep/forgot_sent.html")


@blueprint.route("/password/reset", methods=["GET", "POST"])
def reset_password() -> ResponseReturnValue:
    token = request.values.get("token", "")
    if request.method == "GET":
        response = make_response(render_template("twostep/reset.html", token=token))
        response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
        return response
    if request.form.get("new_password", "") != request.form.get("repeat_password", ""):
        flash(gettext("The two passwords differ."), "error")
        return render_template("twostep/reset.html", token=token)
    try:
        get_service().complete_password_reset(token, request.form.get("new_password", ""))
    except ts.ChallengeExpired:  # used, expired or unknown: ask again
        flash(gettext("That reset link is no longer valid: ask for a new one."), "error")
        return redirect(url_for("twostep.forgot_password"))
    except ts.TwoStepError as error:  # too short, ...: the link still works
        flash_error(error)
        return render_template("twostep/reset.html", token=token)
    cookie.pop(CHALLENGE_KEY, None)
    flash(gettext("Your password was changed. Log in with it."), "success")  # R87
    return redirect(url_for("twostep.login"))


# -- one's own security settings (R5, R10, R11, R30-R32, R40, R85) -------------------------


@blueprint.get("/security")
@login_required
def security() -> ResponseReturnValue:
    service = get_service()
    try:
        status = service.two_factor_status(user())
        devices = service.remembered_devices(user())
        keys = service.list_security_keys(user())
    except ts.SessionInvalid as error:  # ended between the check and now
        flash_error(error)
        return redirect(url_for("twostep.login"))
    current = _device_cookie()
    return render_template(
        "twostep/security.html",
        status=status,
        devices=devices,
        this_device=current[0] if current is not None else None,
        keys=keys,
    )


@blueprint.post("/security/devices/<device_id>/forget")
@login_required
def forget_device(device_id: str) -> ResponseReturnValue:
    """R98: a remembered device asks for a code again; forgetting this one drops its cookie."""
    response = make_response(redirect(url_for("twostep.security")))
    try:
        forgotten = get_service().forget_device(user(), device_id)
    except ts.TwoStepError as error:  # e.g. the session ended meanwhile
        flash_error(error)
        return response
    if not forgotten:  # forgotten already, or expired
        flash(gettext("No such remembered device."), "error")
        return response
    flash(gettext("That device will ask for a code again."), "success")
    current = _device_cookie()
    if current is not None and current[0] == device_id:
        response.delete_cookie(
            extension().device_cookie,
            path="/",
            secure=extension().secure_cookies,
            httponly=True,
            samesite="Lax",
        )
    return response


@blueprint.post("/security/keys/options")
@login_required
def key_options() -> ResponseReturnValue:
    """R101: the options for ``navigator.credentials.create()``."""
    return _options(lambda: get_service().begin_security_key_registration(user()))


@blueprint.post("/security/keys")
@login_required
def add_key() -> ResponseReturnValue:
    """R101: the browser's new credential, and the name the user gave it."""
    try:
        key = get_service().finish_security_key_registration(
            user(), request.form.get("credential", ""), request.form.get("name", "")
        )
    except ts.TwoStepError as error:
        flash_error(error)
    else:
        flash(gettext("Security key \u201c%(name)s\u201d added.") % {"name": key.name}, "success")
    return redirect(url_for("twostep.security"))


@blueprint.post("/security/keys/<key_id>/remove")
@login_required
def remove_key(key_id: str) -> ResponseReturnValue:
    """R106: removing a key takes a code, or an assertion of one of one's keys."""
    credential = request.form.get("credential") or None
    try:
        get_service().remove_security_key(
            user(),
            key_id,
            code=None if credential else request.form.get("code", ""),
            assertion=credential,
        )
    except ts.TwoStepError as error:
        flash_error(error)
    else:
        flash(gettext("The security key was removed."), "success")
    return redirect(url_for("twostep.security"))


@blueprint.post("/security/check/options")
@login_required
def check_options() -> ResponseReturnValue:
    """R106, R99: options to prove one of one's keys outside a login."""
    return _options(lambda: get_service().begin_security_key_check(user()))


@blueprint.post("/security/enable")
@login_required
def enable() -> ResponseReturnValue:
    try:
        enrollment = get_service().begin_enrollment(user())  # R30
    except ts.TwoStepError as error:
        flash_error(error)
        return redirect(url_for("twostep.security"))
    extension().setups.keep(user().token, enrollment, "enable")
    return _setup_page(enrollment, url_for("twostep.confirm"), "enable")


@blueprint.post("/security/confirm")
@login_required
def confirm() -> ResponseReturnValue:
    try:
        codes = get_service().confirm_enrollment(user(), request.form.get("code", ""))
    except (ts.InvalidCode, ts.Throttled) as error:  # R11: nothing changed
        flash_error(error)
        return _setup_again(user().token, url_for("twostep.confirm"), "enable")
    except ts.TwoStepError as error:
        extension().setups.drop(user().token)
        flash_error(error)
        return redirect(url_for("twostep.security"))
    extension().setups.drop(user().token)
    return _codes_page(codes, user().email)


@blueprint.post("/security/disable")
@login_required
def disable() -> ResponseReturnValue:
    try:
        get_service().disable_two_factor(user(), request.form.get("code", ""))  # R31, R32
    except ts.TwoStepError as error:
        flash_error(error)
    else:
        flash(gettext("Two-factor authentication is off."), "success")
    return redirect(url_for("twostep.security"))


@blueprint.post("/security/reset")
@login_required
def reset() -> ResponseReturnValue:
    try:
        enrollment = get_service().begin_reset(user(), request.form.get("code", ""))  # R40
    except ts.TwoStepError as error:
        flash_error(error)
        return redirect(url_for("twostep.security"))
    extension().setups.keep(user().token, enrollment, "reset")
    return _setup_page(enrollment, url_for("twostep.confirm"), "reset")


@blueprint.post("/security/password")
@login_required
def change_password() -> ResponseReturnValue:
    form = request.form
    if form.get("new_password", "") != form.get("repeat_password", ""):
        flash(gettext("The two new passwords differ."), "error")
        return redirect(url_for("twostep.security"))
    try:
        new = get_service().change_password(  # R85
            user(),
            form.get("current_password", ""),
            form.get("new_password", ""),
            code=form.get("code") or None,
        )
    except ts.InvalidCredentials:
        flash(gettext("Your current password is wrong."), "error")
    except ts.TwoStepError as error:
        flash_error(error)
    else:
        replace_session(new)  # every earlier session ended, this one included
        flash(
            gettext("Your password was changed; your other sessions were logged out."),
            "success",
        )
    return redirect(url_for("twostep.security"))


@blueprint.post("/security/step-up")
@login_required
def step_up() -> ResponseReturnValue:
    """R99: a fresh code before an owner's sensitive changes (roles, resets)."""
    credential = request.form.get("credential")
    try:
        if credential:  # R106: a security key steps up as a code does
            get_service().step_up_with_security_key(user(), credential)
        else:
            get_service().step_up(user(), request.form.get("code", ""))
    except ts.TwoStepError as error:
        flash_error(error)
    else:
        flash(gettext("Confirmed: you can make the change now."), "success")
    return redirect(url_for("twostep.admin_users"))


@blueprint.post("/security/backup-codes")
@login_required
def regenerate() -> ResponseReturnValue:
    try:
        codes = get_service().regenerate_backup_codes(user(), request.form.get("code", ""))  # R5
    except ts.TwoStepError as error:
        flash_error(error)
        return redirect(url_for("twostep.security"))
    return _codes_page(codes, user().email)


# -- administration (R20-R22, R41, R50, R60, R80-R83) ---------------------------------------


def _admin_only() -> None:
    """A refused administration request: 403 for those who may not see Administration."""
    if not may(ts.Action.VIEW_OVERVIEW):
        abort(403)


@blueprint.get("/admin")
@login_required
def admin() -> ResponseReturnValue:
    return redirect(url_for("twostep.admin_settings"))


@blueprint.route("/admin/settings", methods=["GET", "POST"])
@login_required
def admin_settings() -> ResponseReturnValue:
    if request.method == "GET":
        try:
            overview = get_service().two_factor_overview(user())  # R50
        except ts.NotAllowed:
            abort(403)
        return render_template("twostep/admin_settings.html", overview=overview)
    of = request.form.get("required", "")
    required = of in {"on", *ts.RequiredOf}
    days = request.form.get("grace_days", "").strip() or "0"
    if not re.fullmatch(r"\d{1,4}", days):
        _admin_only()
        flash(gettext("The grace period is a number of days."), "error")
        return redirect(url_for("twostep.admin_settings"))
    service = get_service()
    try:
        service.set_two_factor_required(  # R20, R22, R95, R96
            user(),
            required,
            of=ts.RequiredOf.EVERYONE if of in {"on", ""} or not required else of,
            grace_period=timedelta(days=int(days)) if required else None,
        )
    except ts.TwoStepError as error:
        _admin_only()
        flash_error(error)
        return redirect(url_for("twostep.admin_settings"))
    if not required:
        flash(gettext("2FA is no longer required; users who have it keep it."), "success")
        return redirect(url_for("twostep.admin_settings"))
    try:
        service.check_session(user().token)
    except ts.SessionInvalid:  # R21, R96: the users it newly covers, this one too
        cookie.clear()
        if of == ts.RequiredOf.ADMINS:
            done = gettext(
                "2FA is now required of owners and managers, who were logged out. "
                "Log in again (and set up 2FA if you have not)."
            )
        else:
            done = gettext(
                "2FA is now required for all users, and everyone was logged out. "
                "Log in again (and set up 2FA if you have not)."
            )
        flash(done, "success")
        return redirect(url_for("twostep.login"))
    flash(gettext("The requirement was saved."), "success")
    return redirect(url_for("twostep.admin_settings"))


@blueprint.get("/admin/users")
@login_required
def admin_users() -> ResponseReturnValue:
    try:
        page = get_service().list_users(
            user(), limit=USERS_PER_PAGE, cursor=request.args.get("after")
        )
    except ts.NotAllowed:  # R83: owners and managers
        abort(403)
    except ts.InvalidInput as error:  # a cursor not made by twostep
        flash_error(error)
        return redirect(url_for("twostep.admin_users"))
    service = get_service()
    return render_template(
        "twostep/admin_users.html",
        page=page,
        roles=list(ts.Role),
        can_reset=may(ts.Action.RESET_OTHER),
        # R99, R106: step-up offers a security key to an owner who has one.
        with_key=service.passkeys is not None and bool(service.list_security_keys(user())),
    )


def _change_user(done: str, change: Callable[[], None]) -> ResponseReturnValue:
    """One owner's change to a user (R41, R80-R82); a refusal shows the policy's reason."""
    try:
        change()
    except ts.TwoStepError as error:
        _admin_only()
        flash_error(error)
    else:
        flash(done, "success")
    return redirect(url_for("twostep.admin_users"))


@blueprint.post("/admin/users/<user_id>/role")
@login_required
def admin_set_role(user_id: str) -> ResponseReturnValue:
    role = request.form.get("role", "")
    return _change_user(  # R80: a demotion ends that user's sessions
        gettext("The role is now %(role)s.") % {"role": role},
        lambda: get_service().set_role(user(), user_id, role),
    )


@blueprint.post("/admin/users/<user_id>/deactivate")
@login_required
def admin_deactivate(user_id: str) -> ResponseReturnValue:
    return _change_user(  # R81
        gettext("The user was deactivated: their sessions ended and they cannot log in."),
        lambda: get_service().deactivate_user(user(), user_id),
    )


@blueprint.post("/admin/users/<user_id>/reactivate")
@login_required
def admin_reactivate(user_id: str) -> ResponseReturnValue:
    return _change_user(  # R81
        gettext("The user can log in again."),
        lambda: get_service().reactivate_user(user(), user_id),
    )


@blueprint.post("/admin/users/<user_id>/delete")
@login_required
def admin_delete(user_id: str) -> ResponseReturnValue:
    if request.form.get("confirm") != "yes":
        _admin_only()
        flash(gettext("Tick \u201cyes, delete\u201d to confirm the deletion."), "error")
        return redirect(url_for("twostep.admin_users"))
    return _change_user(  # R82
        gettext("The user was deleted."), lambda: get_service().delete_user(user(), user_id)
    )


@blueprint.post("/admin/users/<user_id>/reset")
@login_required
def admin_reset(user_id: str) -> ResponseReturnValue:
    return _change_user(  # R41
        gettext("2FA was reset: that user's sessions ended."),
        lambda: get_service().reset_two_factor(user(), user_id),
    )


@blueprint.get("/admin/activity")
@login_required
def admin_activity() -> ResponseReturnValue:
    """R60, R76: the account's audit trail, newest first: who did what to whom."""
    try:
        page = get_service().audit_page(
            user(), limit=EVENTS_PER_PAGE, cursor=request.args.get("after")
        )
    except ts.NotAllowed:  # R50: owners and managers
        abort(403)
    except ts.InvalidInput as error:  # a cursor not made by twostep
        flash_error(error)
        return redirect(url_for("twostep.admin_activity"))
    return render_template("twostep/admin_activity.html", page=page, events=page.events)
