"""A real Django project (tests/django_project) with twostep as its second step (R93, R94).

Django's test client drives it: Django's own ``authenticate`` checks the password, then
twostep asks for the code, or for an enrolment when the account requires 2FA, and only
then do Django's and twostep's sessions begin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.test import Client

import twostep as ts
from twostep.testing import ManualClock, Phone

from .django_project import setup

setup()

from django.conf import settings  # noqa: E402 (after setup(): settings of the project)
from django.contrib.auth import get_user_model  # noqa: E402 (ditto: the app registry)
from django.core.management import call_command  # noqa: E402 (ditto)

from .django_project.glue import twostep  # noqa: E402 (ditto)

PASSWORD = "a Django password"
CLOCK: ManualClock = settings.TWOSTEP_OPTIONS["clock"]


@pytest.fixture(scope="module", autouse=True)
def database() -> None:
    call_command("migrate", verbosity=0, interactive=False)


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[ts.TwoStep]:
    """The project's service, on a manual clock, with an account made by the operator."""
    service = twostep()
    account = service.create_account("Django Example")
    monkeypatch.setattr(settings, "TWOSTEP_ACCOUNT_ID", account.id)
    yield service
    get_user_model().objects.all().delete()


_names = iter(range(10**6))


def django_user() -> tuple[str, str]:
    """A new Django user (the post_save signal makes its twostep user); its pk and name."""
    name = f"ada{next(_names)}"
    user = get_user_model().objects.create_user(name, f"{name}@example.test", PASSWORD)
    return str(user.pk), name


def step_one(client: Client, name: str, password: str = PASSWORD) -> str:
    response = client.post("/login/", {"username": name, "password": password})
    assert response.status_code in {200, 302, 401}
    return response.content.decode()


def test_r94_a_django_user_without_2fa_gets_a_session_at_once(service: ts.TwoStep) -> None:
    pk, name = django_user()
    client = Client()
    assert client.get("/").status_code == 302
    response = client.post("/login/", {"username": name, "password": PASSWORD})
    assert response.status_code == 302
    home = client.get("/")
    assert home.status_code == 200
    assert f"{name}@example.test" in home.content.decode()
    assert service.check_session(client.session["twostep_session"]).user_id == pk


def test_r93_a_wrong_django_password_never_reaches_twostep(service: ts.TwoStep) -> None:
    _, name = django_user()
    client = Client()
    response = client.post("/login/", {"username": name, "password": "wrong"})
    assert response.status_code == 401
    assert client.get("/").status_code == 302


def test_r94_a_user_with_2fa_logs_in_with_the_django_password_then_a_code(
    service: ts.TwoStep,
) -> None:
    pk, name = django_user()
    client = Client()
    step_one(client, name)
    session = client.session["twostep_session"]
    enrollment = service.begin_enrollment(session)
    phone = Phone(enrollment.secret, CLOCK)
    service.confirm_enrollment(session, phone.code())
    client.logout()

    # Step 1 with Django's password: a code is asked for, and no session exists yet.
    page = step_one(client, name)
    assert "Enter the code" in page
    assert client.get("/").status_code == 302
    assert "twostep_session" not in client.session

    # A wrong code is refused, and still no session.
    wrong = client.post("/code/", {"code": "000000"})
    assert wrong.status_code == 400
    assert "did not work" in wrong.content.decode()
    assert client.get("/").status_code == 302

    # The right code: both sessions, and the page behind them.
    CLOCK.advance(30)
    assert client.post("/code/", {"code": phone.code()}).status_code == 302
    assert client.get("/").status_code == 200
    assert service.check_session(client.session["twostep_session"]).user_id == pk


def test_r94_an_account_that_requires_2fa_gets_no_session_without_an_enrolment(
    service: ts.TwoStep,
) -> None:
    _, name = django_user()
    # An owner who logs in with a twostep password requires 2FA for the account (R20).
    account_id = settings.TWOSTEP_ACCOUNT_ID
    service.create_user(account_id, "owner@example.test", "the owner's password", "owner")
    owner = service.login("owner@example.test", "the owner's password")
    assert isinstance(owner, ts.LoggedIn)
    service.set_two_factor_required(owner.session, True)

    client = Client()
    page = step_one(client, name)
    assert "Scan this code" in page
    secret = re.search(r"type the key ([A-Z2-7 ]+)</p>", page)
    assert secret is not None
    # No session before the enrolment is confirmed, whatever page is asked for.
    assert client.get("/").status_code == 302
    assert client.post("/code/", {"code": "123456"}).status_code == 400
    assert client.get("/").status_code == 302
    # Logging in again restarts the enrolment: still no session.
    page = step_one(client, name)
    secret = re.search(r"type the key ([A-Z2-7 ]+)</p>", page)
    assert secret is not None
    assert client.get("/").status_code == 302

    phone = Phone(secret.group(1).replace(" ", ""), CLOCK)
    done = client.post("/code/", {"code": phone.code()})
    assert done.status_code == 200
    assert "Your backup codes" in done.content.decode()
    assert client.get("/").status_code == 200
    assert service.check_session(client.session["twostep_session"]).two_factor_enabled
