"""``twostep.integrations.flask`` in a small host app, through Flask's test client."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import twostep as ts
from twostep.integrations.flask import (
    CSRF_HEADER,
    CSRF_KEY,
    TwoStepFlask,
    csrf_exempt,
    current_user,
    login_required,
    user,
)
from twostep.testing import ManualClock, Phone

from .conftest import MEMBER, OWNER, PASSWORD


def host_app(service: ts.TwoStep, **options: object) -> Flask:
    """What the docs show: an app, a secret key, TwoStepFlask, and a view of its own."""
    app = Flask(__name__, template_folder=str(options.pop("templates", "templates")))
    app.secret_key = "test-secret"
    TwoStepFlask(app, service, **options)  # type: ignore[arg-type]

    @app.get("/")
    @login_required
    def home() -> str:
        return f"Hello {user().email}"

    @app.post("/notes")
    def notes() -> str:
        return f"noted by {current_user().email if current_user() else 'nobody'}"

    @app.post("/webhook")
    @csrf_exempt
    def webhook() -> str:
        return "received"

    return app


def client(app: Flask, language: str | None = None) -> FlaskClient:
    c = app.test_client()
    c.environ_base["wsgi.url_scheme"] = "https"
    if language:
        c.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    return c


def post(c: FlaskClient, path: str, **form: str) -> TestResponse:
    with c.session_transaction() as cookie:
        token = cookie.setdefault(CSRF_KEY, "a-csrf-token")
    return c.post(path, data={"csrf_token": token, **form}, follow_redirects=True)


def text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


@pytest.fixture
def app(host_service: ts.TwoStep) -> Flask:
    return host_app(host_service)


def test_a_host_view_needs_a_login_and_sees_the_user(app: Flask) -> None:
    # R113
    c = client(app)
    page = c.get("/", follow_redirects=True)
    assert page.request.path == "/login"
    assert "Please log in." in text(page)
    done = post(c, "/login", email=MEMBER, password=PASSWORD)
    assert done.request.path == "/security"  # the default home of a login
    assert c.get("/").get_data(as_text=True) == f"Hello {MEMBER}"


def test_home_endpoint_and_url_prefix_place_the_pages(host_service: ts.TwoStep) -> None:
    app = host_app(host_service, url_prefix="/auth", home_endpoint="home")
    c = client(app)
    assert c.get("/login").status_code == 404
    assert c.get("/auth/login").status_code == 200
    done = post(c, "/auth/login", email=MEMBER, password=PASSWORD)
    assert done.request.path == "/"
    assert text(done) == f"Hello {MEMBER}"


def test_user_outside_login_required_is_a_programming_error(app: Flask) -> None:
    with app.test_request_context("/"), pytest.raises(RuntimeError, match="login_required"):
        user()


def test_r112_a_host_post_without_the_csrf_token_is_refused(app: Flask) -> None:
    c = client(app)
    post(c, "/login", email=MEMBER, password=PASSWORD)
    assert c.post("/notes").status_code == 400
    assert c.post("/notes", headers={CSRF_HEADER: "forged"}).status_code == 400
    with c.session_transaction() as cookie:
        token = cookie[CSRF_KEY]
    sent = c.post("/notes", headers={CSRF_HEADER: token})
    assert sent.get_data(as_text=True) == f"noted by {MEMBER}"


def test_r112_a_view_the_host_exempts_takes_posts_without_the_token(app: Flask) -> None:
    c = client(app)
    assert c.post("/webhook").get_data(as_text=True) == "received"
    assert c.post("/notes").status_code == 400  # the others still need it


def test_r110_r111_the_cookie_is_secure_httponly_lax_and_nothing_is_cached(app: Flask) -> None:
    c = client(app)
    with c.session_transaction() as cookie:
        cookie[CSRF_KEY] = "a-csrf-token"
    r = c.post("/login", data={"csrf_token": "a-csrf-token", "email": MEMBER, "password": PASSWORD})
    set_cookie = r.headers["Set-Cookie"]
    assert set_cookie.startswith("__Host-session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in set_cookie
    assert "Domain" not in set_cookie
    assert r.headers["Cache-Control"] == "no-store"


def test_without_a_reset_link_sender_there_is_no_forgotten_password_page(app: Flask) -> None:
    c = client(app)
    assert "forgot" not in c.get("/login").get_data(as_text=True)
    assert c.get("/password/forgot").status_code == 404


def test_a_host_template_overrides_a_page(host_service: ts.TwoStep, tmp_path: Path) -> None:
    (tmp_path / "twostep").mkdir()
    (tmp_path / "twostep" / "login.html").write_text("<p>Our own login page</p>")
    c = client(host_app(host_service, templates=tmp_path))
    assert c.get("/login").get_data(as_text=True) == "<p>Our own login page</p>"


def test_the_layout_can_be_overridden_alone(host_service: ts.TwoStep, tmp_path: Path) -> None:
    (tmp_path / "twostep").mkdir()
    (tmp_path / "twostep" / "base.html").write_text(
        "<title>Our site</title>{% block main %}{% endblock %}"
    )
    page = text(client(host_app(host_service, templates=tmp_path)).get("/login"))
    assert page.startswith("<title>Our site</title>")
    assert 'name="password"' in page


# -- the pages in the language asked for ---------------------------------------------------


def test_pages_and_messages_follow_accept_language(app: Flask) -> None:
    # R114
    c = client(app, "fr-CH, fr;q=0.9, en;q=0.8")
    page = text(c.get("/login"))
    assert '<html lang="fr">' in page
    assert "Se connecter" in page
    refused = post(c, "/login", email=MEMBER, password="wrong password!")
    assert "L’e-mail ou le mot de passe est erroné." in text(refused)
    assert "Email or password is wrong." not in text(refused)
    english = text(post(client(app), "/login", email=MEMBER, password="wrong password!"))
    assert "Email or password is wrong." in english
    assert '<html lang="en">' in english


def test_a_language_setting_wins_over_the_browser(host_service: ts.TwoStep) -> None:
    # R114
    c = client(host_app(host_service, language="fr"), "en")
    assert "Mot de passe" in text(c.get("/login"))
    assert "Veuillez vous connecter." in text(c.get("/", follow_redirects=True))


def test_an_unshipped_language_setting_is_refused(host_service: ts.TwoStep) -> None:
    with pytest.raises(ValueError, match="language must be one of"):
        host_app(host_service, language="xx")


def test_a_refused_form_says_so_in_french(app: Flask) -> None:
    c = client(app, "fr")
    post(c, "/login", email=MEMBER, password=PASSWORD)
    with c.session_transaction() as cookie:
        cookie[CSRF_KEY] = "a-csrf-token"
    refused = c.post("/security/enable", data={"csrf_token": "forged"})
    assert refused.status_code == 400
    assert "Le formulaire a expiré" in text(refused)


def test_the_whole_set_up_reads_in_french(app: Flask, clock: ManualClock) -> None:
    c = client(app, "fr")
    post(c, "/login", email=MEMBER, password=PASSWORD)
    page = text(post(c, "/security/enable"))
    assert "Configurer la vérification en deux étapes" in page
    assert "Émetteur : Host" in page
    secret = page.split('id="secret-key">')[1].split("<")[0].replace(" ", "")
    done = text(post(c, "/security/confirm", code=Phone(secret, clock).code()))
    assert "Vos codes de secours" in done
    status = text(c.get("/security"))
    assert "La vérification en deux étapes est <strong>activée</strong>." in status


def test_r3_the_enrolment_required_redirect_says_so_in_french(
    app: Flask, host_service: ts.TwoStep
) -> None:
    owner, member = client(app), client(app, "fr")
    post(owner, "/login", email=OWNER, password=PASSWORD)
    post(member, "/login", email=MEMBER, password=PASSWORD)
    post(owner, "/admin/settings", required="on")  # R21, R113: everyone is logged out
    page = member.get("/", follow_redirects=True)
    assert page.request.path == "/login"
    assert "Vous avez été déconnecté." in text(page)
    login = text(post(member, "/login", email=MEMBER, password=PASSWORD))  # R3
    assert "Votre compte exige la vérification en deux étapes" in login


def test_the_request_language_is_read_per_request(app: Flask) -> None:
    with app.test_request_context("/login", headers={"Accept-Language": "fr"}):
        app.preprocess_request()
        assert request.headers["Accept-Language"] == "fr"
        from twostep.integrations.flask import language, message

        assert language() == "fr"
        assert message(ts.UnknownUser("x")) == "Cet utilisateur n’existe pas."


# -- the pages' other answers -------------------------------------------------------------


def test_the_code_steps_without_a_login_under_way_go_back_to_the_login(app: Flask) -> None:
    c = client(app)
    assert c.get("/login/code").headers["Location"] == "/login"
    page = post(c, "/login/setup", code="123456")
    assert page.request.path == "/login"
    assert "Please log in." in text(page)


def test_pages_refusing_input_say_why_and_keep_the_form(host_service: ts.TwoStep) -> None:
    sent: list[str] = []
    c = client(host_app(host_service, send_reset_link=lambda _, link: sent.append(link)))
    page = post(c, "/password/forgot", email="a\x00@host.example")
    assert "That is not an email address." in text(page)
    assert sent == []
    page = post(c, "/password/reset", token="t", new_password="a" * 12, repeat_password="b" * 12)
    assert "The two passwords differ." in text(page)
    assert 'name="token" value="t"' in text(page)


def test_security_forms_refused_by_the_rules_say_why(app: Flask, clock: ManualClock) -> None:
    c = client(app)
    post(c, "/login", email=MEMBER, password=PASSWORD)
    assert "Start setting up 2FA first." in text(post(c, "/security/confirm", code="123456"))
    refused = text(post(c, "/security/reset", code="123456"))
    assert "Reset is for accounts that require 2FA" in refused
    differ = post(
        c,
        "/security/password",
        current_password=PASSWORD,
        new_password="a" * 12,
        repeat_password="b" * 12,
    )
    assert "The two new passwords differ." in text(differ)
    page = text(post(c, "/security/enable"))
    secret = page.split('id="secret-key">')[1].split("<")[0].replace(" ", "")
    post(c, "/security/confirm", code=Phone(secret, clock).code())
    assert "2FA is already on." in text(post(c, "/security/enable"))


def test_a_session_ending_during_the_request_goes_back_to_the_login(
    app: Flask, host_service: ts.TwoStep, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = client(app)
    post(c, "/login", email=MEMBER, password=PASSWORD)

    def ended(session: object) -> ts.TwoFactorStatus:
        raise ts.SessionInvalid("ended meanwhile", reason="revoked")

    monkeypatch.setattr(host_service, "two_factor_status", ended)
    page = c.get("/security", follow_redirects=True)
    assert page.request.path == "/login"
    assert "You were logged out." in text(page)


def test_a_users_page_cursor_not_made_by_twostep_is_refused(app: Flask) -> None:
    c = client(app)
    post(c, "/login", email=OWNER, password=PASSWORD)
    page = c.get("/admin/users?after=forged", follow_redirects=True)
    assert page.request.path == "/admin/users"
    assert "That input is not valid" in text(page)


def test_r99_an_owner_confirms_with_a_code_before_changing_a_role(
    app: Flask, host_service: ts.TwoStep, clock: ManualClock
) -> None:
    c = client(app)
    post(c, "/login", email=OWNER, password=PASSWORD)
    page = text(post(c, "/security/enable"))
    phone = Phone(page.split('id="secret-key">')[1].split("<")[0].replace(" ", ""), clock)
    post(c, "/security/confirm", code=phone.code())
    clock.advance(hours=2)  # longer ago than Settings.step_up_within
    users = text(c.get("/admin/users"))
    assert 'id="step-up"' in users
    member_id = users.split(f'data-email="{MEMBER}"')[1].split("/admin/users/")[1].split("/")[0]
    refused = text(post(c, f"/admin/users/{member_id}/role", role="manager"))
    assert "This change needs a recent code" in refused
    clock.advance(30)
    assert "Confirmed" in text(post(c, "/security/step-up", code=phone.code()))
    done = text(post(c, f"/admin/users/{member_id}/role", role="manager"))
    assert "The role is now manager." in done
    clock.advance(30)
    assert "That code is not right." in text(post(c, "/security/step-up", code="000000"))
