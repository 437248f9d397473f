"""The Flask example, screen by screen, through Flask's test client (R1-R61)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from examples.flask_app.app import RESET_LINK_PREFIX, SAME_ANSWER, create_app
from flask import Flask
from werkzeug.test import TestResponse

import twostep as ts
from twostep.integrations.flask import CHALLENGE_KEY, CSRF_KEY, TOKEN_KEY
from twostep.testing import ManualClock, Phone

from .conftest import MANAGER, MEMBER, OWNER, PASSWORDS


class Browser:
    """One user's browser: a cookie jar, forms posted with their CSRF token."""

    def __init__(self, app: Flask, clock: ManualClock) -> None:
        self.http = app.test_client()
        self.http.environ_base["wsgi.url_scheme"] = "https"  # Secure cookies need https
        self.clock = clock
        self.phone: Phone | None = None
        self.backup_codes: list[str] = []

    def get(self, path: str) -> TestResponse:
        return self.http.get(path, follow_redirects=True)

    def post(self, path: str, **form: str) -> TestResponse:
        with self.http.session_transaction() as cookie:
            token = cookie.setdefault(CSRF_KEY, "a-csrf-token")
        return self.http.post(path, data={"csrf_token": token, **form}, follow_redirects=True)

    def cookie(self) -> dict[str, object]:
        with self.http.session_transaction() as cookie:
            return dict(cookie)

    def login(self, email: str, password: str | None = None) -> TestResponse:
        return self.post("/login", email=email, password=password or PASSWORDS[email])

    def enroll_at(self, page: TestResponse, action: str) -> TestResponse:
        """Read the key from a set-up page, as a person typing it into a phone (R10)."""
        self.phone = Phone(secret_of(page), self.clock)
        done = self.post(action, code=self.phone.code())
        self.backup_codes = backup_codes_of(done)
        return done

    def turn_on(self) -> TestResponse:
        return self.enroll_at(self.post("/security/enable"), "/security/confirm")

    def code(self) -> str:
        """A fresh code: the clock moves to the next 30 s step first (R4)."""
        assert self.phone is not None
        self.clock.advance(30)
        return self.phone.code()


Opener = Callable[[], Browser]


def text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def secret_of(page: TestResponse) -> str:
    found = re.search(r'id="secret-key">([A-Z2-7 ]+)<', text(page))
    assert found, "no secret key on the page"
    return found.group(1).replace(" ", "")


def backup_codes_of(page: TestResponse) -> list[str]:
    found = re.search(r'id="backup-codes">(.*?)</ul>', text(page), flags=re.DOTALL)
    assert found, "no backup codes on the page"
    return re.findall(r"<li>([^<]+)</li>", found.group(1))


@pytest.fixture
def app(app_service: ts.TwoStep, monkeypatch: pytest.MonkeyPatch) -> Flask:
    """The app as deployed: secure cookies (a developer's shell may say otherwise)."""
    monkeypatch.delenv("TWOSTEP_INSECURE_COOKIES", raising=False)
    return create_app(app_service, secret_key="test-secret")


@pytest.fixture
def open_browser(app: Flask, clock: ManualClock) -> Opener:
    return lambda: Browser(app, clock)


@pytest.fixture
def owner(open_browser: Opener) -> Browser:
    b = open_browser()
    b.login(OWNER)
    return b


@pytest.fixture
def manager(open_browser: Opener) -> Browser:
    b = open_browser()
    b.login(MANAGER)
    return b


@pytest.fixture
def member(open_browser: Opener) -> Browser:
    b = open_browser()
    b.login(MEMBER)
    return b


def require_two_factor(owner: Browser) -> TestResponse:
    return owner.post("/admin/settings", required="on")


# -- logging in (R1-R6) -------------------------------------------------------------


def test_r2_password_is_enough_without_2fa(open_browser: Opener) -> None:
    b = open_browser()
    page = b.login(MEMBER)
    assert page.request.path == "/security"
    assert "Two-step verification is <strong>off</strong>" in text(page)
    assert "member@acme.example (member)" in text(page)


