"""A server-rendered Flask app with every screen of twostep's rules.

Run it from the repository root: ``flask --app examples/flask_app/app.py run``
(over plain http, with ``TWOSTEP_INSECURE_COOKIES=1``: see :func:`create_app`).
Login (R1-R3), set-up with a QR code and the key as text (R10), backup codes shown
once (R5, R10), the Security page (R30-R32, R40, a password change: R85), a forgotten
password reset through a link printed to the console (R86, R87) and Administration
(R20-R22, R41, R50, R60, the users' life: R80-R83).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from flask import (
    Flask,
    abort,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
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
    replace_session,
    start_session,
    user,
)

HERE = Path(__file__).resolve().parent
ISSUER = "twostep Flask example"
#: What the console shows instead of an email; tests read the link after it.
RESET_LINK_PREFIX = "Password reset link for "
SAME_ANSWER = "If the address has an account, a link to reset its password is on its way."


def print_reset_link(email: str, link: str) -> None:
    """Stands in for an email: a real app sends ``link`` to ``email`` (R86)."""
    print(f"{RESET_LINK_PREFIX}{email}: {link}", flush=True)


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

    # -- a forgotten password (R86, R87) -------------------------------------------------

    @app.route("/password/forgot", methods=["GET", "POST"])
    def forgot_password() -> ResponseReturnValue:
        if request.method == "GET":
            return render_template("forgot.html")
        email = request.form.get("email", "")
        try:
            reset = get_service().begin_password_reset(email, client=request.remote_addr)
        except ts.TwoStepError as error:  # malformed, throttled: nothing about the account
            flash_error(error)
            return render_template("forgot.html", email=email)
        # The same answer for anyone: an unknown email gets a token that opens nothing.
        print_reset_link(email, url_for("reset_password", token=reset.token, _external=True))
        return render_template("forgot_sent.html")

    @app.route("/password/reset", methods=["GET", "POST"])
    def reset_password() -> ResponseReturnValue:
        token = request.values.get("token", "")
        if request.method == "GET":
            response = make_response(render_template("reset.html", token=token))
            response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
            return response
        if request.form.get("new_password", "") != request.form.get("repeat_password", ""):
            flash("The two passwords differ.", "error")
            return render_template("reset.html", token=token)
        try:
            get_service().complete_password_reset(token, request.form.get("new_password", ""))
        except ts.ChallengeExpired:  # used, expired or unknown: ask again
            flash("That reset link is no longer valid: ask for a new one.", "error")
            return redirect(url_for("forgot_password"))
        except ts.TwoStepError as error:  # too short, ...: the link still works
            flash_error(error)
            return render_template("reset.html", token=token)
        session.pop(CHALLENGE_KEY, None)
        flash("Your password was changed. Log in with it.", "success")  # R87: nobody logged in
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

    @app.post("/security/password")
    @login_required
    def change_password() -> ResponseReturnValue:
        form = request.form
        if form.get("new_password", "") != form.get("repeat_password", ""):
            flash("The two new passwords differ.", "error")
            return redirect(url_for("security"))
        try:
            new = get_service().change_password(  # R85
                user(),
                form.get("current_password", ""),
                form.get("new_password", ""),
                code=form.get("code") or None,
            )
        except ts.InvalidCredentials:
            flash("Your current password is wrong.", "error")
        except ts.TwoStepError as error:
            flash_error(error)
        else:
            replace_session(new)  # every earlier session ended, this one included
            flash("Your password was changed; your other sessions were logged out.", "success")
        return redirect(url_for("security"))

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
        try:
            page = get_service().list_users(user(), limit=50, cursor=request.args.get("after"))
        except ts.NotAllowed:  # R83: owners and managers
            abort(403)
        except ts.InvalidInput as error:  # a cursor not made by twostep
            flash_error(error)
            return redirect(url_for("admin_users"))
        return render_template(
            "admin_users.html", page=page, roles=list(ts.Role), can_reset=may(ts.Action.RESET_OTHER)
        )

    def change_user(done: str, change: Callable[[], None]) -> ResponseReturnValue:
        """One owner's change to a user (R80-R82); a refusal shows the policy's reason."""
        try:
            change()
        except ts.TwoStepError as error:
            admin_only()
            flash_error(error)
        else:
            flash(done, "success")
        return redirect(url_for("admin_users"))

    @app.post("/admin/users/<user_id>/role")
    @login_required
    def admin_set_role(user_id: str) -> ResponseReturnValue:
        role = request.form.get("role", "")
        return change_user(  # R80: a demotion ends that user's sessions
            f"The role is now {role}.", lambda: get_service().set_role(user(), user_id, role)
        )

    @app.post("/admin/users/<user_id>/deactivate")
    @login_required
    def admin_deactivate(user_id: str) -> ResponseReturnValue:
        return change_user(  # R81
            "The user was deactivated: their sessions ended and they cannot log in.",
            lambda: get_service().deactivate_user(user(), user_id),
        )

    @app.post("/admin/users/<user_id>/reactivate")
    @login_required
    def admin_reactivate(user_id: str) -> ResponseReturnValue:
        return change_user(  # R81
            "The user can log in again.", lambda: get_service().reactivate_user(user(), user_id)
        )

    @app.post("/admin/users/<user_id>/delete")
    @login_required
    def admin_delete(user_id: str) -> ResponseReturnValue:
        if request.form.get("confirm") != "yes":
            admin_only()
            flash("Tick \u201cyes, delete\u201d to confirm the deletion.", "error")
            return redirect(url_for("admin_users"))
        return change_user(  # R82
            "The user was deleted.", lambda: get_service().delete_user(user(), user_id)
        )

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
