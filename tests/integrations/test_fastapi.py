"""``twostep.integrations.fastapi`` in a small host app, through FastAPI's test client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import twostep as ts
from twostep.integrations.fastapi import CurrentSession, Service, install
from twostep.testing import ManualClock, Phone

from .conftest import MEMBER, OWNER, PASSWORD


def host_app(service: ts.TwoStep | ts.AsyncTwoStep, **options: object) -> FastAPI:
    """What the docs show: an app, ``install``, and a route of its own."""
    app = FastAPI()
    install(app, service, **options)  # type: ignore[arg-type]

    @app.get("/hello")
    async def hello(session: CurrentSession, twostep: Service) -> dict[str, object]:
        status = await twostep.two_factor_status(session)
        return {"email": session.email, "two_factor": status.enabled}

    return app


def log_in(c: TestClient, path: str = "/login") -> str:
    r = c.post(path, json={"email": MEMBER, "password": PASSWORD})
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


@pytest.fixture
def api(host_service: ts.TwoStep) -> Iterator[TestClient]:
    with TestClient(host_app(host_service)) as c:
        yield c


def test_a_host_route_gets_the_session_and_the_async_service(api: TestClient) -> None:
    # R113
    assert api.get("/hello").status_code == 401
    token = log_in(api)
    r = api.get("/hello", headers={"Authorization": f"Bearer {token}"})
    assert r.json() == {"email": MEMBER, "two_factor": False}


def test_the_service_runs_in_worker_threads_not_on_the_loop(host_service: ts.TwoStep) -> None:
    # R115
    threads: list[str] = []
    login = host_service.login

    def spy(*args: Any, **kwargs: Any) -> ts.LoginStep:
        threads.append(threading.current_thread().name)
        return login(*args, **kwargs)

    host_service.login = spy  # type: ignore[method-assign]
    with ThreadPoolExecutor(thread_name_prefix="twostep-worker") as executor:
        log_in(TestClient(host_app(host_service, executor=executor)))
    assert len(threads) == 1
    assert threads[0].startswith("twostep-worker")


def test_install_takes_an_async_twostep_as_it_is(host_service: ts.TwoStep) -> None:
    twostep = ts.AsyncTwoStep(host_service)
    app = FastAPI()
    assert install(app, twostep) is twostep
    assert app.state.twostep is twostep
    wrapped = install(FastAPI(), host_service)
    assert isinstance(wrapped, ts.AsyncTwoStep)
    assert wrapped.sync is host_service


def test_the_routes_can_live_under_a_prefix(host_service: ts.TwoStep) -> None:
    c = TestClient(host_app(host_service, prefix="/auth"))
    assert c.post("/login", json={"email": MEMBER, "password": PASSWORD}).status_code == 404
    token = log_in(c, "/auth/login")
    assert c.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_r112_a_cookie_never_authenticates_and_none_is_set(api: TestClient) -> None:
    r = api.post("/login", json={"email": MEMBER, "password": PASSWORD})
    assert "set-cookie" not in r.headers
    api.cookies.set("session", r.json()["token"])
    assert api.get("/me").status_code == 401  # only the Authorization header counts


def test_error_messages_follow_accept_language(api: TestClient) -> None:
    # R114
    wrong = {"email": MEMBER, "password": "wrong password!"}
    r = api.post("/login", json=wrong, headers={"Accept-Language": "fr-FR, en;q=0.5"})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_credentials"  # the reason stays for programs
    assert r.json()["message"] == "L’e-mail ou le mot de passe est erroné."
    assert r.headers["Content-Language"] == "fr"
    english = api.post("/login", json=wrong)
    assert english.json()["message"] == "Email or password is wrong."
    assert english.headers["Content-Language"] == "en"


def test_validation_errors_are_translated_too(api: TestClient) -> None:
    r = api.post("/login", json={"email": 5}, headers={"Accept-Language": "fr"})
    assert r.status_code == 422
    assert r.json()["message"] == "Le corps ou les paramètres de la requête ne sont pas valides."


def test_a_language_setting_wins_over_the_client(host_service: ts.TwoStep) -> None:
    c = TestClient(host_app(host_service, language="fr"))
    r = c.get("/me", headers={"Accept-Language": "en"})
    assert r.status_code == 401
    assert r.json()["message"] == "Veuillez vous connecter."


def test_an_unshipped_language_setting_is_refused(host_service: ts.TwoStep) -> None:
    with pytest.raises(ValueError, match="language must be one of"):
        install(FastAPI(), host_service, language="xx")


def test_r99_a_step_up_code_lets_an_owner_change_a_role(
    host_service: ts.TwoStep, clock: ManualClock
) -> None:
    c = TestClient(host_app(host_service))
    r = c.post("/login", json={"email": OWNER, "password": PASSWORD})
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    enrollment = c.post("/security/enrollment", headers=auth).json()
    phone = Phone(enrollment["secret"], clock)
    assert c.post("/security/enrollment/confirm", json={"code": phone.code()}, headers=auth)
    clock.advance(hours=2)
    member = next(
        u for u in c.get("/admin/account", headers=auth).json()["users"] if u["email"] == MEMBER
    )
    reset = c.post(f"/admin/users/{member['user_id']}/reset-two-factor", headers=auth)
    assert reset.status_code == 403
    assert reset.json()["error"] == "step_up_required"
    clock.advance(30)
    assert c.post("/security/step-up", json={"code": phone.code()}, headers=auth).status_code == 200
    reset = c.post(f"/admin/users/{member['user_id']}/reset-two-factor", headers=auth)
    assert reset.status_code == 204