def test_r61_wrong_password_says_so(open_browser: Opener) -> None:
    page = open_browser().login(MEMBER, "not the password")
    assert page.request.path == "/login"
    assert "Email or password is wrong." in text(page)


def test_r1_with_2fa_login_asks_for_a_code(member: Browser, open_browser: Opener) -> None:
    member.turn_on()
    b = open_browser()
    b.phone = member.phone
    page = b.login(MEMBER)
    assert page.request.path == "/login/code"
    assert "Enter the 6-digit code" in text(page)
    assert TOKEN_KEY not in b.cookie()  # no session before the code
    assert b.get("/security").request.path == "/login"
    page = b.post("/login/code", code=b.code())
    assert page.request.path == "/security"
    assert "Two-step verification is <strong>on</strong>" in text(page)


def test_r4_a_used_code_is_refused(member: Browser, open_browser: Opener) -> None:
    member.turn_on()
    assert member.phone is not None
    b = open_browser()
    b.login(MEMBER)
    code = member.code()
    assert b.post("/login/code", code=code).request.path == "/security"
    b.post("/logout")
    b.login(MEMBER)
    page = b.post("/login/code", code=code)
    assert page.request.path == "/login/code"
    assert "That code was already used" in text(page)


def test_r5_backup_code_works_once_and_the_count_shows(
    member: Browser, open_browser: Opener
) -> None:
    member.turn_on()
    code = member.backup_codes[0]
    b = open_browser()
    b.login(MEMBER)
    page = b.post("/login/code", code=code)
    assert page.request.path == "/security"
    assert "Backup codes left: <strong>9</strong>" in text(page)
    b.post("/logout")
    b.login(MEMBER)
    page = b.post("/login/code", code=code)
    assert page.request.path == "/login/code"
    assert "That code was already used" in text(page)
    assert "Attempts left: 4." in text(page)


def test_r6_an_expired_login_starts_again(
    member: Browser, open_browser: Opener, clock: ManualClock
) -> None:
    member.turn_on()
    b = open_browser()
    b.login(MEMBER)
    clock.advance(minutes=6)
    page = b.post("/login/code", code=member.code())
    assert page.request.path == "/login"
    assert "That took too long. Please start again." in text(page)
    assert CHALLENGE_KEY not in b.cookie()


def test_r6_too_many_wrong_codes_end_the_login(member: Browser, open_browser: Opener) -> None:
    member.turn_on()
    b = open_browser()
    b.login(MEMBER)
    for _ in range(5):
        page = b.post("/login/code", code="000000")
    assert "Attempts left: 0." in text(page)
    page = b.post("/login/code", code=member.code())
    assert page.request.path == "/login"
    assert "Too many wrong codes. Please log in again." in text(page)


def test_r6_throttled_login_says_when_to_retry(open_browser: Opener) -> None:
    b = open_browser()
    for _ in range(6):
        b.login(MEMBER, "wrong password")
    page = b.login(MEMBER)
    assert page.request.path == "/login"
    assert "Too many failed attempts. Try again in 2 seconds." in text(page)


def test_r6_throttled_code_says_when_to_retry(member: Browser, open_browser: Opener) -> None:
    member.turn_on()
    b = open_browser()
    b.login(MEMBER)
    for _ in range(5):
        b.post("/login/code", code="000000")
    b.login(MEMBER)
    b.post("/login/code", code="000000")  # the 6th failure in a row: blocked for 2 s
    page = b.post("/login/code", code=member.backup_codes[0])
    assert page.request.path == "/login/code"
    assert "Too many failed attempts. Try again in 2 seconds." in text(page)


def test_r61_a_malformed_code_is_explained(member: Browser, open_browser: Opener) -> None:
    member.turn_on()
    b = open_browser()
    b.login(MEMBER)
    page = b.post("/login/code", code="12")
    assert "That is not a code" in text(page)


