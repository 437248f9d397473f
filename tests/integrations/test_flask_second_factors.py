"""The Flask adapter's grace period, remembered devices and security keys (R95-R109).

Through Flask's test client; ``tests/authenticator.py`` plays the browser's security key,
giving the JSON that ``JSON.stringify(credential.toJSON())`` gives in a page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import twostep as ts
from twostep.integrations.flask import CSRF_HEADER, CSRF_KEY, TwoStepFlask
from twostep.testing import FAST, ManualClock, Phone

from ..authenticator import ORIGIN, RP_ID, SoftKey
from .conftest import MEMBER, OWNER, PASSWORD

CHROME_ON_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
DEVICE_COOKIE = "__Host-twostep_device"


@pytest.fixture
def keyed_service(tmp_path: Path, clock: ManualClock) -> Iterator[ts.TwoStep]:
    """The host's twostep with security keys on (R100)."""
    store = ts.SQLiteStore(tmp_path / "keys.db", synchronous="NORMAL")
    service = ts.TwoStep(
        store,
        issuer="Host",
        clock=clock,
        settings=FAST,
        cipher=ts.AESGCMKeyring.generate(),
        passkeys=ts.PasskeySettings(rp_id=RP_ID, origin=ORIGIN),
    )
    account = service.create_account("Host")
    service.create_user(account.id, OWNER, PASSWORD, ts.Role.OWNER)
    service.create_user(account.id, MEMBER, PASSWORD, ts.Role.MEMBER)
    yield service
    store.close()


def make_app(service: ts.TwoStep, **options: object) -> Flask:
    app = Flask(__name__)
    app.secret_key = "test-secret"
    TwoStepFlask(app, service, **options)  # type: ignore[arg-type]
    return app


def client(app: Flask, language: str = "en") -> FlaskClient:
    c = app.test_client()
    c.environ_base["wsgi.url_scheme"] = "https"
    c.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    c.environ_base["HTTP_USER_AGENT"] = CHROME_ON_LINUX
    return c


def csrf(c: FlaskClient) -> str:
    with c.session_transaction() as cookie:
        token: str = cookie.setdefault(CSRF_KEY, "a-csrf-token")
    return token


def post(c: FlaskClient, path: str, *, follow: bool = True, **form: str) -> TestResponse:
    return c.post(path, data={"csrf_token": csrf(c), **form}, follow_redirects=follow)


def options(c: FlaskClient, path: str) -> str:
    """What the page's script fetches before calling ``navigator.credentials``."""
    answer = c.post(path, headers={CSRF_HEADER: csrf(c)})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "application/json"
    return answer.get_data(as_text=True)


def text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def turn_on_app(c: FlaskClient, clock: ManualClock) -> Phone:
    """Turn 2FA on from the security page (R30); the phone is pyotp's twin."""
    page = text(post(c, "/security/enable"))
    phone = Phone(page.split('id="secret-key">')[1].split("<")[0].replace(" ", ""), clock)
    assert "backup-codes" in text(post(c, "/security/confirm", code=phone.code()))
    clock.advance(30)
    return phone


def set_cookie(response: TestResponse, name: str) -> str:
    [header] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]
    return header


# -- grace period and whom the requirement covers (R95, R96) ---------------------------------


def test_r95_a_member_inside_a_grace_period_sees_the_deadline_on_every_page(
    host_service: ts.TwoStep, clock: ManualClock
) -> None:
    owner = host_service.login(OWNER, PASSWORD)
    assert isinstance(owner, ts.LoggedIn)
    host_service.set_two_factor_required(owner.session, True, grace_period=timedelta(days=7))
    c = client(make_app(host_service))
    page = post(c, "/login", email=MEMBER, password=PASSWORD)
    assert page.request.path == "/security"  # logged in with the password alone
    deadline = (clock.now() + timedelta(days=7)).strftime("%Y-%m-%d %H:%M UTC")
    notice = f"Your account requires two-step verification: turn it on by {deadline}."
    assert notice in text(page)
    assert 'id="enroll-by"' in text(c.get("/security"))
    turn_on_app(c, clock)  # R95: enrolled, the notice goes
    assert 'id="enroll-by"' not in text(c.get("/security"))


def test_r95_no_notice_without_a_grace_period(host_service: ts.TwoStep) -> None:
    c = client(make_app(host_service))
    page = text(post(c, "/login", email=MEMBER, password=PASSWORD))
    assert 'id="enroll-by"' not in page


