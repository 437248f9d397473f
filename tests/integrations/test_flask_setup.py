"""The Flask set-up page after a wrong first code: the same QR code and key, not a new one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

import twostep as ts
from twostep.integrations.flask import TwoStepFlask
from twostep.integrations.flask._setups import PendingSetups
from twostep.testing import ManualClock, Phone

from .conftest import MEMBER, OWNER, PASSWORD
from .test_flask import client, host_app, post, text


@pytest.fixture
def app(host_service: ts.TwoStep) -> Flask:
    return host_app(host_service)


class Shown:
    """What a set-up page shows: the key as text, the QR code and the otpauth link."""

    def __init__(self, page: str) -> None:
        self.page = page
        self.secret = page.split('id="secret-key">')[1].split("<", maxsplit=1)[0].replace(" ", "")
        self.qr = page.split('<div id="qr">')[1].split("</div>", maxsplit=1)[0]
        self.uri = page.split('id="otpauth" href="')[1].split('"', maxsplit=1)[0]

    def same_enrolment_as(self, other: Shown) -> bool:
        return (self.secret, self.qr, self.uri) == (other.secret, other.qr, other.uri)


def wrong_code(phone: Phone) -> str:
    """A well-formed code that matches no step of the drift window."""
    window = {phone.code(offset_steps=k) for k in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in window)


def session_cookie(c: FlaskClient) -> str:
    """The session cookie, raw and as Flask reads it (signed, not encrypted)."""
    raw = c.get_cookie("__Host-session")
    assert raw is not None
    with c.session_transaction() as cookie:
        return f"{raw.value} {dict(cookie)!r}"


def require_two_factor(service: ts.TwoStep) -> None:
    owner = service.login(OWNER, PASSWORD)
    assert isinstance(owner, ts.LoggedIn)
    service.set_two_factor_required(owner.session, required=True)


def test_r11_a_wrong_code_on_the_security_page_shows_the_same_qr_code_again(
    app: Flask, clock: ManualClock
) -> None:
    c = client(app)
    post(c, "/login", email=MEMBER, password=PASSWORD)
    first = Shown(text(post(c, "/security/enable")))
    assert first.uri.startswith("otpauth://totp/Host:member@host.example?secret=")
    assert first.secret in first.uri
    phone = Phone(first.secret, clock)

    again = Shown(text(post(c, "/security/confirm", code=wrong_code(phone))))

    assert "That code is not right." in again.page
    assert again.same_enrolment_as(first)  # R11: the pending secret is unchanged
    assert first.secret not in session_cookie(c)  # the key stays on the server
    done = text(post(c, "/security/confirm", code=phone.code()))
    assert "Your backup codes" in done
    assert "<strong>on</strong>" in text(c.get("/security"))


def test_r11_a_wrong_code_for_a_new_phone_shows_the_same_qr_code_again(
    app: Flask, host_service: ts.TwoStep, clock: ManualClock
) -> None:
    require_two_factor(host_service)  # R40: a reset is for accounts that require 2FA
    c = client(app)
    first = Shown(text(post(c, "/login", email=MEMBER, password=PASSWORD)))  # R3
    old_phone = Phone(first.secret, clock)
    post(c, "/login/setup", code=old_phone.code())
    clock.advance(30)
    new = Shown(text(post(c, "/security/reset", code=old_phone.code())))
    assert "Set up your new phone." in new.page
    new_phone = Phone(new.secret, clock)

    again = Shown(text(post(c, "/security/confirm", code=wrong_code(new_phone))))

    assert "That code is not right." in again.page
    assert "Set up your new phone." in again.page
    assert again.same_enrolment_as(new)
    assert new.secret not in session_cookie(c)
    assert "Your backup codes" in text(post(c, "/security/confirm", code=new_phone.code()))


def test_r3_r11_a_wrong_code_in_the_login_enrolment_shows_the_same_qr_code_again(
    app: Flask, host_service: ts.TwoStep, clock: ManualClock
) -> None:
    require_two_factor(host_service)
    c = client(app)
    first = Shown(text(post(c, "/login", email=MEMBER, password=PASSWORD)))
    assert "Your account requires two-step verification" in first.page
    phone = Phone(first.secret, clock)

    again = Shown(text(post(c, "/login/setup", code=wrong_code(phone))))

    assert "That code is not right." in again.page
    assert "Your account requires two-step verification" in again.page
    assert again.same_enrolment_as(first)
    assert first.secret not in session_cookie(c)
    assert "Your backup codes" in text(post(c, "/login/setup", code=phone.code()))
    assert "<strong>on</strong>" in text(c.get("/security"))


def test_another_browser_of_the_same_user_is_not_shown_the_key(
    app: Flask, clock: ManualClock
) -> None:
    started, other = client(app), client(app)
    post(started, "/login", email=MEMBER, password=PASSWORD)
    post(other, "/login", email=MEMBER, password=PASSWORD)
    shown = Shown(text(post(started, "/security/enable")))

    page = text(post(other, "/security/confirm", code=wrong_code(Phone(shown.secret, clock))))

    assert "That code is not right." in page
    assert shown.secret.lower() not in page.lower()
    assert 'id="qr"' not in page
    assert "Start again with a new key" in page


def test_without_the_enrolment_in_this_process_the_page_asks_for_the_code_alone(
    host_service: ts.TwoStep, clock: ManualClock
) -> None:
    # E.g. another worker process answered: the code still works, or a new key is offered.
    require_two_factor(host_service)
    app = host_app(host_service)
    c = client(app)
    first = Shown(text(post(c, "/login", email=MEMBER, password=PASSWORD)))
    extension: TwoStepFlask = app.extensions["twostep"]
    extension.setups = PendingSetups(timedelta(minutes=10))
    phone = Phone(first.secret, clock)

    page = text(post(c, "/login/setup", code=wrong_code(phone)))

    assert 'id="qr"' not in page
    assert "Log in again to get a new one." in page
    assert "Your backup codes" in text(post(c, "/login/setup", code=phone.code()))


def test_a_confirmed_or_expired_enrolment_is_no_longer_kept(
    app: Flask, host_service: ts.TwoStep, clock: ManualClock
) -> None:
    extension: TwoStepFlask = app.extensions["twostep"]
    c = client(app)
    post(c, "/login", email=MEMBER, password=PASSWORD)
    shown = Shown(text(post(c, "/security/enable")))
    assert len(extension.setups) == 1
    post(c, "/security/confirm", code=Phone(shown.secret, clock).code())
    assert len(extension.setups) == 0

    require_two_factor(host_service)
    late = client(app)
    first = Shown(text(post(late, "/login", email=OWNER, password=PASSWORD)))
    assert len(extension.setups) == 1
    clock.advance(host_service.settings.enrollment_ttl.total_seconds() + 1)  # its life
    page = post(late, "/login/setup", code=Phone(first.secret, clock).code())
    assert page.request.path == "/login"  # R6: log in again, for a new key
    assert len(extension.setups) == 0


# -- the keeping itself -------------------------------------------------------------------


KEY = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # a made-up TOTP key, in no store


def enrollment(secret: str = KEY) -> ts.Enrollment:
    return ts.Enrollment(
        secret=secret,
        uri=f"otpauth://totp/Host:a@host.example?secret={secret}",
        issuer="Host",
        label="a@host.example",
        expires_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_an_enrolment_is_kept_for_its_lifetime_only() -> None:
    now = [0.0]
    setups = PendingSetups(timedelta(minutes=10), clock=lambda: now[0])
    setups.keep("challenge-a", enrollment(), "login")
    now[0] = 600.0
    found = setups.find("challenge-a")
    assert found is not None
    assert (found.enrollment, found.mode) == (enrollment(), "login")
    assert setups.find("challenge-b") is None
    now[0] = 600.5
    assert setups.find("challenge-a") is None
    assert len(setups) == 0


def test_keeping_drops_the_expired_and_then_the_oldest_beyond_the_limit() -> None:
    now = [0.0]
    setups = PendingSetups(timedelta(seconds=60), limit=2, clock=lambda: now[0])
    setups.keep("a", enrollment(), "enable")
    now[0] = 30.0
    setups.keep("b", enrollment(), "enable")
    now[0] = 61.0
    setups.keep("c", enrollment(), "enable")  # "a" is past its lifetime
    assert [setups.find(o) is not None for o in "abc"] == [False, True, True]
    setups.keep("d", enrollment(), "reset")  # over the limit: the oldest, "b", goes
    assert [setups.find(o) is not None for o in "bcd"] == [False, True, True]
    setups.keep("c", enrollment("KRSXG5CTMVRXEZLU"), "reset")  # replaced, now the newest
    setups.keep("e", enrollment(), "enable")
    kept = setups.find("c")
    assert [setups.find(o) is not None for o in "de"] == [False, True]
    assert kept is not None
    assert kept.enrollment.secret == "KRSXG5CTMVRXEZLU"
    setups.drop("c")
    setups.drop("unknown")
    assert len(setups) == 1


def test_what_is_kept_names_no_secret_nor_owner() -> None:
    setups = PendingSetups(timedelta(minutes=10))
    setups.keep("the-session-token", enrollment(), "enable")
    assert repr(setups) == "PendingSetups(1 kept)"
    assert "the-session-token" not in repr(vars(setups))
