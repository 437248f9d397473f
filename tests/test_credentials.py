"""One's own password (R85-R87): change it, and reset a forgotten one."""

from __future__ import annotations

import pytest

import twostep as ts
from twostep.testing import FAST

from .conftest import ALL_STORES, PASSWORD, World, every_store

NEW = "a brand new passphrase"


store = pytest.fixture(params=ALL_STORES, name="store")(every_store)  # PostgreSQL too


def trail(world: World) -> list[ts.AuditEvent]:
    return world.service.audit_trail(world.login(world.owner), limit=1000)


# -- R85: changing one's password ------------------------------------------------------


def test_r85_a_user_changes_their_password_and_every_other_session_ends(world: World) -> None:
    first = world.login(world.member)
    second = world.login(world.member)
    replaced = world.service.change_password(first, PASSWORD, NEW)
    assert replaced.user_id == world.member.id
    assert world.service.check_session(replaced).user_id == world.member.id
    for old in (first, second):
        with pytest.raises(ts.SessionInvalid):
            world.service.check_session(old)
    with pytest.raises(ts.InvalidCredentials):
        world.service.login(world.member.email, PASSWORD)
    assert isinstance(world.service.login(world.member.email, NEW), ts.LoggedIn)
    changed = [e for e in trail(world) if e.action == "password_changed"]
    assert [(e.outcome, e.actor_id, e.reason) for e in changed] == [
        (ts.Outcome.SUCCESS, world.member.id, "other_sessions_ended")
    ]


def test_r85_a_wrong_current_password_changes_nothing_and_counts(world: World) -> None:
    session = world.login(world.member)
    conf = FAST.password_throttle
    for _ in range(conf.free_failures + 1):
        with pytest.raises(ts.InvalidCredentials):
            world.service.change_password(session, "not the password", NEW)
    with pytest.raises(ts.Throttled):
        world.service.change_password(session, PASSWORD, NEW)
    assert world.service.check_session(session).user_id == world.member.id
    world.clock.advance(conf.delay(conf.free_failures + 1).total_seconds())
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.LoggedIn)
    outcomes = [e.outcome for e in trail(world) if e.action == "password_changed"]
    assert outcomes.count(ts.Outcome.FAILURE) == conf.free_failures + 1
    assert outcomes.count(ts.Outcome.THROTTLED) == 1


def test_r85_with_2fa_a_change_needs_a_code_too(world: World) -> None:
    session = world.login(world.member)
    phone = world.enroll(session)
    world.clock.advance(30)
    with pytest.raises(ts.InvalidInput) as missing:
        world.service.change_password(session, PASSWORD, NEW)
    assert missing.value.reason == "code_required"
    wrong = next(c for c in ("000000", "111111") if c != phone.code())
    with pytest.raises(ts.InvalidCode):
        world.service.change_password(session, PASSWORD, NEW, code=wrong)
    assert world.service.check_session(session).two_factor_enabled  # nothing changed
    code = phone.code()
    replaced = world.service.change_password(session, PASSWORD, NEW, code=code)
    assert world.service.check_session(replaced).two_factor_enabled
    # The code was used (R4), and 2FA still guards the login.
    with pytest.raises(ts.InvalidCode) as replayed:
        world.service.change_password(replaced, NEW, PASSWORD, code=code)
    assert replayed.value.reason == "replayed"
    assert isinstance(world.service.login(world.member.email, NEW), ts.CodeRequired)


def test_r85_a_backup_code_will_do(world: World) -> None:
    session = world.login(world.member)
    world.enroll(session)
    before = world.service.two_factor_status(session).backup_codes_remaining
    backup = world.backup_codes[world.member.id][0]
    replaced = world.service.change_password(session, PASSWORD, NEW, code=backup)
    assert world.service.two_factor_status(replaced).backup_codes_remaining == before - 1
    assert isinstance(world.service.login(world.member.email, NEW), ts.CodeRequired)


@pytest.mark.parametrize("new", ["short", "", "x" * 5000])
def test_r85_a_bad_new_password_is_refused_before_anything(world: World, new: str) -> None:
    session = world.login(world.member)
    with pytest.raises(ts.InvalidInput):
        world.service.change_password(session, PASSWORD, new)
    assert world.service.check_session(session).user_id == world.member.id


# -- R86, R87: resetting a forgotten password --------------------------------------------


