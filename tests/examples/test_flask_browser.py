"""The Flask example end to end in a real headless Chromium, driven by Playwright.

The app runs in a thread on a real clock; pyotp plays the users' phones, reading the
secret key from the set-up page as a person would type it, and a reset link is read
from what the app prints. Screenshots of the set-up and backup-codes screens, and of
the forgotten-password reset, go to ``test-artifacts/``. Without Chromium or Playwright
the test is skipped, unless ``TWOSTEP_REQUIRE_BROWSER=1`` (CI), where it fails.

The grace period, a remembered device and a login with a passkey run against the
example served at http://localhost (a secure context, as WebAuthn needs), with
security keys for ``localhost`` and Chromium's virtual authenticator (the DevTools
``WebAuthn`` domain) standing in for a key.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyotp
import pytest
from examples.flask_app import seed
from examples.flask_app.app import RESET_LINK_PREFIX, create_app, passkey_settings
from werkzeug.serving import make_server

import twostep as ts
from twostep.testing import FAST

from .conftest import MEMBER, OWNER, PASSWORDS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
NEW_PASSWORD = "a-brand-new-pass"
CHROMIUM = Path(os.environ.get("TWOSTEP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def unavailable(why: str) -> None:
    if os.environ.get("TWOSTEP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"TWOSTEP_REQUIRE_BROWSER=1 but {why} (run scripts/ci-browser.sh)")
    pytest.skip(why)


@pytest.fixture
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed")
    if not CHROMIUM.exists():
        unavailable(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    """The Flask example on 127.0.0.1, a free port, SQLite, the real clock."""
    store = ts.SQLiteStore(tmp_path / "twostep.db")
    service = ts.TwoStep(
        store, issuer="twostep Flask example", settings=FAST, cipher=ts.AESGCMKeyring.generate()
    )
    seed.seed(service)
    # Plain http: cookies without Secure (and so without the __Host- prefix).
    app = create_app(service, secret_key=secrets.token_hex(32), secure_cookies=False)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    store.close()


@pytest.fixture
def localhost_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The Flask example at http://localhost:<port>, with security keys for it (R100)."""
    holder: dict[str, Callable[..., Iterable[bytes]]] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return holder["app"](environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    monkeypatch.delenv("TWOSTEP_ORIGIN", raising=False)
    store = ts.SQLiteStore(tmp_path / "twostep.db")
    service = ts.TwoStep(
        store,
        issuer="twostep Flask example",
        settings=FAST,
        cipher=ts.AESGCMKeyring.generate(),
        passkeys=passkey_settings(port),  # rp_id "localhost", origin http://localhost:<port>
    )
    seed.seed(service)
    holder["app"] = create_app(service, secret_key=secrets.token_hex(32), secure_cookies=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{port}"
    server.shutdown()
    thread.join(timeout=10)
    store.close()


def log_in(page: Page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORDS[email])
    page.click("#login")


def phone_code(page: Page) -> str:
    """What an authenticator app shows for the key typed in from the set-up page (R10)."""
    secret = page.inner_text("#secret-key").replace(" ", "")
    return pyotp.TOTP(secret).now()


def enter_code(page: Page, code: str, button: str) -> None:
    page.fill("input[name=code]", code)
    page.click(button)


def flash(page: Page) -> str:
    return " ".join(page.locator(".flash").all_inner_texts())


def test_r3_r10_r20_r41_in_a_browser(browser: Browser, base_url: str) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    owner = browser.new_context().new_page()
    member = browser.new_context(accept_downloads=True).new_page()

    # R20, R21: the owner requires 2FA for all users and is logged out with everyone.
    log_in(owner, base_url, OWNER)
    expect(owner).to_have_url(f"{base_url}/security")
    [cookie] = owner.context.cookies()  # the one cookie, as Chromium keeps it
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("session", True, "Lax")
    owner.click("#nav-admin")
    owner.click("#require-on")
    expect(owner).to_have_url(f"{base_url}/login")
    assert "everyone was logged out" in flash(owner)

    # R3: the owner, without 2FA, sets it up inside the next login.
    log_in(owner, base_url, OWNER)
    expect(owner.locator("#qr svg")).to_be_visible()
    enter_code(owner, phone_code(owner), "#confirm")
    expect(owner.locator("#backup-codes li")).to_have_count(10)
    owner.click("#continue")
    expect(owner.locator("#status")).to_contain_text("on, and your account requires it")

    # R3, R10: the member sets 2FA up at login: QR code and key, then the code.
    log_in(member, base_url, MEMBER)
    expect(member.locator("#qr svg")).to_be_visible()
    expect(member.locator("#secret-key")).to_be_visible()
    member.screenshot(path=str(ARTIFACTS / "flask-setup.png"), full_page=True)
    enter_code(member, phone_code(member), "#confirm")

    # R10: the backup codes, shown once, with a download as text.
    expect(member.locator("#backup-codes li")).to_have_count(10)
    codes = member.locator("#backup-codes li").all_inner_texts()
    member.screenshot(path=str(ARTIFACTS / "flask-backup-codes.png"), full_page=True)
    with member.expect_download() as download_info:
        member.click("#download")
    download = download_info.value
    assert download.suggested_filename == "backup-codes.txt"
    saved = Path(download.path()).read_text()
    assert all(code in saved for code in codes)

    # R1, R5: after logging out, a backup code is the second step.
    member.click("#logout")
    expect(member).to_have_url(f"{base_url}/login")
    log_in(member, base_url, MEMBER)
    expect(member).to_have_url(f"{base_url}/login/code")
    enter_code(member, codes[0], "#verify")
    expect(member).to_have_url(f"{base_url}/security")
    expect(member.locator("#remaining")).to_contain_text("Backup codes left: 9")
    expect(member.locator("#nav-admin")).to_have_count(0)  # R50

    # R41: the owner resets the member, whose session ends at once.
    owner.click("#nav-admin")
    owner.click("#nav-users")
    row = owner.locator(f'tr[data-email="{MEMBER}"]')
    expect(row.locator(".two-factor")).to_have_text("on")
    row.locator("button.reset").click()
    assert "2FA was reset" in flash(owner)
    expect(owner.locator(f'tr[data-email="{MEMBER}"] .two-factor')).to_have_text("off")

    member.reload()
    expect(member).to_have_url(f"{base_url}/login")
    assert "You were logged out" in flash(member)
    log_in(member, base_url, MEMBER)  # R3: set up again, since the account requires it
    expect(member.locator("#secret-key")).to_be_visible()


def test_r86_r87_a_user_with_2fa_resets_a_forgotten_password_in_a_browser(
    browser: Browser, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_context().new_page()

    # The member turns 2FA on from the Security page; pyotp is the phone.
    log_in(page, base_url, MEMBER)
    page.click("#turn-on")
    secret = page.inner_text("#secret-key").replace(" ", "")
    phone = pyotp.TOTP(secret)
    enter_code(page, phone.now(), "#confirm")
    expect(page.locator("#backup-codes li")).to_have_count(10)
    page.click("#continue")
    page.click("#logout")

    # R86: "forgot your password?" asks for the email; the link goes to the console.
    capsys.readouterr()
    page.click("#forgot")
    page.fill("input[name=email]", MEMBER)
    page.screenshot(path=str(ARTIFACTS / "flask-forgot-password.png"), full_page=True)
    page.click("#send-link")
    expect(page.locator("#sent")).to_contain_text("If the address has an account")
    printed = capsys.readouterr().out
    found = re.search(re.escape(f"{RESET_LINK_PREFIX}{MEMBER}: ") + r"(\S+)", printed)
    assert found, printed

    page.goto(found.group(1))
    page.fill("input[name=new_password]", NEW_PASSWORD)
    page.fill("input[name=repeat_password]", NEW_PASSWORD)
    page.screenshot(path=str(ARTIFACTS / "flask-reset-password.png"), full_page=True)
    page.click("#set-password")
    expect(page).to_have_url(f"{base_url}/login")
    assert "Log in with it" in flash(page)

    # R87: the new password is step 1 only; 2FA still asks for the code.
    page.fill("input[name=email]", MEMBER)
    page.fill("input[name=password]", NEW_PASSWORD)
    page.click("#login")
    expect(page).to_have_url(f"{base_url}/login/code")
    # The set-up's code may not be used again (R4): the next step's, within the drift.
    enter_code(page, phone.at(time.time() + 30), "#verify")
    expect(page).to_have_url(f"{base_url}/security")
    expect(page.locator("#status")).to_contain_text("on")
    page.screenshot(path=str(ARTIFACTS / "flask-after-reset.png"), full_page=True)


def turn_on_2fa(page: Page) -> pyotp.TOTP:
    """From the security page: the app is set up and the backup codes shown (R30)."""
    from playwright.sync_api import expect

    page.click("#turn-on")
    phone = pyotp.TOTP(page.inner_text("#secret-key").replace(" ", ""))
    enter_code(page, phone.now(), "#confirm")
    expect(page.locator("#backup-codes li")).to_have_count(10)
    page.click("#continue")
    return phone


def test_r95_a_member_inside_a_grace_period_sees_the_deadline(
    browser: Browser, localhost_url: str
) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    owner = browser.new_context().new_page()
    member = browser.new_context().new_page()

    # R95: the owner requires 2FA of everyone with 7 days to set it up, and is logged out.
    log_in(owner, localhost_url, OWNER)
    owner.click("#nav-admin")
    owner.select_option("#required-of", "everyone")
    owner.fill("#grace-days", "7")
    owner.click("#require-save")
    expect(owner).to_have_url(f"{localhost_url}/login")
    assert "everyone was logged out" in flash(owner)

    # The owner, without 2FA, comes back with the password alone and sees the setting.
    log_in(owner, localhost_url, OWNER)
    expect(owner.locator("#enroll-by")).to_be_visible()
    owner.click("#nav-admin")
    expect(owner.locator("#requirement")).to_contain_text("for 7 days to set it up")

    # The member logs in with the password alone and is asked, on every page, to enrol.
    log_in(member, localhost_url, MEMBER)
    expect(member).to_have_url(f"{localhost_url}/security")
    expect(member.locator("#enroll-by")).to_contain_text("turn it on by")
    member.screenshot(path=str(ARTIFACTS / "flask-grace-period.png"), full_page=True)
    member.click("#enroll-by a")
    turn_on_2fa(member)
    expect(member.locator("#enroll-by")).to_have_count(0)


def test_r98_a_remembered_device_skips_the_code_after_a_logout(
    browser: Browser, localhost_url: str
) -> None:
    from playwright.sync_api import expect

    page = browser.new_context().new_page()
    log_in(page, localhost_url, MEMBER)
    phone = turn_on_2fa(page)
    page.click("#logout")

    # R98: a code login with "remember this device" ticked.
    log_in(page, localhost_url, MEMBER)
    expect(page).to_have_url(f"{localhost_url}/login/code")
    page.check("#remember")
    enter_code(page, phone.at(time.time() + 30), "#verify")  # not the set-up's code (R4)
    expect(page).to_have_url(f"{localhost_url}/security")
    [device] = [c for c in page.context.cookies() if c["name"] == "twostep_device"]
    assert (device["httpOnly"], device["sameSite"]) == (True, "Lax")
    assert device["expires"] > time.time() + 29 * 24 * 3600  # about 30 days
    expect(page.locator("#remembered-devices")).to_contain_text("this device")

    # The device outlives the logout: the password alone logs in, without the code step.
    page.click("#logout")
    log_in(page, localhost_url, MEMBER)
    expect(page).to_have_url(f"{localhost_url}/security")

    # Forgotten, it asks for the code again.
    page.click("#remembered-devices button.forget")
    assert "will ask for a code again" in flash(page)
    page.click("#logout")
    log_in(page, localhost_url, MEMBER)
    expect(page).to_have_url(f"{localhost_url}/login/code")


def test_r101_r103_a_user_adds_a_passkey_and_logs_in_with_it(
    browser: Browser, localhost_url: str
) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_context().new_page()
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )

    # R101: the member adds a key on the security page; the page runs the ceremony.
    log_in(page, localhost_url, MEMBER)
    page.fill("#add-key-form input[name=name]", "My laptop")
    page.click("#add-key")
    expect(page.locator("#security-keys tr.security-key")).to_have_count(1)
    assert "My laptop" in flash(page)
    stored = cdp.send(
        "WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]}
    )
    assert len(stored["credentials"]) == 1
    page.screenshot(path=str(ARTIFACTS / "flask-security-keys.png"), full_page=True)

    # R102, R103: the key is a second factor: the login asks for it, and it answers.
    page.click("#logout")
    log_in(page, localhost_url, MEMBER)
    expect(page).to_have_url(f"{localhost_url}/login/code")
    page.click("#use-key")
    expect(page).to_have_url(f"{localhost_url}/security")
    expect(page.locator("#security-keys")).to_contain_text("My laptop")
    stored = cdp.send(
        "WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]}
    )
    assert stored["credentials"][0]["signCount"] >= 1  # R104: the key counted its use