def test_r95_r96_the_owner_requires_2fa_of_admins_then_everyone_with_a_grace_period(
    host_service: ts.TwoStep,
) -> None:
    app = make_app(host_service)
    owner, member = client(app), client(app)
    post(member, "/login", email=MEMBER, password=PASSWORD)
    post(owner, "/login", email=OWNER, password=PASSWORD)
    form = text(owner.get("/admin/settings"))
    assert 'id="required-of"' in form
    assert 'id="grace-days"' in form

    # R96: of admins only, with 7 days: the owner is covered and logged out, the member not.
    done = post(owner, "/admin/settings", required="admins", grace_days="7")
    assert done.request.path == "/login"
    assert "2FA is now required of owners and managers, who were logged out." in text(done)
    assert member.get("/security").status_code == 200
    assert 'id="enroll-by"' not in text(member.get("/security"))

    # R95: the owner, without 2FA, logs in with the password inside the grace period.
    again = text(post(owner, "/login", email=OWNER, password=PASSWORD))
    assert 'id="enroll-by"' in again
    settings = text(owner.get("/admin/settings"))
    assert "required</strong> for owners and managers." in settings
    assert "for 7 days to set it up." in settings
    assert '<option value="admins" selected>' in settings

    # R96: widening it to everyone logs the member out; the member then has a grace period.
    widened = post(owner, "/admin/settings", required="everyone", grace_days="7")
    assert widened.request.path == "/admin/settings"  # the owner was covered already
    assert "The requirement was saved." in text(widened)
    assert member.get("/security").status_code == 302
    page = text(post(member, "/login", email=MEMBER, password=PASSWORD))
    assert 'id="enroll-by"' in page

    # R95: ending the grace period applies at once: the member's session stops.
    post(owner, "/admin/settings", required="everyone", grace_days="0")
    assert member.get("/security").status_code == 302
    off = post(owner, "/login", email=OWNER, password=PASSWORD)
    assert "secret-key" in text(off)  # R3: the owner now enrols inside the login


def test_r95_a_grace_period_that_is_not_a_number_of_days_changes_nothing(
    host_service: ts.TwoStep,
) -> None:
    c = client(make_app(host_service))
    post(c, "/login", email=OWNER, password=PASSWORD)
    for days, said in (
        ("a week", "The grace period is a number of days."),
        ("365", "The grace period is from 0 to 90 days."),
    ):
        page = post(c, "/admin/settings", required="everyone", grace_days=days)
        assert page.request.path == "/admin/settings"
        assert said in text(page)
        assert "not required</strong>" in text(page)


def test_r20_a_manager_cannot_post_the_requirement(host_service: ts.TwoStep) -> None:
    c = client(make_app(host_service))
    post(c, "/login", email=MEMBER, password=PASSWORD)
    assert post(c, "/admin/settings", required="admins", grace_days="3").status_code == 403


# -- remembered devices (R98) -----------------------------------------------------------------


def test_r98_remember_this_device_sets_a_long_lived_cookie_that_skips_the_code(
    host_service: ts.TwoStep, clock: ManualClock
) -> None:
    c = client(make_app(host_service))
    post(c, "/login", email=MEMBER, password=PASSWORD)
    phone = turn_on_app(c, clock)
    post(c, "/logout")

    post(c, "/login", email=MEMBER, password=PASSWORD)
    page = text(c.get("/login/code"))
    assert "Remember this device for 30 days" in page
    assert "Use a security key" not in page  # no passkeys on this host
    done = post(c, "/login/code", follow=False, code=phone.code(), remember="on")
    assert done.status_code == 302
    header = set_cookie(done, DEVICE_COOKIE)
    flags = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"secure", "httponly", "path"} <= flags
    assert "SameSite=Lax" in header
    assert f"Max-Age={30 * 24 * 3600}" in header  # the token's life: Settings default
    assert "Domain" not in header  # the __Host- prefix forbids it
    security = text(c.get("/security"))
    assert "Chrome on Linux <strong>(this device)</strong>" in security

    # A remembered device outlives the logout; the next login skips the code, not the password.
    post(c, "/logout")
    assert c.get_cookie(DEVICE_COOKIE) is not None
    wrong = post(c, "/login", email=MEMBER, password="wrong password!")
    assert "Email or password is wrong." in text(wrong)
    again = post(c, "/login", email=MEMBER, password=PASSWORD)
    assert again.request.path == "/security"
    assert [d.label for d in host_service.remembered_devices(_session(host_service, c))] == [
        "Chrome on Linux"
    ]


def _session(service: ts.TwoStep, c: FlaskClient) -> ts.Session:
    with c.session_transaction() as cookie:
        return service.check_session(cookie["twostep_token"])


