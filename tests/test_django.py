"""The Django app ``twostep.integrations.django`` in a real project (tests/django_project).

Django's test client drives it: Django's own authentication checks the password, then
the app asks for the code, or for an enrolment when the account requires 2FA, and no
page of the project opens before (R93, R94). Then the security pages, administration,
the management command, the settings' checks, the cookies and the translations.
"""

from __future__ import annotations

import ast
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

import twostep as ts
from twostep.testing import ManualClock, Phone

from .django_project import setup

setup()

from django.conf import settings  # noqa: E402 (after setup(): settings of the project)
from django.contrib.auth import get_user_model  # noqa: E402 (ditto: the app registry)
from django.core import checks  # noqa: E402 (ditto)
from django.core.management import call_command  # noqa: E402 (ditto)
from django.core.management.base import CommandError  # noqa: E402 (ditto)
from django.test import override_settings  # noqa: E402 (ditto)

from twostep.integrations.django import conf  # noqa: E402 (ditto)
from twostep.integrations.django.apps import check_settings  # noqa: E402 (ditto)
from twostep.integrations.django.errors import message, status  # noqa: E402 (ditto)

PASSWORD = "a Django password"
CLOCK: ManualClock = settings.TWOSTEP["OPTIONS"]["clock"]
KEY = re.compile(r'<code class="key">([A-Z2-7 ]+)</code>')
CODES = re.compile(r"<li>([0-9a-z]{5}-[0-9a-z]{5})</li>")


@pytest.fixture(scope="module", autouse=True)
def database() -> None:
    call_command("migrate", verbosity=0, interactive=False)


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[ts.TwoStep]:
    """The project's service, on a manual clock, with an account made by the operator."""
    service = conf.service()
    account = service.create_account("Django Example")
    monkeypatch.setitem(settings.TWOSTEP, "ACCOUNT_ID", account.id)
    yield service
    get_user_model().objects.all().delete()


_names = iter(range(10**6))


def django_user(**extra: Any) -> tuple[str, str]:
    """A new Django user; its pk and username."""
    name = f"ada{next(_names)}"
    fields = {"email": f"{name}@example.test", **extra}
    user = get_user_model().objects.create_user(name, password=PASSWORD, **fields)
    return str(user.pk), name


def log_in(client: Client, name: str, password: str = PASSWORD, next_url: str = "/") -> Any:
    """Step 1 on the app's login page, following the redirect to the code page."""
    response = client.post(
        "/account/login/", {"username": name, "password": password, "next": next_url}
    )
    if response.status_code != 302:
        return response
    assert response["Location"].startswith("/account/code/?next=")
    return client.get(response["Location"])


def enrol(client: Client) -> Phone:
    """Turn 2FA on from the security page (R30); returns the phone."""
    page = client.post("/account/security/enable/").content.decode()
    key = KEY.search(page)
    assert key is not None
    phone = Phone(key.group(1).replace(" ", ""), CLOCK)
    done = client.post("/account/security/confirm/", {"code": phone.code()})
    assert done.status_code == 200
    assert len(CODES.findall(done.content.decode())) == 10
    return phone


def logged_in_with_2fa(service: ts.TwoStep) -> tuple[Client, Phone, str, str]:
    pk, name = django_user()
    client = Client()
    log_in(client, name)
    phone = enrol(client)
    CLOCK.advance(30)
    return client, phone, pk, name


# -- the login pair (R93, R94) ------------------------------------------------------------


def test_r94_a_django_user_without_2fa_gets_a_session_at_once(service: ts.TwoStep) -> None:
    pk, name = django_user()
    client = Client()
    first = client.get("/")
    assert (first.status_code, first["Location"]) == (302, "/account/login/?next=/")
    done = log_in(client, name)
    assert (done.status_code, done["Location"]) == (302, "/")
    home = client.get("/")
    assert home.status_code == 200
    assert f"{name}@example.test" in home.content.decode()
    session = service.check_session(client.session[conf.SESSION_KEY])
    assert session.user_id == pk  # R93: the Django user's pk is the twostep user's id


