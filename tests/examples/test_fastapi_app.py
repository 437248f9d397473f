"""The FastAPI example, flow by flow, through FastAPI's TestClient (R1-R61)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from examples.fastapi_app.app import create_app
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request

import twostep as ts
from twostep.integrations.fastapi import error_response
from twostep.testing import ManualClock, Phone

from .conftest import MANAGER, MEMBER, OWNER, PASSWORDS


@pytest.fixture
def api(app_service: ts.TwoStep) -> FastAPI:
    return create_app(app_service)


@pytest.fixture
def client(api: FastAPI) -> TestClient:
    return TestClient(api)


class User:
    """One API client's view: its token, its phone, its backup codes."""

    def __init__(self, client: TestClient, clock: ManualClock, email: str) -> None:
        self.client = client
        self.clock = clock
        self.email = email
        self.token = ""
        self.phone: Phone | None = None
        self.backup_codes: list[str] = []

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response: httpx.Response = self.client.request(method, path, json=body, headers=headers)
        return response

    def login(self, password: str | None = None) -> httpx.Response:
        password = password or PASSWORDS[self.email]
        response: httpx.Response = self.client.post(
            "/login", json={"email": self.email, "password": password}
        )
        return response

    def log_in(self, code: str | None = None) -> dict[str, Any]:
        """Log in all the way, setting 2FA up if the account demands it (R3)."""
        step = self.login().json()
        if step["status"] == "enrollment_required":
            self.phone = Phone(step["enrollment"]["secret"], self.clock)
            code = self.phone.code()
        elif step["status"] == "code_required":
            code = code or self.code()
        if code is not None:
            r = self.client.post("/login/code", json={"challenge": step["challenge"], "code": code})
            assert r.status_code == 200, r.text
            step = r.json()
            if "backup_codes" in step:
                self.backup_codes = step["backup_codes"]["codes"]
        self.token = step["token"]
        result: dict[str, Any] = step
        return result

    def turn_on(self) -> None:
        enrollment = self.call("POST", "/security/enrollment").json()
        self.phone = Phone(enrollment["secret"], self.clock)
        r = self.call("POST", "/security/enrollment/confirm", {"code": self.phone.code()})
        assert r.status_code == 200, r.text
        self.backup_codes = r.json()["codes"]

    def code(self) -> str:
        """A fresh code: the clock moves to the next 30 s step first (R4)."""
        assert self.phone is not None
        self.clock.advance(30)
        return self.phone.code()

    def status(self) -> dict[str, Any]:
        r = self.call("GET", "/security")
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


@pytest.fixture
def owner(client: TestClient, clock: ManualClock) -> User:
    u = User(client, clock, OWNER)
    u.log_in()
    return u


@pytest.fixture
def manager(client: TestClient, clock: ManualClock) -> User:
    u = User(client, clock, MANAGER)
    u.log_in()
    return u


@pytest.fixture
def member(client: TestClient, clock: ManualClock) -> User:
    u = User(client, clock, MEMBER)
    u.log_in()
    return u