def test_r98_without_the_box_ticked_no_device_is_remembered(
    host_service: ts.TwoStep, clock: ManualClock
) -> None:
    c = client(make_app(host_service, secure_cookies=False))
    post(c, "/login", email=MEMBER, password=PASSWORD)
    phone = turn_on_app(c, clock)
    post(c, "/logout")
    post(c, "/login", email=MEMBER, password=PASSWORD)
    done = post(c, "/login/code", follow=False, code=phone.code())
    assert not [h for h in done.headers.getlist("Set-Cookie") if "twostep_device" in h]
    assert "Remembered devices" not in text(c.get("/security"))


def test_r98_forgetting_this_device_drops_its_cookie_and_asks_for_a_code_again(
    host_service: ts.TwoStep, clock: ManualClock
) -> None:
    c = client(make_app(host_service, secure_cookies=False))
    post(c, "/login", email=MEMBER, password=PASSWORD)
    phone = turn_on_app(c, clock)
    post(c, "/logout")
    post(c, "/login", email=MEMBER, password=PASSWORD)
    done = post(c, "/login/code", follow=False, code=phone.code(), remember="on")
    header = set_cookie(done, "twostep_device")  # plain http: no Secure, no prefix
    assert "Secure" not in header
    assert "HttpOnly" in header

    page = text(c.get("/security"))
    [device_id] = re.findall(r'data-device="([^"]+)"', page)
    forgot = post(c, f"/security/devices/{device_id}/forget", follow=False)
    cleared = set_cookie(forgot, "twostep_device")
    assert "Max-Age=0" in cleared or "expires=Thu, 01 Jan 1970" in cleared
    assert c.get_cookie("twostep_device") is None
    assert "That device will ask for a code again." in text(c.get("/security"))
    assert "Remembered devices" not in text(c.get("/security"))
    post(c, "/logout")
    again = post(c, "/login", email=MEMBER, password=PASSWORD)
    assert again.request.path == "/login/code"


def test_r98_forgetting_another_device_keeps_this_ones_cookie(
    host_service: ts.TwoStep, clock: ManualClock
) -> None:
    app = make_app(host_service, secure_cookies=False)
    laptop, phone_browser = client(app), client(app)
    post(laptop, "/login", email=MEMBER, password=PASSWORD)
    phone = turn_on_app(laptop, clock)
    for c in (laptop, phone_browser):
        post(c, "/logout")
        post(c, "/login", email=MEMBER, password=PASSWORD)
        post(c, "/login/code", code=phone.code(), remember="on")
        clock.advance(30)
    page = text(laptop.get("/security"))
    ids = re.findall(r'data-device="([^"]+)"', page)
    assert len(ids) == 2
    assert page.count("(this device)") == 1
    [this] = re.findall(r'data-device="([^"]+)">\s*<td>[^<]*<strong>', page)
    [other] = [i for i in ids if i != this]
    forgot = post(laptop, f"/security/devices/{other}/forget", follow=False)
    assert not [h for h in forgot.headers.getlist("Set-Cookie") if "twostep_device" in h]
    assert laptop.get_cookie("twostep_device") is not None
    again = post(laptop, f"/security/devices/{other}/forget")
    assert "No such remembered device." in text(again)