def test_r86_a_reset_sets_the_password_ends_sessions_and_logs_nobody_in(world: World) -> None:
    session = world.login(world.member)
    reset = world.service.begin_password_reset(world.member.email)
    assert "<hidden>" in repr(reset)
    assert reset.token not in repr(reset)
    assert reset.expires_at == world.clock.now() + FAST.password_reset_ttl
    assert world.service.complete_password_reset(reset.token, NEW) is None
    with pytest.raises(ts.SessionInvalid):
        world.service.check_session(session)
    with pytest.raises(ts.InvalidCredentials):
        world.service.login(world.member.email, PASSWORD)
    assert isinstance(world.service.login(world.member.email, NEW), ts.LoggedIn)
    # The token works once.
    with pytest.raises(ts.ChallengeExpired) as used:
        world.service.complete_password_reset(reset.token, "yet another passphrase")
    assert used.value.reason == "unknown"
    events = [(e.action, e.outcome, e.target_id) for e in trail(world)]
    assert ("password_reset_started", ts.Outcome.SUCCESS, world.member.id) in events
    assert ("password_reset", ts.Outcome.SUCCESS, world.member.id) in events


def test_r87_a_reset_by_email_alone_never_bypasses_or_resets_2fa(world: World) -> None:
    phone = world.enroll(world.login(world.member))
    reset = world.service.begin_password_reset(world.member.email)
    world.service.complete_password_reset(reset.token, NEW)
    step = world.service.login(world.member.email, NEW)
    assert isinstance(step, ts.CodeRequired)  # the code is still asked for
    world.clock.advance(30)
    done = world.service.complete_login(step, phone.code())  # the same phone
    assert done.session.two_factor_enabled
    # Nor is a reset token a login challenge.
    reset = world.service.begin_password_reset(world.member.email)
    with pytest.raises(ts.ChallengeExpired):
        world.service.complete_login(reset.token, phone.code())


def test_r86_a_reset_ends_every_login_under_way_and_every_other_token(world: World) -> None:
    phone = world.enroll(world.login(world.member))
    # Someone with the old password is half-way through a login...
    pending = world.service.login(world.member.email, PASSWORD)
    assert isinstance(pending, ts.CodeRequired)
    first = world.service.begin_password_reset(world.member.email)
    second = world.service.begin_password_reset(world.member.email)
    world.service.complete_password_reset(second.token, NEW)
    world.clock.advance(30)
    # ...and can no longer finish it with a code; nor does the other token work.
    with pytest.raises(ts.ChallengeExpired):
        world.service.complete_login(pending, phone.code())
    with pytest.raises(ts.ChallengeExpired):
        world.service.complete_password_reset(first.token, "another new passphrase")


def test_r85_a_change_ends_every_login_under_way(world: World) -> None:
    session = world.login(world.member)
    pending = world.service.login(world.member.email, PASSWORD)
    assert isinstance(pending, ts.LoggedIn)  # no 2FA: nothing under way to end here
    phone = world.enroll(session)
    pending = world.service.login(world.member.email, PASSWORD)
    assert isinstance(pending, ts.CodeRequired)
    world.clock.advance(30)
    world.service.change_password(session, PASSWORD, NEW, code=phone.code())
    world.clock.advance(30)
    with pytest.raises(ts.ChallengeExpired):
        world.service.complete_login(pending, phone.code())


def test_r86_an_unknown_email_gets_the_same_answer_and_its_token_opens_nothing(
    world: World,
) -> None:
    known = world.service.begin_password_reset(world.member.email)
    unknown = world.service.begin_password_reset("nobody@acme.test")
    assert type(unknown) is type(known)
    assert len(unknown.token) == len(known.token)
    assert unknown.expires_at == known.expires_at
    with pytest.raises(ts.ChallengeExpired):
        world.service.complete_password_reset(unknown.token, NEW)


def test_r86_a_reset_token_expires(world: World) -> None:
    reset = world.service.begin_password_reset(world.member.email)
    world.clock.advance(FAST.password_reset_ttl.total_seconds())
    with pytest.raises(ts.ChallengeExpired) as expired:
        world.service.complete_password_reset(reset.token, NEW)
    assert expired.value.reason == "expired"
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.LoggedIn)


