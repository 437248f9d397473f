"""A server-rendered Flask app with every screen of twostep's rules.

Run it from the repository root: ``flask --app examples/flask_app/app.py run``
(over plain http, with ``TWOSTEP_INSECURE_COOKIES=1``: see :func:`create_app`).
Login (R1-R3), set-up with a QR code and the key as text (R10), backup codes shown
once (R5, R10), the Security page (R30-R32, R40) and Administration (R20-R22, R41,
R50, R60).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote

from flask import Flask, abort, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

import twostep as ts

from . import seed
from .twostep_flask import (
    CHALLENGE_KEY,
    TwoStepFlask,
    end_session,
    flash_error,
    get_service,
    login_required,
    may,
    start_session,
    user,
)

HERE = Path(__file__).resolve().parent
ISSUER = "twostep Flask example"


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


def insecure_cookies_asked() -> bool:
    """Whether ``TWOSTEP_INSECURE_COOKIES`` asks for cookies that plain http can carry."""
    return os.environ.get("TWOSTEP_INSECURE_COOKIES", "").strip().lower() in {"1", "true", "yes"}


def create_app(
    service: ts.TwoStep | None = None,
    *,
    secret_key: str | None = None,
    secure_cookies: bool | None = None,
) -> Flask:
    """The app; tests pass their own ``service`` (a manual clock, cheap settings).

    The session cookie is ``Secure`` (sent over https only) unless ``secure_cookies``
    is false, or is left out while ``TWOSTEP_INSECURE_COOKIES=1``: for plain http on
    one's own machine, where a browser would not send a ``Secure`` cookie back.
    """
    app = Flask(__name__)
    app.secret_key = secret_key or os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32)
    if secure_cookies is None:
        secure_cookies = not insecure_cookies_asked()
    if not secure_cookies:
        app.logger.warning("The session cookie is not Secure: for plain http in development only.")
    service = service if service is not None else make_service()
    TwoStepFlask(app, service, secure_cookies=secure_cookies)

    def setup_page(enrollment: ts.Enrollment | None, action: str, mode: str) -> str:
        qr = Markup(enrollment.qr_svg(scale=5)) if enrollment is not None else None  # noqa: S704 (segno's SVG)
        return render_template("setup.html", enrollment=enrollment, qr=qr, action=action, mode=mode)

    def codes_page(codes: ts.BackupCodes, email: str) -> str:
        text = codes.as_text(title=f"{ISSUER}: backup codes for {email}")
        href = "data:text/plain;charset=utf-8," + quote(text)
        return render_template("backup_codes.html", codes=codes, href=href)

    # -- logging in (R1-R6) ------------------------------------------------------------

    @app.get("/")
    def index() -> ResponseReturnValue:
        return redirect(url_for("security"))

    @app.route("/login", methods=["GET", "POST"])
    def login() -> ResponseReturnValue:
        if request.method == "GET":
            return render_template("login.html")
        email = request.form.get("email", "")
        try:
            step = get_service().login(
                email, request.form.get("password", ""), client=request.remote_addr
            )
        except ts.TwoStepError as error:
            flash_error(error)
            return render_template("login.html", email=email)
        session.pop(CHALLENGE_KEY, None)
        match step:
            case ts.LoggedIn(session=new):  # R2
                start_session(new)
                return redirect(url_for("security"))
            case ts.CodeRequired(challenge=challenge):  # R1
                session[CHALLENGE_KEY] = challenge
                return redirect(url_for("login_code"))
            case ts.EnrollmentRequired(challenge=challenge, enrollment=enrollment):  # R3
                session[CHALLENGE_KEY] = challenge
                return setup_page(enrollment, url_for("login_setup"), "login")
        msg = "unreachable"
        raise AssertionError(msg)

    def finish_login(template: str) -> ResponseReturnValue:
        challenge = session.get(CHALLENGE_KEY)
        if not isinstance(challenge, str):
            flash("Please log in.", "info")
            return redirect(url_for("login"))
        try:
            done = get_service().complete_login(
                challenge, request.form.get("code", ""), client=request.remote_addr
            )
        except ts.ChallengeExpired as error:  # R6: log in again
            session.pop(CHALLENGE_KEY, None)
            flash_error(error)
            return redirect(url_for("login"))
        except ts.TwoStepError as error:  # wrong, replayed, throttled (R4, R6)
            flash_error(error)
            if template == "setup.html":
                return setup_page(None, url_for("login_setup"), "login")
            return render_template(template)
        start_session(done.session)
        if done.backup_codes is not None:  # R3: the login included an enrolment
            g.twostep_user = done.session
            return codes_page(done.backup_codes, done.session.email)
        return redirect(url_for("security"))

    @app.route("/login/code", methods=["GET", "POST"])
    def login_code() -> ResponseReturnValue:
        if request.method == "GET":
            if CHALLENGE_KEY not in session:
                return redirect(url_for("login"))
            return render_template("code.html")
        return finish_login("code.html")

    @app.post("/login/setup")
    def login_setup() -> ResponseReturnValue:
        return finish_login("setup.html")

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        end_session()
        flash("You are logged out.", "info")
        return redirect(url_for("login"))

    # -- one's own security settings (R5, R10, R11, R30-R32, R40) ------------------------

    @app.get("/security")
    @login_required
    def security() -> ResponseReturnValue:
        try:
            status = get_service().two_factor_status(user())
        except ts.SessionInvalid as error:
            flash_error(error)
            return redirect(url_for("login"))
        return render_template("security.html", status=status)

    @app.post("/security/enable")
    @login_required
    def enable() -> ResponseReturnValue:
        try:
            enrollment = get_service().begin_enrollment(user())  # R30
        except ts.TwoStepError as error:
            flash_error(error)
            return redirect(url_for("security"))
        return setup_page(enrollment, url_for("confirm"), "enable")

    @app.post("/security/confirm")
    @login_required
    def confirm() -> ResponseReturnValue:
        try:
            codes = get_service().confirm_enrollment(user(), request.form.get("code", ""))
        except (ts.InvalidCode, ts.Throttled) as error:  # R11: nothing changed
            flash_error(error)
            return setup_page(None, url_for("confirm"), "enable")
        except ts.TwoStepError as error:
            flash_error(error)
            return redirect(url_for("security"))
        return codes_page(codes, user().email)

    @app.post("/security/disable")
    @login_required
    def disable() -> ResponseReturnValue:
        try:
            get_service().disable_two_factor(user(), request.form.get("code", ""))  # R31, R32
        except ts.TwoStepError as error:
            flash_error(error)
        else:
            flash("Two-factor authentication is off.", "success")
        return redirect(url_for("security"))

    @app.post("/security/reset")
    @login_required
    def reset() -> ResponseReturnValue:
        try:
            enrollment = get_service().begin_reset(user(), request.form.get("code", ""))  # R40
        except ts.TwoStepError as error:
            flash_error(error)
            return redirect(url_for("security"))
        return setup_page(enrollment, url_for("confirm"), "reset")

    @app.post("/security/backup-codes")
    @login_required
    def regenerate() -> ResponseReturnValue:
        try:
            code = request.form.get("code", "")
            codes = get_service().regenerate_backup_codes(user(), code)  # R5
        except ts.TwoStepError as error:
            flash_error(error)
            return redirect(url_for("security"))
        return codes_page(codes, user().email)

    # -- administration (R20-R22, R41, R50, R60) ------------------------------------------

    def overview() -> ts.AccountOverview:
        try:
            return get_service().two_factor_overview(user())  # R50
        except ts.NotAllowed:
            abort(403)

    def admin_only() -> None:
        if not may(ts.Action.VIEW_OVERVIEW):
            abort(403)

    @app.get("/admin")
    @login_required
    def admin() -> ResponseReturnValue:
        return redirect(url_for("admin_settings"))

    @app.route("/admin/settings", methods=["GET", "POST"])
    @login_required
    def admin_settings() -> ResponseReturnValue:
        if request.method == "GET":
            return render_template("admin_settings.html", overview=overview())
        required = request.form.get("required") == "on"
        try:
            get_service().set_two_factor_required(user(), required)  # R20, R22
        except ts.TwoStepError as error:
            admin_only()
            flash_error(error)
            return redirect(url_for("admin_settings"))
        if required:  # R21: every session ended, this one too
            session.clear()
            flash(
                "2FA is now required for all users, and everyone was logged out. "
                "Log in again (and set up 2FA if you have not).",
                "success",
            )
            return redirect(url_for("login"))
        flash("2FA is no longer required; users who have it keep it.", "success")
        return redirect(url_for("admin_settings"))

    @app.get("/admin/users")
    @login_required
    def admin_users() -> ResponseReturnValue:
        can_reset = may(ts.Action.RESET_OTHER)
        return render_template("admin_users.html", overview=overview(), can_reset=can_reset)

    @app.post("/admin/users/<user_id>/reset")
    @login_required
    def admin_reset(user_id: str) -> ResponseReturnValue:
        try:
            get_service().reset_two_factor(user(), user_id)  # R41
        except ts.TwoStepError as error:
            admin_only()
            flash_error(error)
        else:
            flash("2FA was reset: that user's sessions ended.", "success")
        return redirect(url_for("admin_users"))

    @app.get("/admin/activity")
    @login_required
    def admin_activity() -> ResponseReturnValue:
        try:
            events = get_service().audit_trail(user(), limit=50)  # R60
        except ts.NotAllowed:
            abort(403)
        return render_template("admin_activity.html", events=events)

    return app