def test_r93_a_wrong_django_password_never_reaches_twostep(service: ts.TwoStep) -> None:
    pk, name = django_user()
    client = Client()
    response = log_in(client, name, "wrong")
    assert response.status_code == 200
    assert "did not match" in response.content.decode()
    assert client.get("/").status_code == 302
    with pytest.raises(ts.UnknownUser):  # not even imported
        service.begin_second_step(pk)


def test_r94_a_user_with_2fa_logs_in_with_the_django_password_then_a_code(
    service: ts.TwoStep,
) -> None:
    client, phone, pk, name = logged_in_with_2fa(service)
    client.post("/account/logout/")
    assert conf.SESSION_KEY not in client.session

    # Step 1 with Django's password: a code is asked for, and no page opens yet (R120).
    page = log_in(client, name, next_url="/account/security/")
    assert page.status_code == 200
    assert "Enter the code" in page.content.decode()
    assert client.get("/")["Location"] == "/account/code/?next=%2F"
    assert client.get("/account/security/").status_code == 302
    assert conf.SESSION_KEY not in client.session

    # A wrong code is refused, with the attempts left, and still no page.
    wrong = client.post("/account/code/", {"code": "000000", "next": "/account/security/"})
    assert wrong.status_code == 400
    assert "That code did not work. 4 attempts left." in wrong.content.decode()
    assert client.get("/").status_code == 302

    # The right code: a new Django session key, both sessions, and the page asked for.
    before = client.session.session_key
    CLOCK.advance(30)
    done = client.post("/account/code/", {"code": phone.code(), "next": "/account/security/"})
    assert (done.status_code, done["Location"]) == (302, "/account/security/")
    assert client.session.session_key != before  # R122: no session fixation across the steps
    assert client.get("/").status_code == 200
    assert service.check_session(client.session[conf.SESSION_KEY]).user_id == pk
    # Once logged in, the code page sends the user on.
    assert client.get("/account/code/?next=/")["Location"] == "/"


def test_r94_a_user_logged_in_by_any_django_means_still_owes_the_second_step(
    service: ts.TwoStep,
) -> None:
    # R120: Client.force_login stands for the admin's login, a password reset, any login().
    _, phone, pk, _ = logged_in_with_2fa(service)
    user = get_user_model().objects.get(pk=pk)
    client = Client()
    client.force_login(user)
    response = client.get("/account/security/?x=1")
    assert (response.status_code, response["Location"]) == (
        302,
        "/account/code/?next=%2Faccount%2Fsecurity%2F%3Fx%3D1",
    )
    # A POST is sent on without a next (it would not be replayed).
    assert client.post("/account/security/disable/")["Location"] == "/account/code/"
    page = client.get("/account/code/?next=/").content.decode()
    assert "Enter the code" in page
    CLOCK.advance(30)
    done = client.post("/account/code/", {"code": phone.code(), "next": "/"})
    assert done["Location"] == "/"
    assert client.get("/").status_code == 200


def test_r3_an_account_that_requires_2fa_enrols_inside_the_login(service: ts.TwoStep) -> None:
    _, name = django_user()
    owner = service.create_user(
        settings.TWOSTEP["ACCOUNT_ID"], "owner@example.test", "the owner's password", "owner"
    )
    step = service.login(owner.email, "the owner's password")
    assert isinstance(step, ts.LoggedIn)
    service.set_two_factor_required(step.session, True)

    client = Client()
    page = log_in(client, name).content.decode()
    assert "Set up two-step login" in page
    assert "<svg" in page
    key = KEY.search(page)
    assert key is not None
    assert client.get("/").status_code == 302  # no page before the enrolment is confirmed

    # A wrong code keeps the login; the page offers a new QR code.
    wrong = client.post("/account/code/", {"code": "123456"})
    assert wrong.status_code == 400
    assert "Start again with a new QR code" in wrong.content.decode()

    phone = Phone(key.group(1).replace(" ", ""), CLOCK)
    done = client.post("/account/code/", {"code": phone.code(), "next": "/"})
    assert done.status_code == 200
    body = done.content.decode()
    assert "Your backup codes" in body
    assert len(CODES.findall(body)) == 10
    assert 'href="data:text/plain;charset=utf-8,Backup%20codes' in body
    assert done["Cache-Control"].startswith("max-age=0")  # R122
    assert "no-store" in done["Cache-Control"]
    assert client.get("/").status_code == 200
    assert service.check_session(client.session[conf.SESSION_KEY]).two_factor_enabled