def test_logout_ends_the_twostep_session(member: Browser, app_service: ts.TwoStep) -> None:
    token = member.cookie()[TOKEN_KEY]
    assert isinstance(token, str)
    page = member.post("/logout")
    assert page.request.path == "/login"
    assert "You are logged out." in text(page)
    with pytest.raises(ts.SessionInvalid):
        app_service.check_session(token)


def test_the_cookie_holds_only_the_twostep_token(member: Browser) -> None:
    member.turn_on()
    assert set(member.cookie()) <= {TOKEN_KEY, CSRF_KEY, "_flashes"}
    assert member.phone is not None


def test_forms_without_the_csrf_token_are_refused(member: Browser) -> None:
    assert member.http.post("/security/enable").status_code == 400
    for forged in ("forged", "é"):
        bad = member.http.post("/security/enable", data={"csrf_token": forged})
        assert bad.status_code == 400
    assert "Two-step verification is <strong>off</strong>" in text(member.get("/security"))


# -- cookies and caching -------------------------------------------------------------


def responses(*pages: TestResponse) -> list[TestResponse]:
    """These responses and the redirects that led to them."""
    return [r for page in pages for r in (*page.history, page)]


def set_cookies(*pages: TestResponse) -> list[tuple[str, set[str]]]:
    """Every ``Set-Cookie`` of these responses: the cookie's name and its attributes."""
    found = []
    for r in responses(*pages):
        for header in r.headers.getlist("Set-Cookie"):
            pair, *attributes = header.split("; ")
            found.append((pair.partition("=")[0], set(attributes)))
    return found


def test_every_cookie_is_secure_httponly_lax_and_host_only(open_browser: Opener) -> None:
    b = open_browser()
    pages = [b.get("/login"), b.login(MEMBER), b.post("/security/enable")]
    pages += [b.enroll_at(pages[-1], "/security/confirm"), b.post("/logout"), b.login(MEMBER)]
    cookies = set_cookies(*pages)
    assert len(cookies) >= len(pages)
    for name, attributes in cookies:
        assert name == "__Host-session"  # the browser refuses it unless Secure, Path=/, no Domain
        assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} <= attributes
        assert not any(a.lower().startswith("domain=") for a in attributes)