def test_r86_asking_for_resets_is_throttled_per_email(world: World) -> None:
    conf = FAST.password_reset_throttle
    for _ in range(conf.free_failures + 1):
        world.service.begin_password_reset(world.member.email)
    with pytest.raises(ts.Throttled) as caught:
        world.service.begin_password_reset(world.member.email.upper())
    assert caught.value.scope == "password_reset"
    # Other emails, and logins, are not held back.
    world.service.begin_password_reset(world.manager.email)
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.LoggedIn)


@pytest.mark.parametrize("token", [None, "", "x" * 10_000, "é" * 10])
def test_r86_a_malformed_token_is_refused_before_anything(world: World, token: object) -> None:
    with pytest.raises(ts.ChallengeExpired):
        world.service.complete_password_reset(token, NEW)  # type: ignore[arg-type]


# -- R88, R89: changing an email ---------------------------------------------------------

NEW_EMAIL = "Member.New@Acme.test"


def email_events(world: World) -> list[tuple[ts.Outcome, str | None, str | None, str | None]]:
    return [
        (e.outcome, e.actor_id, e.target_id, e.reason)
        for e in trail(world)
        if e.action == "email_changed"
    ]


def test_r88_a_user_changes_their_email_and_every_other_session_ends(world: World) -> None:
    first = world.login(world.member)
    second = world.login(world.member)
    replaced = world.service.change_email(first, NEW_EMAIL, password=PASSWORD)
    assert world.service.check_session(replaced).user_id == world.member.id
    for old in (first, second):
        with pytest.raises(ts.SessionInvalid):
            world.service.check_session(old)
    with pytest.raises(ts.InvalidCredentials):
        world.service.login(world.member.email, PASSWORD)  # the old email is no one's
    assert isinstance(world.service.login("member.new@acme.test", PASSWORD), ts.LoggedIn)
    listed = world.service.list_users(world.login(world.owner), limit=10)
    assert NEW_EMAIL in {u.email for u in listed.users}
    assert email_events(world) == [
        (ts.Outcome.SUCCESS, world.member.id, world.member.id, "by_user")
    ]
    assert not any(
        "acme.test" in (e.reason or "").lower() for e in trail(world) if e.action == "email_changed"
    )


def test_r88_the_old_email_is_free_for_a_new_user(world: World) -> None:
    world.service.change_email(world.login(world.member), NEW_EMAIL, password=PASSWORD)
    newcomer = world.service.create_user(world.account.id, "MEMBER@acme.test", PASSWORD, "member")
    assert isinstance(world.service.login("member@acme.test", PASSWORD), ts.LoggedIn)
    assert newcomer.id != world.member.id


@pytest.mark.parametrize("taken", ["manager@acme.test", "MANAGER@Acme.Test", "outsider@else.test"])
def test_r88_an_email_another_user_has_in_any_case_is_refused(world: World, taken: str) -> None:
    other = world.service.create_account("Elsewhere")
    world.service.create_user(other.id, "Outsider@Else.test", PASSWORD, "member")
    session = world.login(world.member)
    with pytest.raises(ts.EmailTaken):
        world.service.change_email(session, taken, password=PASSWORD)
    assert world.service.check_session(session).user_id == world.member.id  # nothing changed
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.LoggedIn)
    assert email_events(world) == [
        (ts.Outcome.FAILURE, world.member.id, world.member.id, "email_taken")
    ]


def test_r88_changing_only_the_case_of_ones_own_email_is_allowed(world: World) -> None:
    session = world.login(world.member)
    world.service.change_email(session, "MEMBER@Acme.test", password=PASSWORD)
    listed = world.service.list_users(world.login(world.owner), limit=10)
    assert "MEMBER@Acme.test" in {u.email for u in listed.users}
    assert isinstance(world.service.login("member@acme.test", PASSWORD), ts.LoggedIn)


def test_r88_a_wrong_password_changes_nothing_and_counts_as_at_a_login(world: World) -> None:
    session = world.login(world.member)
    conf = FAST.password_throttle
    for _ in range(conf.free_failures + 1):
        with pytest.raises(ts.InvalidCredentials):
            world.service.change_email(session, NEW_EMAIL, password="not the password")
    with pytest.raises(ts.Throttled):
        world.service.change_email(session, NEW_EMAIL, password=PASSWORD)
    with pytest.raises(ts.Throttled):
        world.service.login(world.member.email, PASSWORD)  # the same count as a login's
    assert world.service.check_session(session).user_id == world.member.id
    outcomes = [e[0] for e in email_events(world)]
    assert outcomes.count(ts.Outcome.FAILURE) == conf.free_failures + 1
    assert outcomes.count(ts.Outcome.THROTTLED) == 1


