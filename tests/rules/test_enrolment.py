"""Enrolment (R10, R11): the rules' tests, through the public API, on every store."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock, Phone

from ..conftest import PASSWORD, World, ask_code, store_snapshot
from .helpers import enrolled_session, require_2fa, stored_user

BACKUP_CODE = re.compile(r"[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}")


def test_r10_enrolment_shows_uri_qr_code_and_secret(
    world: World, store: ts.Store, keyring: ts.AESGCMKeyring
) -> None:
    service = ts.TwoStep(
        store,
        issuer="Acme & Analytics Co",
        clock=world.clock,
        settings=FAST,
        cipher=keyring,
    )
    session = service.check_session(world.login(world.member))
    enrollment = service.begin_enrollment(session)

    parts = urlsplit(enrollment.uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    issuer_part, colon, label_part = parts.path.removeprefix("/").partition(":")
    assert colon
    assert issuer_part == "Acme%20%26%20Analytics%20Co"  # spaces and the ampersand encoded
    assert unquote(issuer_part) == "Acme & Analytics Co"
    assert unquote(label_part) == world.member.email
    query = parse_qs(parts.query)
    assert query["secret"] == [enrollment.secret]
    assert query["issuer"] == ["Acme & Analytics Co"]
    assert enrollment.uri.startswith("otpauth://totp/Acme%20%26%20Analytics%20Co:")

    assert len(base64.b32decode(enrollment.secret + "=" * (-len(enrollment.secret) % 8))) >= 20
    groups = enrollment.secret_groups.split(" ")
    assert "".join(groups) == enrollment.secret
    assert all(len(g) == 4 for g in groups[:-1])
    assert 1 <= len(groups[-1]) <= 4

    assert "<svg" in enrollment.qr_svg()
    assert enrollment.qr_png().startswith(b"\x89PNG\r\n\x1a\n")
    text = enrollment.qr_text()
    assert len(text.splitlines()) > 10
    assert any(ch in text for ch in "█▀▄")


def test_r10_only_a_correct_code_turns_2fa_on_then_backup_codes_are_shown(
    world: World,
    store: ts.Store,
) -> None:
    session = world.login(world.member)
    enrollment = world.service.begin_enrollment(session)
    phone = Phone(enrollment.secret, world.clock)
    with pytest.raises(ts.InvalidCode):
        world.service.confirm_enrollment(session, f"{(int(phone.code()) + 1) % 1_000_000:06d}")
    assert world.service.two_factor_status(session).enabled is False

    codes = world.service.confirm_enrollment(session, phone.code())
    assert world.service.two_factor_status(session).enabled is True
    assert len(codes) == FAST.backup_code_count == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert BACKUP_CODE.fullmatch(code)  # 10 symbols of a 32-letter alphabet: 50 bits
    # Stored hashed only, and the TOTP secret only sealed: neither can be read back.
    dump = repr(store_snapshot(store))
    for code in codes:
        assert code not in dump
        assert code.replace("-", "") not in dump
    assert enrollment.secret not in dump


def test_r10_backup_codes_may_be_typed_without_separator_in_any_case(world: World) -> None:
    enrolled_session(world, world.member)
    codes = world.backup_codes[world.member.id]
    for typed in (codes[0].replace("-", "").upper(), f"  {codes[1].upper()} ", codes[2]):
        step = ask_code(world.service, world.member.email)
        done = world.service.complete_login(step, typed)
        assert done.session.user_id == world.member.id
    session = world.service.check_session(done.session)
    assert world.service.two_factor_status(session).backup_codes_remaining == 7


def test_r10_the_backup_code_count_follows_the_settings(
    store: ts.Store, clock: ManualClock, keyring: ts.AESGCMKeyring
) -> None:
    service = ts.TwoStep(
        store,
        issuer="Acme",
        clock=clock,
        settings=replace(FAST, backup_code_count=12),
        cipher=keyring,
    )
    account = service.create_account("A")
    user = service.create_user(account.id, "a@a.test", PASSWORD)
    step = service.login(user.email, PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    enrollment = service.begin_enrollment(step.session)
    codes = service.confirm_enrollment(step.session, Phone(enrollment.secret, clock).code())
    assert len(codes) == 12


def test_r11_an_abandoned_enrolment_leaves_the_user_as_before(
    world: World, store: ts.Store
) -> None:
    session = world.login(world.member)
    before = stored_user(store, world.member.id)
    enrollment = world.service.begin_enrollment(session)
    status = world.service.two_factor_status(session)
    assert status.enabled is False
    assert status.enrollment_pending is True
    # Still logs in with the password alone (R2).
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.LoggedIn)
    after = stored_user(store, world.member.id)
    assert after.two_factor.secret is None
    assert after.backup_codes == before.backup_codes is None
    # The parked secret expires.
    world.clock.advance(seconds=FAST.enrollment_ttl.total_seconds())
    assert world.service.two_factor_status(session).enrollment_pending is False
    with pytest.raises(ts.ChallengeExpired):
        world.service.confirm_enrollment(session, Phone(enrollment.secret, world.clock).code())
    assert world.service.two_factor_status(session).enabled is False


def test_r11_an_abandoned_reset_keeps_the_old_device_and_codes(
    world: World, store: ts.Store
) -> None:
    require_2fa(world)
    session = world.login(world.member)
    before = stored_user(store, world.member.id)
    world.service.begin_reset(session, world.fresh_code(world.member.id))
    after = stored_user(store, world.member.id)
    assert after.two_factor.secret == before.two_factor.secret
    assert after.backup_codes == before.backup_codes
    assert after.two_factor.enabled_at == before.two_factor.enabled_at
    status = world.service.two_factor_status(session)
    assert (status.enabled, status.backup_codes_remaining) == (True, 10)
    # The old phone and the old backup codes still log in.
    world.login(world.member)
    step = ask_code(world.service, world.member.email)
    world.service.complete_login(step, world.backup_codes[world.member.id][0])