@pytest.mark.parametrize("how", ["parameter", "environment"])
def test_local_http_drops_secure_and_the_prefix_only(
    app_service: ts.TwoStep, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "parameter":
        monkeypatch.setenv("TWOSTEP_INSECURE_COOKIES", "0")
        app = create_app(app_service, secret_key="test-secret", secure_cookies=False)
    else:
        monkeypatch.setenv("TWOSTEP_INSECURE_COOKIES", "1")
        app = create_app(app_service, secret_key="test-secret")
    [(name, attributes)] = set_cookies(app.test_client().get("/login"))
    assert name == "session"  # __Host- needs Secure
    assert "Secure" not in attributes
    assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= attributes


def test_secure_cookies_win_over_the_environment(
    app_service: ts.TwoStep, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWOSTEP_INSECURE_COOKIES", "1")
    app = create_app(app_service, secret_key="test-secret", secure_cookies=True)
    [(name, attributes)] = set_cookies(app.test_client().get("/login"))
    assert name == "__Host-session"
    assert "Secure" in attributes


def test_no_response_is_cached(owner: Browser, open_browser: Opener) -> None:
    b = open_browser()
    login = b.get("/login")
    to_code = b.login(MEMBER)
    setup = b.post("/security/enable")  # QR code and secret key
    codes = b.enroll_at(setup, "/security/confirm")  # backup codes
    new_codes = b.post("/security/backup-codes", code=b.code())
    out = b.post("/logout")
    code_step = b.login(MEMBER)
    logged_in = b.post("/login/code", code=b.code())
    refused = [b.http.post("/security/enable"), b.get("/admin")]  # no CSRF token: 400; 403
    require_two_factor(owner)
    c = open_browser()
    login_setup = c.login(MANAGER)  # R3: the set-up page is the answer to the login form
    login_codes = c.enroll_at(login_setup, "/login/setup")
    assert code_step.request.path == "/login/code"
    assert len(backup_codes_of(new_codes)) == 10
    assert len(c.backup_codes) == 10
    assert [r.status_code for r in refused] == [400, 403]
    pages = [login, to_code, setup, codes, new_codes, out, code_step, logged_in, *refused]
    for r in responses(*pages, login_setup, login_codes):
        assert r.headers["Cache-Control"] == "no-store", r.request.path


# -- enrolment (R10, R11, R30) --------------------------------------------------------


def test_r10_r30_turning_2fa_on_shows_qr_key_then_backup_codes_once(
    member: Browser, app_service: ts.TwoStep
) -> None:
    page = member.post("/security/enable")
    body = text(page)
    assert "<svg" in body  # the QR code, inline
    secret = secret_of(page)
    assert len(secret) >= 32  # 160 bits in base32
    assert "Issuer: Example" in body
    assert member.phone is None
    done = member.enroll_at(page, "/security/confirm")
    assert len(member.backup_codes) == 10
    download = re.search(r'href="data:text/plain;charset=utf-8,([^"]+)" download', text(done))
    assert download
    assert all(code in unquote(download.group(1)) for code in member.backup_codes)
    page = member.get("/security")
    assert "Two-step verification is <strong>on</strong>" in text(page)
    assert "Backup codes left: <strong>10</strong>" in text(page)
    assert not any(code in text(page) for code in member.backup_codes)  # shown once


def test_r11_a_wrong_code_or_an_abandoned_setup_changes_nothing(member: Browser) -> None:
    member.post("/security/enable")
    page = member.post("/security/confirm", code="000000")
    assert "That code is not right." in text(page)
    page = member.get("/security")
    assert "Two-step verification is <strong>off</strong>" in text(page)
    assert "Finish setting up" in text(page)
    assert "Backup codes left" not in text(page)


def test_r30_setup_can_be_finished_later_from_the_security_page(member: Browser) -> None:
    page = member.post("/security/enable")
    phone = Phone(secret_of(page), member.clock)
    member.get("/security")
    done = member.post("/security/confirm", code=phone.code())
    assert len(backup_codes_of(done)) == 10


# -- the account requirement (R3, R20-R22) ---------------------------------------------


def test_r20_r21_requiring_2fa_logs_everyone_out(
    owner: Browser, member: Browser, manager: Browser
) -> None:
    page = require_two_factor(owner)
    assert page.request.path == "/login"
    assert "everyone was logged out" in text(page)
    assert owner.get("/security").request.path == "/login"
    for b in (member, manager):
        page = b.get("/security")
        assert page.request.path == "/login"
        assert "You were logged out. Please log in again." in text(page)


def test_r3_a_user_without_2fa_sets_it_up_inside_the_login(
    owner: Browser, open_browser: Opener
) -> None:
    require_two_factor(owner)
    b = open_browser()
    page = b.login(MEMBER)
    assert "Your account requires two-step verification" in text(page)
    assert "<svg" in text(page)
    assert TOKEN_KEY not in b.cookie()  # R3: no session before the set-up
    done = b.enroll_at(page, "/login/setup")
    assert len(b.backup_codes) == 10
    assert "member@acme.example (member)" in text(done)  # logged in
    page = b.get("/security")
    assert "Two-step verification is <strong>on</strong>, and your account requires it" in text(
        page
    )


def test_r3_a_wrong_setup_code_at_login_asks_again(owner: Browser, open_browser: Opener) -> None:
    require_two_factor(owner)
    b = open_browser()
    page = b.login(MEMBER)
    phone = Phone(secret_of(page), b.clock)
    page = b.post("/login/setup", code="000000")
    assert "That code is not right. Attempts left: 4." in text(page)
    assert TOKEN_KEY not in b.cookie()
    done = b.post("/login/setup", code=phone.code())
    assert len(backup_codes_of(done)) == 10


def test_r3_the_owner_enrols_at_login_after_requiring(owner: Browser) -> None:
    require_two_factor(owner)
    page = owner.login(OWNER)
    owner.enroll_at(page, "/login/setup")
    page = owner.get("/admin/settings")
    assert "is <strong>required</strong> for all users" in text(page)


def test_r22_turning_the_requirement_off_keeps_users_2fa(
    owner: Browser, open_browser: Opener
) -> None:
    require_two_factor(owner)
    owner.enroll_at(owner.login(OWNER), "/login/setup")
    b = open_browser()
    b.enroll_at(b.login(MEMBER), "/login/setup")
    page = owner.post("/admin/settings", required="off")
    assert "2FA is no longer required; users who have it keep it." in text(page)
    assert "is <strong>not required</strong>" in text(page)
    assert "Two-step verification is <strong>on</strong>" in text(b.get("/security"))
    b.post("/logout")
    assert b.login(MEMBER).request.path == "/login/code"


def test_r20_r22_only_owners_see_and_use_the_switch(owner: Browser, manager: Browser) -> None:
    assert 'id="require-on"' in text(owner.get("/admin/settings"))
    page = manager.get("/admin/settings")
    assert 'id="require-on"' not in text(page)
    assert "Only owners can change this." in text(page)
    page = manager.post("/admin/settings", required="on")
    assert "Only an owner can do this." in text(page)
    assert "is <strong>not required</strong>" in text(page)


# -- one's own 2FA (R31, R32, R40, R5) -------------------------------------------------


def test_r31_turning_2fa_off_needs_a_current_code(member: Browser) -> None:
    member.turn_on()
    page = member.post("/security/disable", code="000000")
    assert "That code is not right." in text(page)
    assert "Two-step verification is <strong>on</strong>" in text(page)
    page = member.post("/security/disable", code=member.code())
    assert "Two-factor authentication is off." in text(page)
    assert "Two-step verification is <strong>off</strong>" in text(page)


def test_r31_a_backup_code_turns_2fa_off_too(member: Browser) -> None:
    member.turn_on()
    page = member.post("/security/disable", code=member.backup_codes[0])
    assert "Two-step verification is <strong>off</strong>" in text(page)


def test_r32_no_turning_off_while_the_account_requires_2fa(
    owner: Browser, open_browser: Opener
) -> None:
    require_two_factor(owner)
    b = open_browser()
    b.enroll_at(b.login(MEMBER), "/login/setup")
    page = b.get("/security")
    assert 'id="turn-off"' not in text(page)
    assert "you cannot turn it off" in text(page)
    page = b.post("/security/disable", code=b.code())
    assert "Your account requires 2FA, so you cannot turn it off." in text(page)
    assert "Two-step verification is <strong>on</strong>" in text(page)


def test_r40_reset_to_a_new_phone_keeps_the_old_one_until_confirmed(
    owner: Browser, open_browser: Opener
) -> None:
    require_two_factor(owner)
    b = open_browser()
    b.enroll_at(b.login(MEMBER), "/login/setup")
    old_phone, old_codes = b.phone, b.backup_codes
    page = b.post("/security/reset", code=b.code())
    assert "Your current app keeps working until you confirm the new one." in text(page)
    new_phone = Phone(secret_of(page), b.clock)
    assert "Finish moving to your new phone" in text(b.get("/security"))

    other = open_browser()  # R11: the old phone still logs in
    other.phone = old_phone
    other.login(MEMBER)
    assert other.post("/login/code", code=other.code()).request.path == "/security"

    b.clock.advance(30)
    done = b.post("/security/confirm", code=new_phone.code())
    new_codes = backup_codes_of(done)
    assert len(new_codes) == 10
    assert set(new_codes).isdisjoint(old_codes)
    other.post("/logout")
    other.login(MEMBER)
    page = other.post("/login/code", code=other.code())  # the old phone is gone
    assert "That code is not right." in text(page)


def test_r40_reset_is_refused_when_not_required(member: Browser) -> None:
    member.turn_on()
    assert 'id="reset"' not in text(member.get("/security"))
    page = member.post("/security/reset", code=member.code())
    assert "Reset is for accounts that require 2FA" in text(page)


def test_r5_new_backup_codes_replace_the_old_ones(member: Browser, open_browser: Opener) -> None:
    member.turn_on()
    old = member.backup_codes
    page = member.post("/security/backup-codes", code=member.code())
    new = backup_codes_of(page)
    assert len(new) == 10
    assert set(new).isdisjoint(old)
    b = open_browser()
    b.login(MEMBER)
    assert "That code is not right." in text(b.post("/login/code", code=old[1]))
    assert b.post("/login/code", code=new[0]).request.path == "/security"


def test_r61_actions_that_need_2fa_say_so_when_it_is_off(member: Browser) -> None:
    page = member.post("/security/backup-codes", code="123456")
    assert "Turn 2FA on first." in text(page)


# -- administration (R41, R50, R60) ------------------------------------------------------


def test_r50_owners_and_managers_see_administration_members_do_not(
    owner: Browser, manager: Browser, member: Browser
) -> None:
    assert 'id="nav-admin"' in text(owner.get("/security"))
    assert 'id="nav-admin"' in text(manager.get("/security"))
    assert 'id="nav-admin"' not in text(member.get("/security"))
    for path in ("/admin", "/admin/settings", "/admin/users", "/admin/activity"):
        assert member.get(path).status_code == 403, path
    assert member.post("/admin/settings", required="on").status_code == 403
    assert owner.get("/admin/users").status_code == 200


def test_r50_users_page_shows_2fa_status_per_user(
    owner: Browser, manager: Browser, member: Browser
) -> None:
    member.turn_on()
    page = text(manager.get("/admin/users"))
    rows = dict(
        re.findall(r'data-email="([^"]+)">.*?class="two-factor">(on|off)<', page, re.DOTALL)
    )
    assert rows == {OWNER: "off", MANAGER: "off", MEMBER: "on"}
    assert "Reset 2FA" not in page  # R41: not for managers


def test_r41_the_owner_resets_a_member(
    owner: Browser, member: Browser, open_browser: Opener, app_service: ts.TwoStep
) -> None:
    member.turn_on()
    page = owner.get("/admin/users")
    found = re.search(r'action="(/admin/users/[0-9a-f]+/reset)"', text(page))
    assert found
    page = owner.post(found.group(1))
    assert "2FA was reset: that user's sessions ended." in text(page)
    assert re.search(
        r'data-email="member@acme.example">.*?"two-factor">off<', text(page), re.DOTALL
    )
    page = member.get("/security")  # the member's session ended
    assert page.request.path == "/login"
    page = open_browser().login(MEMBER)  # and the old phone is no longer asked for
    assert page.request.path == "/security"


def test_r41_managers_cannot_reset(owner: Browser, manager: Browser, member: Browser) -> None:
    member.turn_on()
    ids = re.findall(r'action="/admin/users/([0-9a-f]+)/reset"', text(owner.get("/admin/users")))
    assert len(ids) == 1
    page = manager.post(f"/admin/users/{ids[0]}/reset")
    assert "Only an owner can do this." in text(page)
    assert "Two-step verification is <strong>on</strong>" in text(member.get("/security"))


def test_r60_activity_lists_what_happened(owner: Browser, member: Browser) -> None:
    member.turn_on()
    page = text(owner.get("/admin/activity"))
    assert "two_factor_enabled" in page
    assert "login" in page
    assert not any(code in page for code in member.backup_codes)


# -- one's own password (R85-R87) ---------------------------------------------------

NEW_PASSWORD = "a-brand-new-pass"


def change_password(b: Browser, current: str, **more: str) -> TestResponse:
    return b.post(
        "/security/password",
        current_password=current,
        new_password=NEW_PASSWORD,
        repeat_password=NEW_PASSWORD,
        **more,
    )


def test_r85_a_new_password_keeps_this_session_and_ends_the_others(
    member: Browser, open_browser: Opener
) -> None:
    elsewhere = open_browser()
    elsewhere.login(MEMBER)
    assert 'name="code"' not in text(member.get("/security")).split('id="password-form"')[1]
    page = change_password(member, PASSWORDS[MEMBER])
    assert "Your password was changed; your other sessions were logged out." in text(page)
    assert member.get("/security").request.path == "/security"  # the returned session
    assert elsewhere.get("/security").request.path == "/login"
    assert "Email or password is wrong." in text(open_browser().login(MEMBER))
    assert open_browser().login(MEMBER, NEW_PASSWORD).request.path == "/security"


def test_r85_a_wrong_current_password_changes_nothing(
    member: Browser, open_browser: Opener
) -> None:
    page = change_password(member, "not-the-password")
    assert "Your current password is wrong." in text(page)
    assert member.get("/security").request.path == "/security"
    assert open_browser().login(MEMBER).request.path == "/security"


def test_r85_with_2fa_the_change_needs_a_code(member: Browser, open_browser: Opener) -> None:
    member.turn_on()
    assert 'name="code"' in text(member.get("/security")).split('id="password-form"')[1]
    page = change_password(member, PASSWORDS[MEMBER])
    assert "You have 2FA: enter a code from your app, or a backup code." in text(page)
    page = change_password(member, PASSWORDS[MEMBER], code=member.code())
    assert "Your password was changed" in text(page)
    assert member.get("/security").request.path == "/security"
    assert open_browser().login(MEMBER, NEW_PASSWORD).request.path == "/login/code"


def reset_links(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """The links the app printed instead of emailing them, by email (path and query)."""
    found = re.findall(re.escape(RESET_LINK_PREFIX) + r"(\S+): (\S+)", capsys.readouterr().out)
    return {email: "{0.path}?{0.query}".format(urlsplit(link)) for email, link in found}


def test_r86_a_forgotten_password_is_reset_through_the_printed_link(
    open_browser: Opener, capsys: pytest.CaptureFixture[str]
) -> None:
    b = open_browser()
    assert 'href="/password/forgot"' in text(b.get("/login"))
    assert "Forgot your password?" in text(b.get("/password/forgot"))
    known = b.post("/password/forgot", email=MEMBER)
    unknown = b.post("/password/forgot", email="nobody@acme.example")
    assert SAME_ANSWER in text(known)
    assert text(known) == text(unknown)  # says nothing about who has an account
    link = reset_links(capsys)[MEMBER]
    assert "Choose a new password" in text(b.get(link))
    token = parse_qs(urlsplit(link).query)["token"][0]
    page = b.post(
        "/password/reset", token=token, new_password=NEW_PASSWORD, repeat_password=NEW_PASSWORD
    )
    assert page.request.path == "/login"
    assert "Your password was changed. Log in with it." in text(page)
    assert open_browser().login(MEMBER, NEW_PASSWORD).request.path == "/security"


def test_r86_a_used_link_and_a_short_password_are_refused(
    open_browser: Opener, capsys: pytest.CaptureFixture[str]
) -> None:
    b = open_browser()
    b.post("/password/forgot", email=MEMBER)
    token = parse_qs(urlsplit(reset_links(capsys)[MEMBER]).query)["token"][0]
    page = b.post("/password/reset", token=token, new_password="short", repeat_password="short")
    assert "That password is too short." in text(page)
    assert 'name="token"' in text(page)  # the same form, the link still works
    form = {"token": token, "new_password": NEW_PASSWORD, "repeat_password": NEW_PASSWORD}
    assert b.post("/password/reset", **form).request.path == "/login"
    page = b.post("/password/reset", **form)
    assert page.request.path == "/password/forgot"
    assert "That reset link is no longer valid: ask for a new one." in text(page)


def test_r87_a_reset_leaves_2fa_on_and_ends_every_session(
    member: Browser, open_browser: Opener, capsys: pytest.CaptureFixture[str]
) -> None:
    member.turn_on()
    b = open_browser()
    b.post("/password/forgot", email=MEMBER)
    token = parse_qs(urlsplit(reset_links(capsys)[MEMBER]).query)["token"][0]
    b.post("/password/reset", token=token, new_password=NEW_PASSWORD, repeat_password=NEW_PASSWORD)
    assert member.get("/security").request.path == "/login"
    assert b.login(MEMBER, NEW_PASSWORD).request.path == "/login/code"  # no bypass of 2FA


# -- the users' life (R80-R83) ------------------------------------------------------


def user_id_of(page: TestResponse, email: str) -> str:
    found = re.search(
        rf'data-email="{re.escape(email)}">.*?/admin/users/([0-9a-f]+)/role"', text(page), re.DOTALL
    )
    assert found, f"no role control for {email}"
    return found.group(1)


def row_of(page: TestResponse, email: str) -> str:
    found = re.search(rf'data-email="{re.escape(email)}">(.*?)</tr>', text(page), re.DOTALL)
    assert found, f"no row for {email}"
    return found.group(1)


def test_r83_the_list_shows_role_2fa_and_active_per_user(
    owner: Browser, manager: Browser, member: Browser
) -> None:
    member.turn_on()
    page = owner.get("/admin/users")
    assert 'class="active">yes<' in row_of(page, MEMBER)
    assert 'class="two-factor">on<' in row_of(page, MEMBER)
    assert '<option value="member" selected>' in row_of(page, MEMBER)
    assert 'class="deactivate"' not in row_of(page, OWNER)  # not oneself (R81, R82)
    page = manager.get("/admin/users")  # R83: managers see the list, not the controls
    assert re.search(r'class="role">\s*member<', row_of(page, MEMBER))
    assert "Change role" not in text(page)
    assert "Deactivate" not in text(page)
    assert "Only owners can change roles" in text(page)


def test_r80_r82_the_owner_changes_a_role_deactivates_and_deletes(
    owner: Browser, member: Browser, open_browser: Opener
) -> None:
    member_id = user_id_of(owner.get("/admin/users"), MEMBER)
    page = owner.post(f"/admin/users/{member_id}/role", role="manager")
    assert "The role is now manager." in text(page)
    assert '<option value="manager" selected>' in row_of(page, MEMBER)
    assert 'id="nav-admin"' in text(member.get("/security"))  # a promotion keeps the session
    owner.post(f"/admin/users/{member_id}/role", role="member")
    assert member.get("/security").request.path == "/login"  # R80: a demotion ends it
    page = owner.post(f"/admin/users/{member_id}/deactivate")
    assert "The user was deactivated" in text(page)
    assert 'class="active">no<' in row_of(page, MEMBER)
    assert "Email or password is wrong." in text(open_browser().login(MEMBER))
    page = owner.post(f"/admin/users/{member_id}/reactivate")
    assert 'class="active">yes<' in row_of(page, MEMBER)
    assert open_browser().login(MEMBER).request.path == "/security"
    page = owner.post(f"/admin/users/{member_id}/delete")  # not confirmed: nothing happens
    assert "to confirm the deletion" in text(page)
    assert f'data-email="{MEMBER}"' in text(page)
    page = owner.post(f"/admin/users/{member_id}/delete", confirm="yes")
    assert "The user was deleted." in text(page)
    assert f'data-email="{MEMBER}"' not in text(page)


def test_r80_the_last_owner_cannot_step_down(owner: Browser) -> None:
    owner_id = user_id_of(owner.get("/admin/users"), OWNER)
    page = owner.post(f"/admin/users/{owner_id}/role", role="member")
    assert "The account must keep an active owner" in text(page)
    assert '<option value="owner" selected>' in row_of(page, OWNER)


def test_r80_r82_managers_are_refused_with_the_reason(
    owner: Browser, manager: Browser, member: Browser
) -> None:
    member_id = user_id_of(owner.get("/admin/users"), MEMBER)
    for action, form in (
        ("role", {"role": "owner"}),
        ("deactivate", {}),
        ("delete", {"confirm": "yes"}),
    ):
        page = manager.post(f"/admin/users/{member_id}/{action}", **form)
        assert "Only an owner can do this." in text(page), action
    assert member.get("/security").request.path == "/security"
    assert member.post(f"/admin/users/{member_id}/delete", confirm="yes").status_code == 403