def error(r: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["error"] == reason, body
    assert body["message"]
    return body


def require(owner: User, required: bool = True) -> httpx.Response:
    return owner.call("PUT", "/admin/account/two-factor-required", {"required": required})


# -- logging in (R1-R6) -----------------------------------------------------------------


def test_r2_password_is_enough_without_2fa(client: TestClient, clock: ManualClock) -> None:
    u = User(client, clock, MEMBER)
    body = u.login().json()
    assert body["status"] == "logged_in"
    assert body["user"]["role"] == "member"
    u.token = body["token"]
    assert u.call("GET", "/me").json()["email"] == MEMBER


def test_r61_wrong_password_is_400_invalid_credentials(client: TestClient) -> None:
    r = client.post("/login", json={"email": MEMBER, "password": "wrong password"})
    body = error(r, 400, "invalid_credentials")
    assert body["type"] == "InvalidCredentials"


def test_r1_with_2fa_login_asks_for_a_code(member: User, client: TestClient) -> None:
    member.turn_on()
    step = member.login().json()
    assert step["status"] == "code_required"
    assert "token" not in step
    r = client.post("/login/code", json={"challenge": step["challenge"], "code": member.code()})
    assert r.json()["status"] == "logged_in"
    assert r.json()["user"]["two_factor_enabled"] is True


def test_r4_a_used_code_is_refused(member: User, client: TestClient) -> None:
    member.turn_on()
    code = member.code()
    member.log_in(code)
    step = member.login().json()
    r = client.post("/login/code", json={"challenge": step["challenge"], "code": code})
    body = error(r, 400, "replayed")
    assert body["type"] == "InvalidCode"
    assert body["attempts_left"] == 4


def test_r5_backup_code_works_once_and_the_count_shows(member: User, client: TestClient) -> None:
    member.turn_on()
    code = member.backup_codes[0]
    member.log_in(code)
    assert member.status()["backup_codes_remaining"] == 9
    step = member.login().json()
    r = client.post("/login/code", json={"challenge": step["challenge"], "code": code})
    assert r.status_code == 400


def test_r6_an_expired_challenge_is_410(member: User, client: TestClient) -> None:
    member.turn_on()
    step = member.login().json()
    member.clock.advance(minutes=6)
    r = client.post("/login/code", json={"challenge": step["challenge"], "code": member.code()})
    error(r, 410, "expired")


def test_r6_too_many_wrong_codes_end_the_challenge(member: User, client: TestClient) -> None:
    member.turn_on()
    challenge = member.login().json()["challenge"]
    for left in (4, 3, 2, 1, 0):
        r = client.post("/login/code", json={"challenge": challenge, "code": "000000"})
        assert error(r, 400, "wrong")["attempts_left"] == left
    r = client.post("/login/code", json={"challenge": challenge, "code": member.code()})
    error(r, 410, "too_many_attempts")


def test_r6_throttled_is_429_with_retry_after(client: TestClient) -> None:
    for _ in range(6):
        client.post("/login", json={"email": MEMBER, "password": "wrong password"})
    r = client.post("/login", json={"email": MEMBER, "password": PASSWORDS[MEMBER]})
    body = error(r, 429, "throttled")
    assert r.headers["Retry-After"] == "2"
    assert body["retry_after"] == 2


def test_r61_a_missing_or_ended_token_is_401(member: User, client: TestClient) -> None:
    r = client.get("/security")
    error(r, 401, "missing_token")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = client.get("/security", headers={"Authorization": "Bearer not-a-token"})
    error(r, 401, "unknown")
    assert member.call("POST", "/logout").status_code == 204
    error(member.call("GET", "/security"), 401, "unknown")


def test_r61_invalid_input_is_422_without_echoing_it(client: TestClient) -> None:
    r = client.post("/login", json={"email": MEMBER, "password": "x" * 2000})
    body = error(r, 422, "invalid_input")
    assert "x" * 100 not in r.text
    assert body["detail"]
    r = client.post("/login", json={"email": " ", "password": "a password"})
    error(r, 422, "invalid_email")  # twostep's own InvalidInput


def test_r61_a_malformed_code_is_400_malformed(member: User, client: TestClient) -> None:
    member.turn_on()
    step = member.login().json()
    r = client.post("/login/code", json={"challenge": step["challenge"], "code": "12"})
    error(r, 400, "malformed")


def test_openapi_documents_every_route_and_the_bearer_scheme(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert {"/login", "/login/code", "/security/enrollment", "/admin/account"} <= set(doc["paths"])
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "429" in doc["paths"]["/login"]["post"]["responses"]
    assert client.get("/docs").status_code == 200


# -- caching and cookies -------------------------------------------------------------------


def test_no_response_is_cached_and_none_sets_a_cookie(
    client: TestClient, clock: ManualClock, owner: User
) -> None:
    seen: list[httpx.Response] = []
    client.event_hooks["response"].append(seen.append)
    member = User(client, clock, MEMBER)
    assert member.log_in()["token"]  # a session token
    member.turn_on()  # an enrolment secret, then backup codes
    new_codes = member.call("POST", "/security/backup-codes", {"code": member.code()})
    assert len(new_codes.json()["codes"]) == 10
    member.token = ""
    assert member.login().json()["challenge"]  # a challenge token
    require(owner)
    manager = User(client, clock, MANAGER)
    assert manager.login().json()["enrollment"]["secret"]  # R3: a secret in the login answer
    assert len(manager.log_in()["backup_codes"]["codes"]) == 10
    error(member.call("GET", "/me"), 401, "missing_token")
    error(client.post("/login", json={}), 422, "invalid_input")
    assert client.get("/docs").status_code == 200
    assert len(seen) >= 12
    for r in seen:
        assert r.headers.get("Cache-Control") == "no-store", r.request.url
        assert "Set-Cookie" not in r.headers, r.request.url  # bearer tokens only


# -- enrolment (R10, R11, R30) -------------------------------------------------------------


def test_r10_r30_enrolment_gives_qr_and_key_then_backup_codes(member: User) -> None:
    e = member.call("POST", "/security/enrollment").json()
    assert e["qr_svg"].startswith("<svg")
    assert e["secret_groups"].replace(" ", "") == e["secret"]
    assert e["otpauth_uri"].startswith("otpauth://totp/Example:member@acme.example?secret=")
    phone = Phone(e["secret"], member.clock)
    r = member.call("POST", "/security/enrollment/confirm", {"code": phone.code()})
    codes = r.json()
    assert len(codes["codes"]) == 10
    assert all(c in codes["text"] for c in codes["codes"])
    status = member.status()
    assert status["enabled"] is True
    assert status["backup_codes_remaining"] == 10


def test_r11_a_wrong_code_or_an_abandoned_enrolment_changes_nothing(member: User) -> None:
    member.call("POST", "/security/enrollment")
    error(member.call("POST", "/security/enrollment/confirm", {"code": "000000"}), 400, "wrong")
    status = member.status()
    assert status["enabled"] is False
    assert status["enrollment_pending"] is True
    member.clock.advance(minutes=11)
    assert member.status()["enrollment_pending"] is False


def test_r61_confirming_without_an_enrolment_is_403(member: User) -> None:
    r = member.call("POST", "/security/enrollment/confirm", {"code": "123456"})
    assert error(r, 403, "no_enrollment_in_progress")["rule"] == "R10"


# -- the account requirement (R3, R20-R22) -------------------------------------------------


def test_r20_r21_requiring_2fa_ends_every_session(owner: User, manager: User, member: User) -> None:
    assert require(owner).json() == {"required": True}
    for u in (owner, manager, member):
        error(u.call("GET", "/security"), 401, "revoked")


def test_r3_login_then_requires_enrolment_before_any_token(owner: User, member: User) -> None:
    require(owner)
    step = member.login().json()
    assert step["status"] == "enrollment_required"
    assert "token" not in step
    assert step["enrollment"]["qr_svg"].startswith("<svg")
    done = member.log_in()
    assert len(done["backup_codes"]["codes"]) == 10
    status = member.status()
    assert status == {
        "enabled": True,
        "required_by_account": True,
        "backup_codes_remaining": 10,
        "enrollment_pending": False,
    }


def test_r20_r22_only_owners_change_the_requirement(owner: User, manager: User) -> None:
    body = error(require(manager), 403, "owner_only")
    assert body["rule"] == "R20"
    require(owner)
    owner.log_in()  # R3: the owner sets up 2FA too
    manager.log_in()
    body = error(require(manager, False), 403, "owner_only")
    assert body["rule"] == "R22"
    assert require(owner, False).status_code == 200
    assert owner.call("GET", "/admin/account").json()["two_factor_required"] is False
    assert manager.status()["enabled"] is True  # R22: they keep it


# -- one's own 2FA (R31, R32, R40, R5) ------------------------------------------------------


def test_r31_turning_off_needs_a_current_code(member: User) -> None:
    member.turn_on()
    error(member.call("POST", "/security/disable", {"code": "000000"}), 400, "wrong")
    r = member.call("POST", "/security/disable", {"code": member.code()})
    assert r.json()["enabled"] is False


def test_r32_no_turning_off_while_required(owner: User, member: User) -> None:
    require(owner)
    member.log_in()
    r = member.call("POST", "/security/disable", {"code": member.code()})
    assert error(r, 403, "account_requires_two_factor")["rule"] == "R31/R32"
    assert member.status()["enabled"] is True


def test_r40_reset_keeps_the_old_phone_until_the_new_one_is_confirmed(
    owner: User, member: User, client: TestClient
) -> None:
    require(owner)
    member.log_in()
    old = member.phone
    assert old is not None
    e = member.call("POST", "/security/reset", {"code": member.code()}).json()
    new = Phone(e["secret"], member.clock)
    other = User(client, member.clock, MEMBER)
    other.phone = old
    other.log_in()  # the old phone still works (R11)
    member.clock.advance(30)
    r = member.call("POST", "/security/enrollment/confirm", {"code": new.code()})
    assert len(r.json()["codes"]) == 10
    step = other.login().json()
    r = client.post("/login/code", json={"challenge": step["challenge"], "code": other.code()})
    error(r, 400, "wrong")


def test_r40_reset_is_refused_when_not_required(member: User) -> None:
    member.turn_on()
    r = member.call("POST", "/security/reset", {"code": member.code()})
    assert error(r, 403, "account_does_not_require_two_factor")["rule"] == "R40"


def test_r5_new_backup_codes_replace_the_old_ones(member: User, client: TestClient) -> None:
    member.turn_on()
    old = member.backup_codes
    new = member.call("POST", "/security/backup-codes", {"code": old[0]}).json()["codes"]
    assert set(new).isdisjoint(old)
    step = member.login().json()
    r = client.post("/login/code", json={"challenge": step["challenge"], "code": old[1]})
    error(r, 400, "wrong")


# -- administration (R41, R50, R60) ----------------------------------------------------------


def test_r50_owners_and_managers_see_who_has_2fa_members_get_403(
    owner: User, manager: User, member: User
) -> None:
    member.turn_on()
    for u in (owner, manager):
        users = u.call("GET", "/admin/account").json()["users"]
        assert {x["email"]: x["two_factor_enabled"] for x in users} == {
            OWNER: False,
            MANAGER: False,
            MEMBER: True,
        }
    body = error(member.call("GET", "/admin/account"), 403, "owner_or_manager_only")
    assert body["rule"] == "R50"
    error(member.call("GET", "/admin/audit"), 403, "owner_or_manager_only")


def user_id(admin: User, email: str) -> str:
    users = admin.call("GET", "/admin/account").json()["users"]
    return next(str(u["user_id"]) for u in users if u["email"] == email)


def test_r41_the_owner_resets_a_member_whose_sessions_end(owner: User, member: User) -> None:
    member.turn_on()
    target = user_id(owner, MEMBER)
    assert owner.call("POST", f"/admin/users/{target}/reset-two-factor").status_code == 204
    error(member.call("GET", "/security"), 401, "revoked")
    assert member.login().json()["status"] == "logged_in"  # no code asked any more


def test_r41_managers_cannot_reset_and_unknown_users_are_404(
    owner: User, manager: User, member: User
) -> None:
    target = user_id(owner, MEMBER)
    r = manager.call("POST", f"/admin/users/{target}/reset-two-factor")
    assert error(r, 403, "owner_only")["rule"] == "R41"
    r = owner.call("POST", f"/admin/users/{'0' * 32}/reset-two-factor")
    error(r, 404, "unknown_user")
    r = owner.call("POST", f"/admin/users/{user_id(owner, OWNER)}/reset-two-factor")
    error(r, 403, "target_is_self")


def test_r60_the_audit_trail_lists_what_happened(owner: User, member: User) -> None:
    member.turn_on()
    events = owner.call("GET", "/admin/audit?limit=20").json()
    actions = [e["action"] for e in events]
    assert "two_factor_enabled" in actions
    assert not any(code in str(events) for code in member.backup_codes)


@pytest.mark.parametrize(
    ("error_value", "status"),
    [
        (ts.InvalidInput("bad", reason="invalid_email"), 422),
        (ts.InvalidCredentials("no"), 400),
        (ts.InvalidCode("no", reason="wrong"), 400),
        (ts.SessionInvalid("no", reason="revoked"), 401),
        (ts.NotAllowed("no", reason="owner_only", rule="R20"), 403),
        (ts.UnknownUser("no"), 404),
        (ts.EmailTaken("taken"), 409),  # for hosts that add a sign-up route
        (ts.ChallengeExpired("no", reason="expired"), 410),
        (ts.Throttled("wait", retry_after=7, scope="user"), 429),
    ],
)
def test_r61_every_error_maps_to_a_status_and_a_reason(
    error_value: ts.TwoStepError, status: int
) -> None:
    response = error_response(Request({"type": "http", "headers": []}), error_value)
    assert response.status_code == status
    assert json.loads(bytes(response.body))["error"] == error_value.reason
