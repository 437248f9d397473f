"""The Flask example end to end in a real headless Chromium, driven by Playwright.

The app runs in a thread on a real clock; pyotp plays the users' phones, reading the
secret key from the set-up page as a person would type it. Screenshots of the set-up
and backup-codes screens go to ``test-artifacts/``. Without Chromium or Playwright
the test is skipped, unless ``TWOSTEP_REQUIRE_BROWSER=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyotp
import pytest
from examples.flask_app import seed
from examples.flask_app.app import create_app
from werkzeug.serving import make_server

import twostep as ts
from twostep.testing import FAST

from .conftest import MEMBER, OWNER, PASSWORDS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
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