def test_r98_forgetting_a_device_after_the_session_ended_says_so(
    host_service: ts.TwoStep, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = client(make_app(host_service))
    post(c, "/login", email=MEMBER, password=PASSWORD)

    def ended(session: object, device_id: str) -> bool:
        raise ts.SessionInvalid("ended meanwhile", reason="revoked")

    monkeypatch.setattr(host_service, "forget_device", ended)
    page = post(c, "/security/devices/some-id/forget")
    assert "You were logged out." in text(page)


def test_r98_a_mangled_device_cookie_is_ignored(
    host_service: ts.TwoStep, clock: ManualClock
) -> None:
    c = client(make_app(host_service, secure_cookies=False))
    post(c, "/login", email=MEMBER, password=PASSWORD)
    turn_on_app(c, clock)
    post(c, "/logout")
    for value in ("no-colon", "x:" + "y" * 300, "abc:forged-token"):
        c.set_cookie("twostep_device", value)
        assert post(c, "/login", email=MEMBER, password=PASSWORD).request.path == "/login/code"


def test_r98_a_device_is_remembered_only_after_a_second_factor(
    host_service: ts.TwoStep, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = client(make_app(host_service))
    post(c, "/login", email=MEMBER, password=PASSWORD)
    phone = turn_on_app(c, clock)
    post(c, "/logout")
    post(c, "/login", email=MEMBER, password=PASSWORD)

    def refused(session: object, **_: object) -> ts.DeviceToken:
        raise ts.NotAllowed("no", reason="no_second_factor_in_session", rule="R98")

    monkeypatch.setattr(host_service, "remember_device", refused)
    done = post(c, "/login/code", code=phone.code(), remember="on")
    assert done.request.path == "/security"  # the login itself stands
    assert "Only a login with a code can remember this device" in text(done)
    assert c.get_cookie(DEVICE_COOKIE) is None


@pytest.mark.parametrize(
    ("agent", "label"),
    [
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
         "Firefox on Windows"),
        (("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"), "Safari on iOS"),
        ("curl/8.5.0", "A browser"),
    ],
)  # fmt: skip
def test_r98_the_device_label_names_the_browser(agent: str, label: str) -> None:
    from twostep.integrations.flask._views import _device_label

    assert _device_label(agent) == label


# -- security keys (R100-R109) ------------------------------------------------------------------


def add_key(c: FlaskClient, key: SoftKey, name: str) -> TestResponse:
    credential = key.create(options(c, "/security/keys/options"))
    return post(c, "/security/keys", name=name, credential=credential)


def key_ids(page: str) -> dict[str, str]:
    """The security page's keys: name to id."""
    rows = re.findall(
        r'data-name="([^"]+)">.*?action="/security/keys/([^/"]+)/remove"', page, re.DOTALL
    )
    return dict(rows)


def test_r101_r103_a_user_adds_a_security_key_and_logs_in_with_it(
    keyed_service: ts.TwoStep,
) -> None:
    c = client(make_app(keyed_service))
    post(c, "/login", email=MEMBER, password=PASSWORD)
    page = text(c.get("/security"))
    assert 'id="add-key"' in page
    assert "/twostep-static/webauthn.js" in page
    key = SoftKey()
    added = add_key(c, key, "Laptop key")
    assert "Security key “Laptop key” added." in text(added)
    assert 'data-name="Laptop key"' in text(added)
    assert c.get("/twostep-static/webauthn.js").status_code == 200

    post(c, "/logout")
    step = post(c, "/login", email=MEMBER, password=PASSWORD)
    assert step.request.path == "/login/code"
    assert 'id="use-key"' in text(step)  # R102: the user has a key
    assertion = key.get(options(c, "/login/security-key/options"))
    done = post(c, "/login/security-key", follow=False, credential=assertion, remember="on")
    assert done.headers["Location"] == "/security"
    assert "HttpOnly" in set_cookie(done, DEVICE_COOKIE)  # R98: a key is a second factor
    assert c.get("/security").status_code == 200


def test_r103_a_wrong_assertion_at_login_asks_again(keyed_service: ts.TwoStep) -> None:
    c = client(make_app(keyed_service))
    post(c, "/login", email=MEMBER, password=PASSWORD)
    key = SoftKey()
    add_key(c, key, "Key")
    post(c, "/logout")
    post(c, "/login", email=MEMBER, password=PASSWORD)
    wrong = key.get(options(c, "/login/security-key/options"), origin="https://evil.example")
    page = post(c, "/login/security-key", credential=wrong)
    assert page.request.path == "/login/security-key"
    assert "That code is not right." in text(page)
    assert 'id="use-key"' in text(page)
    malformed = post(c, "/login/security-key", credential="{}")  # R109: nothing counted
    assert "That is not a code" in text(malformed)
    assert "Attempts left" not in text(malformed)


def test_r103_key_options_without_a_login_in_progress_are_refused(
    keyed_service: ts.TwoStep,
) -> None:
    c = client(make_app(keyed_service))
    answer = c.post("/login/security-key/options", headers={CSRF_HEADER: csrf(c)})
    assert answer.status_code == 400
    assert answer.get_data(as_text=True) == "Please log in."
    assert post(c, "/login/security-key", credential="{}").request.path == "/login"


def test_r101_refusals_show_the_reason(keyed_service: ts.TwoStep) -> None:
    c = client(make_app(keyed_service))
    post(c, "/login", email=MEMBER, password=PASSWORD)
    add_key(c, SoftKey(), "Key")
    assert "You have a security key of that name" in text(add_key(c, SoftKey(), "key"))
    assert "Give the security key a name" in text(add_key(c, SoftKey(), ""))
    refused = c.post("/security/check/options", headers={CSRF_HEADER: "forged"})
    assert refused.status_code == 400  # R112: the script sends the CSRF token


def test_r106_a_key_is_removed_with_a_code_or_with_a_key(
    keyed_service: ts.TwoStep, clock: ManualClock
) -> None:
    c = client(make_app(keyed_service))
    post(c, "/login", email=MEMBER, password=PASSWORD)
    phone = turn_on_app(c, clock)
    first, second = SoftKey(), SoftKey()
    add_key(c, first, "First")
    page = text(add_key(c, second, "Second"))
    first_id, second_id = key_ids(page)["First"], key_ids(page)["Second"]

    wrong = post(c, f"/security/keys/{first_id}/remove", code="000000")
    assert "That code is not right." in text(wrong)
    done = text(post(c, f"/security/keys/{first_id}/remove", code=phone.code()))
    assert "The security key was removed." in done
    assert key_ids(done) == {"Second": second_id}

    assertion = second.get(options(c, "/security/check/options"))
    done = text(post(c, f"/security/keys/{second_id}/remove", credential=assertion))
    assert "The security key was removed." in done
    assert key_ids(done) == {}
    assert "No such security key." in text(
        post(c, f"/security/keys/{second_id}/remove", code=phone.code(offset_steps=1))
    )
    nothing = c.post("/security/check/options", headers={CSRF_HEADER: csrf(c)})
    assert (nothing.status_code, nothing.get_data(as_text=True)) == (
        400,
        "You have no security key.",
    )


def test_r99_an_owner_steps_up_with_a_security_key(
    keyed_service: ts.TwoStep, clock: ManualClock
) -> None:
    c = client(make_app(keyed_service))
    post(c, "/login", email=OWNER, password=PASSWORD)
    assert 'id="step-up-key"' not in text(c.get("/admin/users"))  # no 2FA, nothing to ask
    key = SoftKey()
    add_key(c, key, "Owner key")
    clock.advance(hours=2)  # the registration's freshness is long gone
    users = text(c.get("/admin/users"))
    assert 'id="step-up-key"' in users
    member_id = users.split(f'data-email="{MEMBER}"')[1].split("/admin/users/")[1].split("/")[0]
    refused = text(post(c, f"/admin/users/{member_id}/role", role="manager"))
    assert "This change needs a recent code" in refused
    assertion = key.get(options(c, "/security/check/options"))
    assert "Confirmed" in text(post(c, "/security/step-up", credential=assertion))
    done = text(post(c, f"/admin/users/{member_id}/role", role="manager"))
    assert "The role is now manager." in done


def test_r100_without_passkeys_no_key_is_offered(host_service: ts.TwoStep) -> None:
    c = client(make_app(host_service))
    post(c, "/login", email=MEMBER, password=PASSWORD)
    page = text(c.get("/security"))
    assert "Security keys" not in page
    assert "webauthn.js" not in page
    answer = c.post("/security/keys/options", headers={CSRF_HEADER: csrf(c)})
    assert answer.status_code == 400


# -- in French ------------------------------------------------------------------------------------


def test_the_new_pages_speak_french(keyed_service: ts.TwoStep, clock: ManualClock) -> None:
    owner = keyed_service.login(OWNER, PASSWORD)
    assert isinstance(owner, ts.LoggedIn)
    keyed_service.set_two_factor_required(owner.session, True, grace_period=timedelta(days=3))
    c = client(make_app(keyed_service), language="fr")
    page = text(post(c, "/login", email=MEMBER, password=PASSWORD))
    assert "Votre compte exige la vérification en deux étapes : activez-la avant le" in page
    assert "Clés de sécurité" in page
    assert "Ajouter une clé de sécurité" in page
    key = SoftKey()
    assert "Clé de sécurité « Clé » ajoutée." in text(add_key(c, key, "Clé"))
    post(c, "/logout")
    post(c, "/login", email=MEMBER, password=PASSWORD)
    code = text(c.get("/login/code"))
    assert "Se souvenir de cet appareil pendant 30 jours" in code
    assert "Utiliser une clé de sécurité" in code
    post(c, "/login/security-key", credential=key.get(options(c, "/login/security-key/options")),
         remember="on")  # fmt: skip
    security = text(c.get("/security"))
    assert "Appareils mémorisés" in security
    assert "(cet appareil)" in security
    admin = client(make_app(keyed_service), language="fr")
    post(admin, "/login", email=OWNER, password=PASSWORD)
    settings = text(admin.get("/admin/settings"))
    assert "Délai de grâce, en jours (0 pour aucun)" in settings
    assert "pendant 3 jours pour la configurer" in settings
