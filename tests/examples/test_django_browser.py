"""The Django example (examples/django_app) end to end in a real headless Chromium.

The example runs in a child process (Django is configured once per process) on a real
clock, set up as its README says; pyotp plays the phone, reading the key from the
set-up page as a person would type it. The owner logs in with Django's password,
turns two-step login on, logs out, and logs in again with the password and a code
(R1, R10, R93, R94). Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyotp
import pytest

from .test_flask_browser import ARTIFACTS, ROOT, browser

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

__all__ = ["browser"]  # the fixture, shared with the Flask example's test

OWNER, PASSWORD = "ada", "a Django password for the example"


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    """The example on 127.0.0.1 (plain http, so without Secure cookies), data in tmp_path."""
    env = {
        **os.environ,
        "DJANGO_DATABASE": str(tmp_path / "django.db"),
        "TWOSTEP_DATABASE": str(tmp_path / "twostep.db"),
        "TWOSTEP_INSECURE_COOKIES": "1",
    }
    for name in ("TWOSTEP_KEYS", "TWOSTEP_KEY_FILE", "TWOSTEP_ACCOUNT_ID"):
        env.pop(name, None)  # the key file that `manage.py twostep init` writes is used
    server = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "tests.examples.django_server", OWNER, PASSWORD],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()  # printed once the socket listens
        assert port.isdigit(), f"the example did not start (exit status {server.poll()})"
        assert (tmp_path / "twostep.db.key").exists()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def log_in(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/")  # a page behind login: Django sends the browser to log in
    page.fill("input[name=username]", OWNER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Next')")


def test_r94_log_in_to_the_django_example_with_a_code(browser: Browser, base_url: str) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_context().new_page()

    # R2: without 2FA the password is enough.
    log_in(page, base_url)
    expect(page.locator("#welcome")).to_have_text(f"Hello {OWNER}@acme.example")

    # R30, R10: turn it on from the security page, with the key typed into the phone.
    page.click("a:has-text('Security')")
    page.click("button:has-text('Turn on')")
    expect(page.locator(".qr svg")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "django-setup.png"))
    phone = pyotp.TOTP(page.inner_text("code.key").replace(" ", ""))
    page.fill("input[name=code]", phone.now())
    page.click("button:has-text('Turn on')")
    expect(page.locator("h1")).to_have_text("Your backup codes")
    assert page.locator("ul.codes li").count() == 10
    page.screenshot(path=str(ARTIFACTS / "django-backup-codes.png"))

    # R1, R93, R94: log out; Django's password, then the code of the next time step
    # (R4: the enrolment's own code would be a replay; one step of drift is accepted).
    page.click("button:has-text('Log out')")
    log_in(page, base_url)
    expect(page.locator("h1")).to_have_text("Enter the code")
    page.fill("input[name=code]", "000000")
    page.click("button:has-text('Log in')")
    expect(page.locator(".error")).to_contain_text("That code did not work.")
    page.fill("input[name=code]", phone.at(datetime.now(UTC) + timedelta(seconds=30)))
    page.click("button:has-text('Log in')")
    expect(page.locator("#welcome")).to_have_text(f"Hello {OWNER}@acme.example")
    assert "on for you" in page.inner_text("main")