def test_r6_an_expired_login_starts_again(service: ts.TwoStep) -> None:
    client, phone, _, name = logged_in_with_2fa(service)
    client.post("/account/logout/")
    log_in(client, name)
    CLOCK.advance(minutes=6)  # past the challenge's life
    expired = client.post("/account/code/", {"code": phone.code()})
    assert expired.status_code == 400
    assert "This step has expired" in expired.content.decode()
    assert "Start again" in expired.content.decode()
    assert conf.CHALLENGE_KEY not in client.session
    # Without a login under way, a code is not taken: the step begins again.
    assert client.post("/account/code/", {"code": phone.code()})["Location"].startswith(
        "/account/code/"
    )


def test_the_code_page_needs_step_one(service: ts.TwoStep) -> None:
    client = Client()
    response = client.get("/account/code/?next=/account/security/")
    assert response["Location"] == "/account/login/?next=%2Faccount%2Fsecurity%2F"
    # An unsafe next is not followed.
    _, name = django_user()
    done = log_in(client, name, next_url="https://evil.example/")
    assert done["Location"] == "/"


def test_r93_a_user_without_an_email_is_told_so(service: ts.TwoStep) -> None:
    # R123
    _, name = django_user(email="")
    page = log_in(Client(), name)
    assert page.status_code == 400
    assert "Your user has no email address." in page.content.decode()