def test_r88_with_2fa_a_change_needs_a_code_and_the_app_keeps_its_label(world: World) -> None:
    session = world.login(world.member)
    phone = world.enroll(session)
    world.clock.advance(30)
    with pytest.raises(ts.InvalidInput) as missing:
        world.service.change_email(session, NEW_EMAIL, password=PASSWORD)
    assert missing.value.reason == "code_required"
    wrong = next(c for c in ("000000", "111111") if c != phone.code())
    with pytest.raises(ts.InvalidCode):
        world.service.change_email(session, NEW_EMAIL, password=PASSWORD, code=wrong)
    assert world.service.check_session(session).user_id == world.member.id  # unchanged
    replaced = world.service.change_email(session, NEW_EMAIL, password=PASSWORD, code=phone.code())
    assert world.service.check_session(replaced).two_factor_enabled
    world.clock.advance(30)
    step = world.service.login(NEW_EMAIL, PASSWORD)
    assert isinstance(step, ts.CodeRequired)
    # The same app, with its old label, still gives the codes.
    assert isinstance(world.service.complete_login(step.challenge, phone.code()), ts.LoggedIn)


@pytest.mark.parametrize("bad", ["not an email", "", "x" * 5000 + "@acme.test", None])
def test_r88_a_bad_email_is_refused_before_anything(world: World, bad: object) -> None:
    session = world.login(world.member)
    with pytest.raises(ts.InvalidInput):
        world.service.change_email(session, bad, password=PASSWORD)  # type: ignore[arg-type]
    assert world.service.check_session(session).user_id == world.member.id
    assert email_events(world) == []


def test_r89_an_owner_changes_another_users_email_and_their_sessions_end(world: World) -> None:
    member_session = world.login(world.member)
    owner_session = world.login(world.owner)
    world.service.set_email(owner_session, world.member.id, NEW_EMAIL)
    with pytest.raises(ts.SessionInvalid):
        world.service.check_session(member_session)
    assert world.service.check_session(owner_session).user_id == world.owner.id
    assert isinstance(world.service.login(NEW_EMAIL, PASSWORD), ts.LoggedIn)
    world.service.set_email(owner_session, world.member.id, NEW_EMAIL)  # the same: nothing
    assert email_events(world) == [
        (ts.Outcome.SUCCESS, world.owner.id, world.member.id, "by_owner")
    ]


def test_r89_an_owner_cannot_give_a_taken_email(world: World) -> None:
    owner_session = world.login(world.owner)
    with pytest.raises(ts.EmailTaken):
        world.service.set_email(owner_session, world.member.id, "Manager@ACME.test")
    assert email_events(world) == [
        (ts.Outcome.FAILURE, world.owner.id, world.member.id, "email_taken")
    ]


def test_r89_only_owners_and_not_for_themselves(world: World) -> None:
    for actor in (world.manager, world.member):
        with pytest.raises(ts.NotAllowed) as refused:
            world.service.set_email(world.login(actor), world.owner.id, "x@acme.test")
        assert refused.value.reason == "owner_only"
    with pytest.raises(ts.NotAllowed) as refused:
        world.service.set_email(world.login(world.owner), world.owner.id, "x@acme.test")
    assert refused.value.reason == "target_is_self"
    assert [e[0] for e in email_events(world)] == [ts.Outcome.DENIED] * 3


def test_r89_an_unknown_or_foreign_user_is_unknown_and_audited(world: World) -> None:
    other = world.service.create_account("Elsewhere")
    stranger = world.service.create_user(other.id, "stranger@else.test", PASSWORD, "owner")
    owner_session = world.login(world.owner)
    for user_id in (stranger.id, "no-such-user"):
        with pytest.raises(ts.UnknownUser):
            world.service.set_email(owner_session, user_id, "x@acme.test")
    assert email_events(world) == [
        (ts.Outcome.FAILURE, world.owner.id, user_id, "unknown_user")
        for user_id in ("no-such-user", stranger.id)  # newest first
    ]
    assert isinstance(world.service.login("stranger@else.test", PASSWORD), ts.LoggedIn)
