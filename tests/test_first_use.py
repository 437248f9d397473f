"""What a new user runs into first (R10, R60, R61).

Odd secret sizes, the QR code on a dark page, an issuer with a colon, the key file
``twostep init`` wrote, and an audit trail that names people.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path

import pytest

import twostep as ts
from twostep.cli import main
from twostep.testing import FAST, ManualClock, Phone

from .conftest import PASSWORD, World


def owner_session(service: ts.TwoStep) -> ts.Session:
    account = service.create_account("Acme")
    service.create_user(account.id, "ada@acme.test", PASSWORD, ts.Role.OWNER)
    step = service.login("ada@acme.test", PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    return step.session


@pytest.mark.parametrize("size", [16, 20, 21, 22, 23, 24, 25, 32, 33])
def test_r10_any_secret_size_enrols_and_logs_in(store: ts.Store, size: int) -> None:
    # R126: a size that is not a multiple of 5 bytes makes a base32 key with a partial last
    # group: it must still enrol, open, and give the codes an app computes.
    clock = ManualClock()
    settings = dataclasses.replace(FAST, secret_bytes=size)
    service = ts.TwoStep(
        store, issuer="Acme", clock=clock, settings=settings, cipher=ts.AESGCMKeyring.generate()
    )
    session = owner_session(service)
    enrollment = service.begin_enrollment(session)
    assert "=" not in enrollment.secret
    assert f"secret={enrollment.secret}&" in enrollment.uri  # no padding in the URI
    padded = enrollment.secret + "=" * (-len(enrollment.secret) % 8)
    assert len(base64.b32decode(padded)) == size  # exactly the bytes asked for
    phone = Phone(enrollment.secret, clock)
    service.confirm_enrollment(session, phone.code())

    clock.advance(30)
    step = service.login("ada@acme.test", PASSWORD)
    assert isinstance(step, ts.CodeRequired)
    assert service.complete_login(step, phone.code()).session.two_factor_enabled


def test_r61_a_secret_size_below_128_bits_is_still_refused() -> None:
    with pytest.raises(ValueError, match="secret_bytes"):
        dataclasses.replace(FAST, secret_bytes=15)


def test_r10_the_qr_svg_has_a_light_background_by_default(service: ts.TwoStep) -> None:
    # On a dark page a transparent QR code shows dark modules on dark: unreadable.
    enrollment = service.begin_enrollment(owner_session(service))
    svg = enrollment.qr_svg()
    background = re.search(r'<path fill="(#[0-9a-f]+)" d="M0 0h(\d+)v(\d+)h-\d+z"/>', svg)
    assert background is not None
    assert background.group(1) in {"#fff", "#ffffff"}
    assert background.group(2) == background.group(3)  # it covers the whole square
    transparent = enrollment.qr_svg(light=None)
    assert 'fill="#fff' not in transparent
    assert "<path" in transparent


def test_r61_an_issuer_with_a_colon_is_refused() -> None:
    # R125: the key-URI format separates the issuer from the label by ':'.
    with pytest.raises(ts.InvalidInput) as raised:
        ts.TwoStep(ts.InMemoryStore(), issuer="Acme: Analytics", cipher=ts.AESGCMKeyring.generate())
    assert raised.value.reason == "invalid_issuer"
    assert ts.TwoStep(ts.InMemoryStore(), issuer="Acme", cipher=ts.AESGCMKeyring.generate())


def test_the_key_file_of_twostep_init_is_found_beside_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TWOSTEP_KEYS", "TWOSTEP_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    database = tmp_path / "app.db"
    assert main(["--database", str(database), "init"]) == 0
    written = ts.AESGCMKeyring.from_file(f"{database}.key")

    found = ts.AESGCMKeyring.from_environment(database=database)
    assert found.key_ids == written.key_ids
    # TwoStep on that SQLite file finds it too, with no cipher= and no variable.
    store = ts.SQLiteStore(database)
    try:
        service = ts.TwoStep(store, issuer="Acme", settings=FAST)
        enrollment = service.begin_enrollment(owner_session(service))
        assert enrollment.secret
    finally:
        store.close()
    # The environment still wins over the file.
    other = ts.AESGCMKeyring.new_key_line()
    monkeypatch.setenv("TWOSTEP_KEYS", other)
    assert ts.AESGCMKeyring.from_environment(database=database).key_ids == (other.split(":")[0],)


def test_without_any_key_the_error_names_where_the_key_file_would_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TWOSTEP_KEYS", "TWOSTEP_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    database = tmp_path / "app.db"
    with pytest.raises(ts.ConfigurationError, match=re.escape(f"{database}.key")):
        ts.AESGCMKeyring.from_environment(database=database)
    with pytest.raises(ts.ConfigurationError) as raised:
        ts.AESGCMKeyring.from_environment(database="postgresql://db.example/twostep")
    assert ".key" not in str(raised.value)
    with pytest.raises(ts.ConfigurationError, match="TWOSTEP_KEYS"):
        ts.TwoStep(ts.SQLiteStore(tmp_path / "other.db"), issuer="Acme")


def test_r60_an_audit_page_says_who_did_what_to_whom(world: World) -> None:
    service = world.service
    owner = world.login(world.owner)
    service.deactivate_user(owner, world.member.id)

    page = service.audit_page(owner, limit=3)
    newest = page.events[0]
    assert newest.action == ts.AuditAction.USER_DEACTIVATED
    assert page.who(newest.actor_id) == world.owner.email
    assert page.who(newest.target_id) == world.member.email
    assert page.who(None) is None
    assert page.actor_of(newest) == world.owner.email
    assert page.describe(newest) == (
        f"{world.owner.email}: user_deactivated of {world.member.email}: success"
    )
    # Only the users the page's events name.
    assert set(page.emails) == {world.owner.id, world.member.id}

    # A deleted user is named by id (the deletion's reason keeps the email it had); the
    # operator by what it is; repeats are counted.
    service.delete_user(owner, world.member.id)
    page = service.audit_page(owner, limit=1)
    assert page.describe(page.events[0]) == (
        f"{world.owner.email}: user_deleted of {world.member.id}: success ({world.member.email})"
    )
    created = service.audit_page(owner, action="user_created", limit=1)
    assert created.actor_of(created.events[0]) == "operator"
    repeated = dataclasses.replace(created.events[0], actor="anonymous", repeats=3)
    assert created.describe(repeated).startswith("anonymous: user_created of ")
    assert created.describe(repeated).endswith(", 3 times")


def test_r60_an_audit_page_names_no_user_of_another_account(world: World) -> None:
    # An event of this account can name a user id that now lives elsewhere only if ids
    # were reused; the emails come from this account's users alone, whatever the ids.
    service = world.service
    other = service.create_account("Globex")
    stranger = service.create_user(other.id, "eve@globex.test", PASSWORD)
    owner = world.login(world.owner)
    page = service.audit_page(owner, user_id=stranger.id)
    assert page.events == ()
    assert stranger.id not in page.emails
    assert page.who(stranger.id) == stranger.id