def test_r93_with_import_off_an_unknown_user_is_refused(
    service: ts.TwoStep, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(settings.TWOSTEP, "IMPORT_USERS", False)
    _, name = django_user()
    page = log_in(Client(), name)
    assert page.status_code == 404
    assert "No such user." in page.content.decode()


def test_r6_a_throttled_second_step_says_when_to_try_again(service: ts.TwoStep) -> None:
    client, _, _, name = logged_in_with_2fa(service)
    client.post("/account/logout/")
    log_in(client, name)
    for _ in range(5):  # the challenge dies after five wrong codes (R6)
        client.post("/account/code/", {"code": "000000"})
    for _ in range(3):
        log_in(client, name)
        client.post("/account/code/", {"code": "000000"})
    page = log_in(client, name)
    assert page.status_code == 429
    assert re.search(r"Too many attempts: try again in \d+ seconds?\.", page.content.decode())


def test_r21_r41_an_ended_twostep_session_logs_out_of_django(service: ts.TwoStep) -> None:
    # R121
    client, _, pk, _ = logged_in_with_2fa(service)
    service.logout(client.session[conf.SESSION_KEY])  # e.g. an owner's reset (R41)
    response = client.get("/")
    assert response["Location"] == "/account/login/?next=%2F"
    assert "_auth_user_id" not in client.session  # Django's session ended too
    assert pk


def test_logout_ends_both_sessions_and_is_a_post(service: ts.TwoStep) -> None:
    client, _, _, _ = logged_in_with_2fa(service)
    token = client.session[conf.SESSION_KEY]
    assert client.get("/account/logout/").status_code == 405
    assert client.post("/account/logout/")["Location"] == "/account/login/"
    with pytest.raises(ts.SessionInvalid):
        service.check_session(token)
    assert client.get("/").status_code == 302


# -- the security page (R5, R10, R30-R32, R40) ---------------------------------------------


def test_r30_r31_r5_the_security_page_turns_2fa_on_and_off(service: ts.TwoStep) -> None:
    client, phone, _, _ = logged_in_with_2fa(service)
    page = client.get("/account/security/").content.decode()
    assert "Two-step login is on." in page
    assert "10 backup codes left." in page

    # R5: new backup codes, with a code.
    CLOCK.advance(30)
    fresh = client.post("/account/security/backup-codes/", {"code": phone.code()})
    assert len(CODES.findall(fresh.content.decode())) == 10
    # A wrong code is refused on the page itself.
    refused = client.post("/account/security/disable/", {"code": "000000"})
    assert refused.status_code == 400
    assert "That code did not work." in refused.content.decode()
    # R31: off with a code.
    CLOCK.advance(30)
    off = client.post("/account/security/disable/", {"code": phone.code()})
    assert off.status_code == 200
    assert "Two-step login is off." in off.content.decode()
    assert not service.two_factor_status(client.session[conf.SESSION_KEY]).enabled


def test_r10_a_wrong_first_code_offers_a_new_qr_code(service: ts.TwoStep) -> None:
    _, name = django_user()
    client = Client()
    log_in(client, name)
    client.post("/account/security/enable/")
    wrong = client.post("/account/security/confirm/", {"code": "000000"})
    assert wrong.status_code == 400
    assert "Start again with a new QR code" in wrong.content.decode()
    again = client.post("/account/security/enable/").content.decode()
    assert KEY.search(again) is not None
    assert "<svg" in again


def test_r32_r40_with_2fa_required_it_stays_on_and_moves_to_a_new_phone(
    service: ts.TwoStep,
) -> None:
    client, phone, pk, _ = logged_in_with_2fa(service)
    get_user_model().objects.filter(pk=pk).update(is_superuser=True)
    owner_token = client.session[conf.SESSION_KEY]
    # R123: imported as a member, at the first second step, before becoming a superuser.
    assert service.check_session(owner_token).role == ts.Role.MEMBER
    # The owner of the account requires 2FA; this user logs in again.
    owner = service.create_user(
        settings.TWOSTEP["ACCOUNT_ID"], "boss@example.test", "the owner's password", "owner"
    )
    step = service.login(owner.email, "the owner's password")
    assert isinstance(step, ts.LoggedIn)
    service.set_two_factor_required(step.session, True)
    assert client.get("/account/security/").status_code == 302  # R21: logged out
    _, name = pk, get_user_model().objects.get(pk=pk).get_username()
    log_in(client, name)
    CLOCK.advance(30)
    client.post("/account/code/", {"code": phone.code()})
    page = client.get("/account/security/").content.decode()
    assert "Your account requires two-step login." in page
    assert "security/disable" not in page
    CLOCK.advance(30)
    refused = client.post("/account/security/disable/", {"code": phone.code()})
    assert refused.status_code == 403
    assert "it cannot be turned off" in refused.content.decode()

    # R40: a new phone; the old one works until the new one's first code.
    page = client.post("/account/security/new-phone/", {"code": phone.code()}).content.decode()
    key = KEY.search(page)
    assert key is not None
    new_phone = Phone(key.group(1).replace(" ", ""), CLOCK)
    CLOCK.advance(30)
    done = client.post("/account/security/confirm/", {"code": new_phone.code()})
    assert "Your backup codes" in done.content.decode()


# -- administration (R20-R22, R41, R50, R60) -----------------------------------------------


def test_r50_r41_r60_an_owner_sees_who_has_2fa_resets_a_user_and_reads_the_activity(
    service: ts.TwoStep,
) -> None:
    member, phone, member_pk, _ = logged_in_with_2fa(service)
    _, boss = django_user(is_superuser=True, is_staff=True)  # R123: imported as an owner
    owner = Client()
    log_in(owner, boss)

    page = owner.get("/account/administration/").content.decode()
    assert "Two-step login is optional." in page
    assert f"{boss}@example.test" in page
    row = re.search(r"<td>(ada\d+)@example.test</td><td>member</td>\s*<td>on</td>", page)
    assert row is not None
    assert f'name="user_id" value="{member_pk}"' in page

    # R41: the owner resets the member, whose sessions end.
    reset = owner.post("/account/administration/reset/", {"user_id": member_pk})
    assert "Two-step login was reset." in reset.content.decode()
    assert member.get("/")["Location"] == "/account/login/?next=%2F"
    refused = owner.post("/account/administration/reset/", {"user_id": "nobody"})
    assert refused.status_code in {400, 403, 404}
    assert 'role="alert"' in refused.content.decode()

    # R60: the activity says who did what to whom, with emails.
    activity = owner.get("/account/activity/").content.decode()
    assert re.search(
        rf"<td>{boss}@example.test</td><td>two_factor_reset</td><td>ada\d+@example.test</td>",
        activity,
    )
    assert phone


def test_r60_the_activity_is_paged(service: ts.TwoStep, monkeypatch: pytest.MonkeyPatch) -> None:
    from twostep.integrations.django import views

    monkeypatch.setattr(views, "ACTIVITY_PAGE", 2)
    _, boss = django_user(is_superuser=True)
    owner = Client()
    log_in(owner, boss)
    first = owner.get("/account/activity/").content.decode()
    cursor = re.search(r'href="\?cursor=([^"]+)"', first)
    assert cursor is not None
    second = owner.get(f"/account/activity/?cursor={cursor.group(1)}")
    assert second.status_code == 200
    assert second.content.decode() != first
    assert owner.get("/account/activity/?cursor=nonsense").status_code == 400


def test_r20_r21_r22_an_owner_requires_2fa_and_everyone_is_logged_out(
    service: ts.TwoStep,
) -> None:
    _, boss = django_user(is_superuser=True)
    owner = Client()
    log_in(owner, boss)
    enrol(owner)
    done = owner.post("/account/administration/require/", {"required": "on"})
    assert done["Location"] == "/account/login/"
    assert "_auth_user_id" not in owner.session
    assert owner.get("/account/administration/").status_code == 302


def test_r50_a_member_is_refused_administration(service: ts.TwoStep) -> None:
    _, name = django_user()
    client = Client()
    log_in(client, name)
    page = client.get("/account/administration/")
    assert page.status_code == 403
    assert "Only an owner or a manager" in page.content.decode()
    assert "Administration" not in client.get("/account/security/").content.decode()
    assert client.get("/account/activity/").status_code == 403
    refused = client.post("/account/administration/require/", {"required": "on"})
    assert refused.status_code == 403


def test_r22_an_owner_makes_2fa_optional_again(service: ts.TwoStep) -> None:
    _, boss = django_user(is_superuser=True)
    owner = Client()
    log_in(owner, boss)
    phone = enrol(owner)
    owner.post("/account/administration/require/", {"required": "on"})
    owner = Client()
    log_in(owner, boss)
    CLOCK.advance(30)
    owner.post("/account/code/", {"code": phone.code()})
    page = owner.get("/account/administration/").content.decode()
    assert "Two-step login is required for everyone." in page
    done = owner.post("/account/administration/require/", {"required": "off"})
    assert "Two-step login is optional for the account." in done.content.decode()


# -- CSRF, cookies, caching -----------------------------------------------------------------


def test_every_form_needs_django_s_csrf_token(service: ts.TwoStep) -> None:
    # R122
    _, name = django_user()
    client = Client(enforce_csrf_checks=True)
    login = client.get("/account/login/")
    assert 'name="csrfmiddlewaretoken"' in login.content.decode()
    refused = client.post("/account/login/", {"username": name, "password": PASSWORD})
    assert refused.status_code == 403
    token = client.cookies["csrftoken"].value
    done = client.post(
        "/account/login/", {"username": name, "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert done.status_code == 302
    client.get(done["Location"])
    assert client.post("/account/security/enable/").status_code == 403


def test_cookies_are_secure_by_default(service: ts.TwoStep) -> None:
    # R124: the app set them; the project's settings do not.
    assert not settings.is_overridden("SESSION_COOKIE_SECURE")
    assert settings.SESSION_COOKIE_SECURE is True
    assert settings.CSRF_COOKIE_SECURE is True
    _, name = django_user()
    client = Client()
    response = client.post("/account/login/", {"username": name, "password": PASSWORD})
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["secure"] is True
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


def test_secure_cookies_can_be_turned_off_for_local_http(monkeypatch: pytest.MonkeyPatch) -> None:
    from twostep.integrations.django.apps import secure_cookies

    monkeypatch.setitem(settings.TWOSTEP, "SECURE_COOKIES", False)
    monkeypatch.setattr(settings, "SESSION_COOKIE_SECURE", False)
    secure_cookies()
    assert settings.SESSION_COOKIE_SECURE is False
    warnings = [m.id for m in check_settings()]  # R124
    assert warnings.count("twostep.W001") == 1  # the session cookie's; CSRF's is secure


# -- settings and checks ------------------------------------------------------------------


def test_the_checks_pass_for_the_project() -> None:
    assert check_settings() == []
    assert not [m for m in checks.run_checks() if m.id and m.id.startswith("twostep.")]


@pytest.mark.parametrize(
    ("twostep", "says"),
    [
        (None, "TWOSTEP must be a dict"),
        ({"ISSUER": "Acme", "DATABASE": "x.db", "COLOUR": 1}, "unknown key(s) COLOUR"),
        ({"ISSUER": "Acme"}, "TWOSTEP['DATABASE']"),
        ({"DATABASE": "x.db"}, "TWOSTEP['ISSUER']"),
    ],
)
def test_a_wrong_setting_is_a_check_error(
    twostep: object, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWOSTEP_DATABASE", raising=False)
    with override_settings(TWOSTEP=twostep):
        (error,) = check_settings()
    assert error.id == "twostep.E001"
    assert says in error.msg


def test_the_middleware_must_follow_authentication() -> None:
    ours = "twostep.integrations.django.middleware.TwoStepMiddleware"
    wrong = [m for m in settings.MIDDLEWARE if m != ours]
    with override_settings(MIDDLEWARE=[ours, *wrong]):
        assert [m.id for m in check_settings()] == ["twostep.E002"]


def test_the_database_may_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    monkeypatch.setenv("TWOSTEP_DATABASE", str(tmp_path / "env.db"))
    with override_settings(TWOSTEP={"ISSUER": "Acme", "EXEMPT_PATHS": "/static/"}):
        found = conf.config()
    assert found.database == str(tmp_path / "env.db")
    assert found.exempt_paths == ("/static/",)
    assert found.login_redirect_url == settings.LOGIN_REDIRECT_URL


def test_exempt_paths_open_without_the_second_step(service: ts.TwoStep) -> None:
    # R120
    pk, _ = django_user()
    client = Client()
    client.force_login(get_user_model().objects.get(pk=pk))
    with override_settings(TWOSTEP={**settings.TWOSTEP, "EXEMPT_PATHS": ["/nothing-here/"]}):
        assert client.get("/nothing-here/x").status_code == 404  # let through
        assert client.get("/").status_code == 302  # not exempt


def test_a_store_that_cannot_open_leaves_no_service(tmp_path: Any) -> None:
    bad = {**settings.TWOSTEP, "ISSUER": "Acme: Corp"}
    with override_settings(TWOSTEP=bad), pytest.raises(ts.InvalidInput):
        conf.service()
    assert conf.service().issuer == "Django Example"  # the settings are read again


# -- manage.py twostep -----------------------------------------------------------------------


def manage(*words: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("twostep", *words, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_manage_py_twostep_runs_the_cli_on_the_project_database(
    service: ts.TwoStep, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .django_project.settings import KEY_LINE

    monkeypatch.setenv("TWOSTEP_KEYS", KEY_LINE)  # where a project keeps its keys
    out, _ = manage("create-account", "Globex")
    account_id = out.strip()
    out, err = manage("list-accounts")
    assert account_id in out
    assert "Globex" in out
    assert err.endswith("account(s)\n")
    _, name = django_user()
    log_in(Client(), name)  # imported at the first second step
    out, _ = manage("list-users", "--account", settings.TWOSTEP["ACCOUNT_ID"])
    assert f"{name}@example.test" in out
    out, _ = manage("audit", "--account", settings.TWOSTEP["ACCOUNT_ID"], "--limit", "3")
    assert f"{name}@example.test: login: success" in out
    with pytest.raises(CommandError, match="status 1"):
        manage("reset-2fa", "nobody@example.test")


def test_manage_py_twostep_import_django_users(service: ts.TwoStep) -> None:
    pk, _ = django_user()
    django_user(email="")
    get_user_model().objects.filter(pk=django_user()[0]).update(is_active=False)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="1 user"):
        call_command("twostep", "import-django-users", stdout=out, stderr=err)
    assert out.getvalue() == "1 user(s) imported, 0 had one, 1 failed\n"
    assert "no email" in err.getvalue()
    assert isinstance(service.begin_second_step(pk), ts.LoggedIn)  # R93: imported, no 2FA
    get_user_model().objects.filter(email="").delete()
    out, _ = manage("import-django-users")
    assert out == "0 user(s) imported, 1 had one, 0 failed\n"


# -- errors and translations ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "text", "code"),
    [
        (ts.InvalidCode("x", reason="replayed"), "That code was used already", 400),
        (ts.InvalidCode("x", reason="wrong", attempts_left=1), "1 attempt left.", 400),
        (ts.Throttled("x", retry_after=1, scope="user"), "try again in 1 second.", 429),
        (ts.NotAllowed("x", reason="owner_only", rule="R22"), "Only an owner", 403),
        (ts.NotAllowed("x", reason="brand_new", rule="R99"), "not allowed", 403),
        (ts.SessionInvalid("x", reason="brand_new"), "Your session has ended", 400),
        (ts.StoreError("x"), "unavailable", 503),
        (ts.InvalidInput("x", reason="brand_new"), "not valid", 400),
        (ts.EmailTaken("x", reason="brand_new"), "Something went wrong", 400),
    ],
)
def test_every_error_has_words_and_a_status(error: ts.TwoStepError, text: str, code: int) -> None:
    assert text in message(error)
    assert status(error) == code


def test_r61_french_users_read_french(service: ts.TwoStep) -> None:
    from django.utils import translation

    with translation.override("fr"):
        assert message(ts.InvalidCode("x", reason="wrong", attempts_left=2)) == (
            "Ce code n'a pas fonctionné. Il reste 2 essais."
        )
    _, name = django_user()
    client = Client(headers={"accept-language": "fr"})
    page = client.get("/account/login/").content.decode()
    assert '<html lang="fr">' in page
    assert "Se connecter" in page
    log_in(client, name)
    assert (
        "La connexion en deux étapes est désactivée."
        in client.get("/account/security/").content.decode()
    )


def po_messages(path: Path) -> dict[str, str]:
    """Msgid (the first form of a plural) -> msgstr (its first form), from a .po file."""
    found: dict[str, str] = {}
    for entry in path.read_text(encoding="utf-8").split("\n\n"):
        parts: dict[str, str] = {}
        key = ""
        for line in entry.splitlines():
            if line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            if line.startswith('"'):
                parts[key] += ast.literal_eval(line)
            else:
                key = word
                parts[key] = ast.literal_eval(rest)
        if parts.get("msgid"):
            found[parts["msgid"]] = parts.get("msgstr", parts.get("msgstr[0]", ""))
    return found


@pytest.mark.parametrize("language", ["en", "fr"])
def test_r61_the_catalogue_is_complete_and_compiled(language: str) -> None:
    import gettext

    import twostep.integrations.django as app

    folder = Path(app.__file__).parent / "locale" / language / "LC_MESSAGES"
    messages = po_messages(folder / "django.po")
    assert len(messages) > 50
    assert all(messages.values())  # every message translated
    with (folder / "django.mo").open("rb") as compiled:
        catalogue = gettext.GNUTranslations(compiled)
    for msgid, msgstr in messages.items():  # the .mo holds what the .po says
        assert catalogue.gettext(msgid) == msgstr


@pytest.mark.postgres
def test_a_postgresql_dsn_makes_a_postgres_store(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import pgserver

    from .cli_helpers import as_url

    dsn, schema = pgserver.new_schema()
    try:
        url = as_url(dsn)
        with override_settings(TWOSTEP={**settings.TWOSTEP, "DATABASE": url}):
            service = conf.service()
            assert type(service._context.store).__name__ == "PostgresStore"
            account = service.create_account("On PostgreSQL")
            monkeypatch.setitem(settings.TWOSTEP, "ACCOUNT_ID", account.id)
            _, name = django_user()
            done = log_in(Client(), name)
            assert done.status_code == 302
            assert service.check_session(done.client.session[conf.SESSION_KEY]).account_id == (
                account.id
            )
    finally:
        conf.reset()
        pgserver.drop_schema(schema)
        get_user_model().objects.all().delete()


def test_r121_twostep_required_checks_the_session_without_the_middleware(
    service: ts.TwoStep,
) -> None:
    client, _, _, _ = logged_in_with_2fa(service)
    ours = "twostep.integrations.django.middleware.TwoStepMiddleware"
    without = [m for m in settings.MIDDLEWARE if m != ours]
    with override_settings(MIDDLEWARE=without):
        bare = Client()  # a new client loads the middleware of the settings now in force
        bare.cookies = client.cookies
        page = bare.get("/account/security/")
        assert page.status_code == 200  # the decorator's own check
        assert not hasattr(page.wsgi_request, "twostep")  # no middleware ran
        service.logout(bare.session[conf.SESSION_KEY])
        ended = bare.get("/account/security/")
        assert ended["Location"] == "/account/login/?next=%2Faccount%2Fsecurity%2F"
        assert "_auth_user_id" not in bare.session  # Django's session ended too


def test_r123_an_email_taken_in_twostep_is_refused_and_nothing_is_imported(
    service: ts.TwoStep,
) -> None:
    pk, name = django_user()
    service.create_user(settings.TWOSTEP["ACCOUNT_ID"], f"{name}@example.test", PASSWORD)
    page = log_in(Client(), name)
    assert page.status_code == 400
    assert 'role="alert"' in page.content.decode()
    with pytest.raises(ts.UnknownUser):
        service.begin_second_step(pk)


def test_r123_an_email_twostep_cannot_take_is_refused(service: ts.TwoStep) -> None:
    pk, name = django_user(email="not an email")
    page = log_in(Client(), name)
    assert page.status_code == 400
    assert "That input is not valid." in page.content.decode()
    with pytest.raises(ts.UnknownUser):
        service.begin_second_step(pk)


def test_r99_an_owner_gives_a_fresh_code_before_resetting_a_user(service: ts.TwoStep) -> None:
    _, _, member_pk, _ = logged_in_with_2fa(service)
    _, boss = django_user(is_superuser=True)
    owner = Client()
    log_in(owner, boss)
    phone = enrol(owner)
    CLOCK.advance(hours=2)  # the code of the enrolment is no longer fresh

    asked = owner.post("/account/administration/reset/", {"user_id": member_pk})
    assert asked.status_code == 403
    page = asked.content.decode()
    assert "Confirm with a code from your app first" in page
    assert 'action="/account/administration/step-up/"' in page
    wrong = owner.post("/account/administration/step-up/", {"code": "000000"})
    assert wrong.status_code == 400
    assert 'action="/account/administration/step-up/"' in wrong.content.decode()
    done = owner.post("/account/administration/step-up/", {"code": phone.code()})
    assert "Code accepted" in done.content.decode()
    reset = owner.post("/account/administration/reset/", {"user_id": member_pk})
    assert "Two-step login was reset." in reset.content.decode()


def test_the_guide_shows_the_host_code_in_under_30_lines() -> None:
    from .test_docs import GUIDE, blocks

    section = GUIDE.read_text().split("### Adding the second step to a Django project")[1]
    section = section.split("\n## ")[0]
    host = [b for b in blocks(GUIDE, "python") + blocks(GUIDE, "sh") if b in section]
    assert host
    assert sum(len(b.splitlines()) for b in host) < 30
    settings_block = next(b for b in host if "TWOSTEP = {" in b)
    for name in ("twostep.integrations.django", "TwoStepMiddleware", "twostep:login"):
        assert name in settings_block
    assert 'include("twostep.integrations.django.urls")' in "".join(host)
