"""Security keys (WebAuthn) as a second factor (R100-R109), through the public API.

Real ceremonies, without a browser: tests/authenticator.py is a software security key
(P-256, "none" and "packed" attestations) that answers twostep's options JSON as a
browser's ``PublicKeyCredential.toJSON()`` would, and py_webauthn verifies it. Every
story runs on each store, PostgreSQL included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta

import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock

from .authenticator import ORIGIN, RP_ID, SoftKey, b64, unb64
from .conftest import ALL_STORES, PASSWORD, World, ask_code, every_store, store_snapshot

PASSKEYS = ts.PasskeySettings(rp_id=RP_ID, origin=ORIGIN, rp_name="Acme", max_keys=3)


store = pytest.fixture(params=ALL_STORES, name="store")(every_store)  # PostgreSQL too


@pytest.fixture
def service(store: ts.Store, clock: ManualClock, keyring: ts.AESGCMKeyring) -> ts.TwoStep:
    return ts.TwoStep(
        store,
        issuer="Acme Analytics",
        clock=clock,
        settings=FAST,
        cipher=keyring,
        passkeys=PASSKEYS,
    )


def register(
    world: World, session: ts.Session, name: str = "YubiKey", **options: object
) -> tuple[SoftKey, ts.SecurityKeyInfo]:
    key = SoftKey(**options)  # type: ignore[arg-type]
    created = key.create(world.service.begin_security_key_registration(session))
    return key, world.service.finish_security_key_registration(session, created, name)


def key_login(world: World, user: ts.User, key: SoftKey) -> ts.LoggedIn:
    step = ask_code(world.service, user.email)
    assertion = key.get(world.service.security_key_login_options(step))
    return world.service.complete_login_with_security_key(step, assertion)


def events(world: World, action: ts.AuditAction) -> list[ts.AuditEvent]:
    with world.service._context.store.transaction(write=False) as tx:
        return [e for e in tx.audit_events(world.account.id, 500) if e.action == action]


# -- registering and listing (R101, R105) ------------------------------------------------------


def test_r101_register_two_keys_and_list_them(world: World) -> None:
    session = world.login(world.member)
    options = json.loads(world.service.begin_security_key_registration(session))
    assert options["rp"] == {"id": RP_ID, "name": "Acme"}
    assert options["user"]["name"] == world.member.email
    assert world.member.id not in json.dumps(options)  # the user handle is opaque
    assert options["excludeCredentials"] == []

    first, info = register(world, session, "YubiKey", fmt="packed")
    world.clock.advance(5)
    # The second registration excludes the first key (the browser will not re-register it).
    options = json.loads(world.service.begin_security_key_registration(session))
    assert [c["id"] for c in options["excludeCredentials"]] == [first.id]
    second = SoftKey()
    other = world.service.finish_security_key_registration(
        session, second.create(json.dumps(options)), "  Backup key  "
    )

    listed = world.service.list_security_keys(session)
    assert listed == (info, other)
    assert (info.name, other.name) == ("YubiKey", "Backup key")
    assert info.last_used_at is None
    assert other.created_at == info.created_at + timedelta(seconds=5)
    # R105/R108: no credential id nor public key anywhere a host would print.
    for shown in (repr(listed), repr(world.service.two_factor_status(session))):
        assert first.id not in shown
        assert second.id not in shown
    assert world.service.two_factor_status(session).security_keys == 2
    assert world.service.check_session(session).two_factor_enabled is True


def test_r101_names_are_unique_per_user_in_any_case_and_bounded(world: World) -> None:
    session = world.login(world.member)
    register(world, session, "YubiKey")
    key = SoftKey()
    created = key.create(world.service.begin_security_key_registration(session))
    with pytest.raises(ts.NotAllowed) as taken:
        world.service.finish_security_key_registration(session, created, "yubikey")
    assert (taken.value.reason, taken.value.rule) == ("security_key_name_taken", "R101")
    for bad in ("", "   ", "x" * 65, "tab\there", 42, None):
        with pytest.raises(ts.InvalidInput):
            world.service.finish_security_key_registration(session, created, bad)  # type: ignore[arg-type]
    # The refusals did not use the challenge: the same response goes through, renamed.
    world.service.finish_security_key_registration(session, created, "x" * 64)
    # Another user may use the same name.
    register(world, world.login(world.manager), "YubiKey")


def test_r101_a_registration_challenge_is_single_use_and_expires(world: World) -> None:
    session = world.login(world.member)
    options = world.service.begin_security_key_registration(session)
    created = SoftKey().create(options)
    world.service.finish_security_key_registration(session, created, "One")
    with pytest.raises(ts.ChallengeExpired) as used:
        world.service.finish_security_key_registration(session, created, "Two")
    assert used.value.reason == "unknown"

    late = SoftKey().create(world.service.begin_security_key_registration(session))
    world.clock.advance(FAST.enrollment_ttl.total_seconds())
    with pytest.raises(ts.ChallengeExpired) as expired:
        world.service.finish_security_key_registration(session, late, "Late")
    assert expired.value.reason == "expired"
    with pytest.raises(ts.ChallengeExpired):  # and it is gone
        world.service.finish_security_key_registration(session, late, "Late")
    assert len(world.service.list_security_keys(session)) == 1


def test_r101_bent_registration_responses_are_refused(world: World) -> None:
    session = world.login(world.member)
    other_session = world.login(world.manager)

    def attempt(bend: dict[str, object]) -> ts.TwoStepError:
        options = world.service.begin_security_key_registration(session)
        created = SoftKey().create(options, **bend)  # type: ignore[arg-type]
        with pytest.raises(ts.TwoStepError) as refused:
            world.service.finish_security_key_registration(session, created, "Key")
        return refused.value

    wrong_origin = attempt({"origin": "https://evil.example.test"})
    assert (type(wrong_origin), wrong_origin.reason) == (ts.InvalidCode, "wrong")
    wrong_rp = attempt({"rp_id": "evil.example.test"})
    assert (type(wrong_rp), wrong_rp.reason) == (ts.InvalidCode, "wrong")
    unknown = attempt({"challenge": b64(os.urandom(32))})
    assert (type(unknown), unknown.reason) == (ts.ChallengeExpired, "unknown")
    # Another user's registration challenge is not this user's.
    theirs = SoftKey().create(world.service.begin_security_key_registration(other_session))
    with pytest.raises(ts.ChallengeExpired):
        world.service.finish_security_key_registration(session, theirs, "Key")
    assert world.service.list_security_keys(session) == ()
    failures = events(world, ts.AuditAction.SECURITY_KEY_REGISTERED)
    assert {e.outcome for e in failures} == {ts.Outcome.FAILURE}
    assert sorted(e.reason or "" for e in failures) == ["unknown", "unknown", "wrong", "wrong"]


def test_r109_malformed_registration_responses_change_nothing(world: World) -> None:
    session = world.login(world.member)
    options = world.service.begin_security_key_registration(session)
    good = json.loads(SoftKey().create(options))
    no_client_data = {**good, "response": {**good["response"], "clientDataJSON": "!!"}}
    before = store_snapshot(world.service._context.store)
    for bad in (
        "",
        "not json",
        "[]",
        "{}",
        json.dumps(no_client_data),
        "x" * (3 * 2**20),
        json.dumps({**good, "pad": "x" * 2**17}),
        "[" * 100_000,
        None,
        42,
        good,
    ):
        with pytest.raises(ts.InvalidInput) as refused:
            world.service.finish_security_key_registration(session, bad, "Key")  # type: ignore[arg-type]
        assert refused.value.reason == "invalid_credential"
    assert store_snapshot(world.service._context.store) == before


def test_r101_at_most_max_keys_and_no_key_twice(world: World) -> None:
    session = world.login(world.member)
    keys = [register(world, session, f"Key {n}")[0] for n in range(PASSKEYS.max_keys)]
    with pytest.raises(ts.NotAllowed) as full:
        world.service.begin_security_key_registration(session)
    assert full.value.reason == "too_many_security_keys"
    # The same authenticator credential cannot be registered by someone else.
    other = world.login(world.manager)
    created = keys[0].create(world.service.begin_security_key_registration(other))
    with pytest.raises(ts.NotAllowed) as twice:
        world.service.finish_security_key_registration(other, created, "Mine")
    assert twice.value.reason == "security_key_registered"
    assert world.service.list_security_keys(other) == ()


# -- logging in with a key (R102-R104) ---------------------------------------------------------


def test_r102_a_user_with_only_a_key_logs_in_with_it(world: World) -> None:
    session = world.login(world.member)
    key, info = register(world, session)
    step = ask_code(world.service, world.member.email)
    assert step.second_factors == ("security_key",)
    options = json.loads(world.service.security_key_login_options(step))
    assert options["rpId"] == RP_ID
    assert [c["id"] for c in options["allowCredentials"]] == [key.id]
    assert options["allowCredentials"][0]["transports"] == ["nfc", "usb"]
    # The options may be asked again: the same challenge while the login lives.
    assert json.loads(world.service.security_key_login_options(step.challenge)) == options

    world.clock.advance(7)
    done = world.service.complete_login_with_security_key(step, key.get(json.dumps(options)))
    assert done.backup_codes is None
    assert done.session.two_factor_enabled is True
    assert world.service.check_session(done.session).user_id == world.member.id
    (listed,) = world.service.list_security_keys(done.session)
    assert listed.last_used_at == world.clock.now()
    assert listed.id == info.id
    logins = events(world, ts.AuditAction.LOGIN)
    assert logins[0].reason == "security_key"
    assert logins[0].outcome is ts.Outcome.SUCCESS


def test_r102_a_key_satisfies_the_account_requirement(world: World) -> None:
    owner = world.login(world.owner)
    world.enroll(owner)
    member = world.login(world.member)
    key, _ = register(world, member)
    world.service.set_two_factor_required(world.login(world.owner), True)
    # R21: everyone was logged out; the member logs in with the key, no enrolment asked.
    with pytest.raises(ts.SessionInvalid):
        world.service.check_session(member)
    session = key_login(world, world.member, key).session
    assert world.service.check_session(session).two_factor_enabled is True
    overview = world.service.two_factor_overview(world.login(world.owner))
    row = next(u for u in overview.users if u.user_id == world.member.id)
    assert (row.two_factor_enabled, row.security_keys, row.backup_codes_remaining) == (True, 1, 0)
    page = world.service.list_users(world.login(world.owner), two_factor=True)
    assert world.member.id in {u.user_id for u in page.users}


def test_r102_an_app_and_a_key_both_work(world: World) -> None:
    session = world.login(world.member)
    world.enroll(session)
    key, _ = register(world, session)
    step = ask_code(world.service, world.member.email)
    assert step.second_factors == ("totp", "security_key")
    key_login(world, world.member, key)
    world.login(world.member)  # with the app


def test_r103_bent_assertions_count_as_wrong_codes(world: World) -> None:
    member = world.login(world.member)
    key, _ = register(world, member)
    stranger = SoftKey()  # never registered
    other_key, _ = register(world, world.login(world.manager))
    step = ask_code(world.service, world.member.email)
    options = world.service.security_key_login_options(step)
    bent = [
        key.get(options, origin="https://evil.example.test"),
        key.get(options, rp_id="evil.example.test"),
        key.get(options, challenge=b64(os.urandom(32))),
        stranger.get(options, credential_id=stranger.credential_id),
        other_key.get(options, credential_id=other_key.credential_id),  # another user's key
    ]
    lefts = []
    for assertion in bent[:4]:
        with pytest.raises(ts.InvalidCode) as wrong:
            world.service.complete_login_with_security_key(step, assertion)
        assert wrong.value.reason == "wrong"
        lefts.append(wrong.value.attempts_left)
    assert lefts == [4, 3, 2, 1]
    with pytest.raises(ts.InvalidCode):
        world.service.complete_login_with_security_key(step, bent[4])
    # R6: the challenge had its attempts; even the right key is refused now.
    with pytest.raises(ts.ChallengeExpired) as dead:
        world.service.complete_login_with_security_key(step, key.get(options))
    assert dead.value.reason == "too_many_attempts"
    failures = [e for e in events(world, ts.AuditAction.LOGIN) if e.outcome is ts.Outcome.FAILURE]
    assert [e.reason for e in failures][-5:] == ["wrong"] * 5
    for event in failures:
        assert key.id not in repr(event)
        assert other_key.id not in repr(event)


def test_r103_a_forged_signature_is_wrong(world: World) -> None:
    key, _ = register(world, world.login(world.member))
    step = ask_code(world.service, world.member.email)
    good = json.loads(key.get(world.service.security_key_login_options(step)))
    signature = bytearray(unb64(good["response"]["signature"]))
    signature[-1] ^= 1
    good["response"]["signature"] = b64(bytes(signature))
    with pytest.raises(ts.InvalidCode) as wrong:
        world.service.complete_login_with_security_key(step, json.dumps(good))
    assert wrong.value.reason == "wrong"


def test_r103_an_assertion_logs_in_once(world: World) -> None:
    key, _ = register(world, world.login(world.member))
    step = ask_code(world.service, world.member.email)
    assertion = key.get(world.service.security_key_login_options(step))
    world.service.complete_login_with_security_key(step, assertion)
    with pytest.raises(ts.ChallengeExpired) as used:  # the login challenge is spent
        world.service.complete_login_with_security_key(step, assertion)
    assert used.value.reason == "unknown"
    # Replayed on a new login, it answers the old challenge: wrong.
    again = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode) as replayed:
        world.service.complete_login_with_security_key(again, assertion)
    assert replayed.value.reason == "wrong"


def test_r103_assertions_are_throttled_with_codes(world: World) -> None:
    session = world.login(world.member)
    world.enroll(session)
    key, _ = register(world, session)
    # Wrong codes and wrong assertions count on the same user key (R6).
    for _ in range(FAST.code_throttle.free_failures):
        step = ask_code(world.service, world.member.email)
        options = world.service.security_key_login_options(step)
        with pytest.raises(ts.InvalidCode):
            world.service.complete_login_with_security_key(
                step, key.get(options, origin="https://evil.example.test")
            )
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode):
        world.service.complete_login(step, "000000")
    step = ask_code(world.service, world.member.email)
    options = world.service.security_key_login_options(step)
    with pytest.raises(ts.Throttled):
        world.service.complete_login_with_security_key(step, key.get(options))
    # A right assertion, once the block is over, clears the count like a right code.
    world.clock.advance(FAST.code_throttle.max_delay.total_seconds())
    key_login(world, world.member, key)
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.InvalidCode) as fresh:
        world.service.complete_login(step, "000000")
    assert fresh.value.reason == "wrong"
    key_login(world, world.member, key)


def test_r104_a_counter_that_does_not_grow_is_refused_as_a_cloned_key(world: World) -> None:
    key, _ = register(world, world.login(world.member))
    key_login(world, world.member, key)  # the key's counter is now 2 (1 at registration)
    for count in (2, 1, 0):
        step = ask_code(world.service, world.member.email)
        options = world.service.security_key_login_options(step)
        with pytest.raises(ts.InvalidCode) as cloned:
            world.service.complete_login_with_security_key(step, key.get(options, sign_count=count))
        assert cloned.value.reason == "sign_count"
    failures = [e for e in events(world, ts.AuditAction.LOGIN) if e.reason == "sign_count"]
    assert len(failures) == 3
    assert {e.outcome for e in failures} == {ts.Outcome.FAILURE}
    step = ask_code(world.service, world.member.email)
    options = world.service.security_key_login_options(step)
    world.service.complete_login_with_security_key(step, key.get(options, sign_count=9))


def test_r104_a_key_without_a_counter_is_used_again_and_again(world: World) -> None:
    key, _ = register(world, world.login(world.member), counter=False)
    for _ in range(3):
        key_login(world, world.member, key)


def test_r109_malformed_assertions_are_refused_before_anything(world: World) -> None:
    key, _ = register(world, world.login(world.member))
    step = ask_code(world.service, world.member.email)
    good = json.loads(key.get(world.service.security_key_login_options(step)))
    long_id = {**good, "id": b64(bytes(1024)), "rawId": b64(bytes(1024))}
    before = store_snapshot(world.service._context.store)
    for bad in (
        "",
        "{",
        "null",
        "{}",
        json.dumps({**good, "rawId": "***"}),
        json.dumps({**good, "response": {}}),
        json.dumps(long_id),
        "x" * (2 * 2**20),
        json.dumps({**good, "pad": "x" * 2**15}),
        None,
        b"{}",
        good,
    ):
        with pytest.raises(ts.InvalidCode) as malformed:
            world.service.complete_login_with_security_key(step, bad)  # type: ignore[arg-type]
        assert malformed.value.reason == "malformed"
    assert store_snapshot(world.service._context.store) == before


def test_r103_login_options_need_a_live_code_challenge_and_a_key(world: World) -> None:
    session = world.login(world.member)
    world.enroll(session)
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.NotAllowed) as none:
        world.service.security_key_login_options(step)
    assert none.value.reason == "no_security_key"
    for bad in ("", "nope", "x" * 500, None, 7):
        with pytest.raises(ts.ChallengeExpired):
            world.service.security_key_login_options(bad)  # type: ignore[arg-type]
    register(world, session)
    world.clock.advance(FAST.challenge_ttl.total_seconds())
    with pytest.raises(ts.ChallengeExpired) as late:
        world.service.security_key_login_options(step)
    assert late.value.reason == "expired"


def test_r103_a_key_does_not_answer_an_enrolment_at_login(world: World) -> None:
    world.service.set_two_factor_required(world.login(world.owner), True)
    step = world.service.login(world.member.email, PASSWORD)
    assert isinstance(step, ts.EnrollmentRequired)
    with pytest.raises(ts.ChallengeExpired):  # no options: it asks for an app
        world.service.security_key_login_options(step.challenge)  # type: ignore[arg-type]
    # An assertion of some key given to it is a wrong code of the enrolment.
    stranger = SoftKey()
    options = json.dumps({"challenge": b64(os.urandom(32)), "rpId": RP_ID})
    assertion = stranger.get(options)
    with pytest.raises(ts.InvalidCode) as wrong:
        world.service.complete_login_with_security_key(step.challenge, assertion)
    assert wrong.value.reason == "wrong"


def test_r101_a_key_challenge_is_no_login_challenge(world: World) -> None:
    session = world.login(world.member)
    key, _ = register(world, session)
    options = json.loads(world.service.begin_security_key_registration(session))
    with pytest.raises(ts.ChallengeExpired):  # the registration's challenge as a login's
        world.service.complete_login(options["challenge"], "123456")
    check = json.loads(world.service.begin_security_key_check(session))
    with pytest.raises(ts.ChallengeExpired):
        world.service.complete_login_with_security_key(
            check["challenge"], key.get(json.dumps(check))
        )


# -- removing keys (R106, R107) ------------------------------------------------------------------


def test_r106_remove_a_key_with_a_code_or_with_a_key(world: World) -> None:
    session = world.login(world.member)
    world.enroll(session)
    _, first_info = register(world, session, "First")
    second, second_info = register(world, session, "Second")
    world.service.remove_security_key(
        session, first_info.id, code=world.fresh_code(world.member.id)
    )
    assert world.service.list_security_keys(session) == (second_info,)
    # With a key: the key proves itself on a check's challenge, once.
    check = world.service.begin_security_key_check(session)
    assertion = second.get(check)
    world.service.remove_security_key(session, second_info.id, assertion=assertion)
    assert world.service.list_security_keys(session) == ()
    assert world.service.two_factor_status(session).security_keys == 0
    removed = events(world, ts.AuditAction.SECURITY_KEY_REMOVED)
    assert [e.reason for e in removed] == ["security_key", "otp"]
    # The removed key no longer logs in.
    step = ask_code(world.service, world.member.email)
    assert step.second_factors == ("totp",)
    with pytest.raises(ts.NotAllowed):
        world.service.security_key_login_options(step)


def test_r106_removal_refusals(world: World) -> None:
    session = world.login(world.member)
    key, info = register(world, session)
    _, theirs = register(world, world.login(world.manager))
    for code, assertion in ((None, None), ("123456", "{}")):
        with pytest.raises(ts.InvalidInput):
            world.service.remove_security_key(session, info.id, code=code, assertion=assertion)
    with pytest.raises(ts.NotAllowed) as unknown:
        world.service.remove_security_key(session, theirs.id, code="123456")
    assert (unknown.value.reason, unknown.value.rule) == ("unknown_security_key", "R106")
    # Without an app, a code cannot be right: the key must prove itself.
    with pytest.raises(ts.InvalidCode):
        world.service.remove_security_key(session, info.id, code="123456")
    # An assertion on no check's challenge is refused.
    stale = key.get(json.dumps({"challenge": b64(os.urandom(32)), "rpId": RP_ID}))
    with pytest.raises(ts.ChallengeExpired):
        world.service.remove_security_key(session, info.id, assertion=stale)
    # A check's challenge works once.
    check = world.service.begin_security_key_check(session)
    assertion = key.get(check)
    world.service.remove_security_key(session, info.id, assertion=assertion)
    with pytest.raises(ts.NotAllowed):
        world.service.begin_security_key_check(session)  # no key left


def test_r106_with_an_app_the_last_key_may_go_while_2fa_is_required(world: World) -> None:
    owner = world.login(world.owner)
    world.enroll(owner)
    world.service.set_two_factor_required(world.login(world.owner), True)
    session = world.login(world.member)  # enrols the app at login (R3)
    _, info = register(world, session, "Only key")
    with pytest.raises(ts.NotAllowed) as required:  # R32: the app stays
        world.service.disable_two_factor(session, world.fresh_code(world.member.id))
    assert required.value.reason == "account_requires_two_factor"
    world.service.remove_security_key(session, info.id, code=world.fresh_code(world.member.id))
    assert world.service.list_security_keys(session) == ()
    assert world.service.check_session(session).two_factor_enabled is True


def test_r106_a_key_only_user_cannot_remove_their_last_key_when_required(world: World) -> None:
    member = world.login(world.member)
    key, info = register(world, member)
    owner = world.login(world.owner)
    world.enroll(owner)
    world.service.set_two_factor_required(world.login(world.owner), True)
    session = key_login(world, world.member, key).session
    check = world.service.begin_security_key_check(session)
    with pytest.raises(ts.NotAllowed) as last:
        world.service.remove_security_key(session, info.id, assertion=key.get(check))
    assert (last.value.reason, last.value.rule) == ("last_second_factor", "R106")
    # With a second key, one of them may go.
    second, second_info = register(world, session, "Second")
    check = world.service.begin_security_key_check(session)
    world.service.remove_security_key(session, info.id, assertion=second.get(check))
    (left,) = world.service.list_security_keys(session)
    assert (left.id, left.last_used_at) == (second_info.id, world.clock.now())
    denied = [
        e
        for e in events(world, ts.AuditAction.SECURITY_KEY_REMOVED)
        if e.outcome is ts.Outcome.DENIED
    ]
    assert [e.reason for e in denied] == ["last_second_factor"]


def test_r107_resets_disable_and_deletion_remove_the_keys(world: World, store: ts.Store) -> None:
    member = world.login(world.member)
    world.enroll(member)
    register(world, member, "A")
    owner = world.login(world.owner)
    world.enroll(owner)
    # R41: an owner's reset.
    world.service.reset_two_factor(owner, world.member.id)
    member = world.login(world.member)
    assert world.service.list_security_keys(member) == ()
    assert world.service.two_factor_status(member).security_keys == 0
    # R42: the operator's reset.
    key, _ = register(world, member, "B")
    assert world.service.login(world.member.email, PASSWORD).second_factors == ("security_key",)  # type: ignore[union-attr]
    world.service.operator_reset_two_factor(world.member.email)
    member = world.login(world.member)
    assert world.service.list_security_keys(member) == ()
    # R31: turning one's own 2FA off removes the keys too.
    world.enroll(member)
    register(world, member, "C")
    world.service.disable_two_factor(member, world.fresh_code(world.member.id))
    assert world.service.list_security_keys(member) == ()
    step = world.service.login(world.member.email, PASSWORD)
    assert isinstance(step, ts.LoggedIn)  # no second factor left
    # R82: deleting the user removes their keys.
    member = step.session
    key, _ = register(world, member, "D")
    world.service.delete_user(owner, world.member.id)
    with store.transaction(write=False) as tx:
        assert tx.find_security_key(key.id) is None
        assert tx.security_keys_of(world.member.id) == []


# -- configuration (R100) ----------------------------------------------------------------------


def test_r100_without_passkeys_the_browser_operations_are_refused(
    store: ts.Store, clock: ManualClock, keyring: ts.AESGCMKeyring
) -> None:
    service = ts.TwoStep(store, issuer="Acme", clock=clock, settings=FAST, cipher=keyring)
    account = service.create_account("Acme")
    user = service.create_user(account.id, "a@example.test", PASSWORD)
    step = service.login(user.email, PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    session = step.session
    for call in (
        lambda: service.begin_security_key_registration(session),
        lambda: service.finish_security_key_registration(session, "{}", "Key"),
        lambda: service.begin_security_key_check(session),
        lambda: service.remove_security_key(session, "k", assertion="{}"),
        lambda: service.security_key_login_options("x" * 20),
        lambda: service.complete_login_with_security_key("x" * 20, "{}"),
    ):
        with pytest.raises(ts.ConfigurationError) as off:
            call()
        assert off.value.reason == "passkeys_not_configured"
    assert service.list_security_keys(session) == ()  # listing needs no browser
    with pytest.raises(ts.ConfigurationError):
        ts.TwoStep(store, issuer="Acme", cipher=keyring, passkeys="example.org")  # type: ignore[arg-type]


def test_r100_passkey_settings_are_checked() -> None:
    ok = ts.PasskeySettings(rp_id=RP_ID, origin=[ORIGIN, "https://www.example.test"])  # type: ignore[arg-type]
    assert ok.origins == (ORIGIN, "https://www.example.test")
    assert ts.PasskeySettings(rp_id=RP_ID, origin=(ORIGIN,)).origin == ORIGIN
    for bad in (
        {"rp_id": "", "origin": ORIGIN},
        {"rp_id": "https://example.test/", "origin": ORIGIN},
        {"rp_id": RP_ID, "origin": "example.test"},
        {"rp_id": RP_ID, "origin": ()},
        {"rp_id": RP_ID, "origin": ORIGIN, "max_keys": 0},
        {"rp_id": RP_ID, "origin": ORIGIN, "user_verification": "always"},
    ):
        with pytest.raises(ValueError, match=r"\w"):
            ts.PasskeySettings(**bad)  # type: ignore[arg-type]


def test_r100_a_second_origin_is_accepted_and_user_verification_can_be_required(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = "https://login.example.test"
    both = ts.PasskeySettings(rp_id=RP_ID, origin=(ORIGIN, second), user_verification="required")
    monkeypatch.setattr(world.service, "_context", world.service._context._replace(passkeys=both))
    session = world.login(world.member)
    options = json.loads(world.service.begin_security_key_registration(session))
    assert options["authenticatorSelection"]["userVerification"] == "required"
    key = SoftKey()
    # The soft key does not verify its user (UV flag off): refused when required.
    with pytest.raises(ts.InvalidCode):
        world.service.finish_security_key_registration(
            session, key.create(json.dumps(options), origin=second), "Key"
        )
    relaxed = replace(both, user_verification="discouraged")
    monkeypatch.setattr(
        world.service, "_context", world.service._context._replace(passkeys=relaxed)
    )
    options_text = world.service.begin_security_key_registration(session)
    world.service.finish_security_key_registration(
        session, key.create(options_text, origin=second), "Key"
    )
    step = ask_code(world.service, world.member.email)
    text = world.service.security_key_login_options(step)
    world.service.complete_login_with_security_key(step, key.get(text, origin=second))


def test_r100_import_twostep_does_not_load_webauthn() -> None:
    code = "import sys, twostep; assert 'webauthn' not in sys.modules, 'loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # noqa: S603


def test_r100_without_the_extra_a_passkey_operation_names_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = world.login(world.member)
    for name in [m for m in sys.modules if m == "webauthn" or m.startswith("webauthn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "webauthn", None)  # what an absent package looks like
    with pytest.raises(ts.ConfigurationError) as missing:
        world.service.begin_security_key_registration(session)
    assert missing.value.reason == "passkeys_not_installed"
    assert "twostep[passkeys]" in str(missing.value)


def test_r101_the_limit_holds_for_registrations_begun_together(world: World) -> None:
    session = world.login(world.member)
    for n in range(PASSKEYS.max_keys - 1):
        register(world, session, f"Key {n}")
    first = SoftKey().create(world.service.begin_security_key_registration(session))
    second = SoftKey().create(world.service.begin_security_key_registration(session))
    world.service.finish_security_key_registration(session, first, "Last")
    with pytest.raises(ts.NotAllowed) as full:
        world.service.finish_security_key_registration(session, second, "One too many")
    assert full.value.reason == "too_many_security_keys"
    assert len(world.service.list_security_keys(session)) == PASSKEYS.max_keys


def test_r109_an_overlong_credential_id_is_refused(world: World) -> None:
    session = world.login(world.member)
    key = SoftKey()
    key.credential_id = os.urandom(1024)  # WebAuthn allows at most 1023 bytes
    created = key.create(world.service.begin_security_key_registration(session))
    with pytest.raises(ts.InvalidCode) as refused:
        world.service.finish_security_key_registration(session, created, "Long")
    assert refused.value.reason == "wrong"
    assert world.service.list_security_keys(session) == ()


def test_r105_parsed_responses_show_nothing_in_their_repr(world: World) -> None:
    from twostep import _webauthn
    from twostep._code_check import KeyProof

    session = world.login(world.member)
    key = SoftKey()
    created = key.create(world.service.begin_security_key_registration(session))
    parsed = _webauthn.parse_registration(created)
    assertion = _webauthn.parse_assertion(
        key.get(json.dumps({"challenge": b64(os.urandom(32)), "rpId": RP_ID}))
    )
    proof = KeyProof(assertion.credential_id, lambda _: 0)
    shown = [repr(parsed), repr(assertion), repr(proof), repr(_webauthn.Verified("c", b"k", 1))]
    assert shown == [
        "ParsedRegistration(<hidden>)",
        "ParsedAssertion(<hidden>)",
        "KeyProof(<hidden>)",
        "Verified(<hidden>)",
    ]


def test_r99_a_key_steps_a_session_up(world: World) -> None:
    # An owner whose only second factor is a key passes it again before a sensitive change.
    owner = world.login(world.owner)
    key, _ = register(world, owner)
    session = key_login(world, world.owner, key).session
    assert session.second_factor_at == world.clock.now()  # a key login marks the session
    assert FAST.step_up_within is not None
    world.clock.advance(FAST.step_up_within.total_seconds() + 1)
    with pytest.raises(ts.StepUpRequired):
        world.service.set_role(session, world.member.id, ts.Role.MANAGER)
    stale = key.get(json.dumps({"challenge": b64(os.urandom(32)), "rpId": RP_ID}))
    with pytest.raises(ts.ChallengeExpired):
        world.service.step_up_with_security_key(session, stale)
    check = world.service.begin_security_key_check(session)
    wrong = key.get(check, origin="https://evil.example.test")
    with pytest.raises(ts.InvalidCode):
        world.service.step_up_with_security_key(session, wrong)
    check = world.service.begin_security_key_check(session)
    assertion = key.get(check)
    stepped = world.service.step_up_with_security_key(session, assertion)
    assert stepped.second_factor_at == world.clock.now()
    world.service.set_role(session, world.member.id, ts.Role.MANAGER)
    with pytest.raises(ts.ChallengeExpired):  # the check was spent
        world.service.step_up_with_security_key(session, assertion)
    steps = [e for e in events(world, ts.AuditAction.STEP_UP) if e.outcome is ts.Outcome.SUCCESS]
    assert [e.reason for e in steps] == ["security_key"]
