"""Turning 2FA on ends the other sessions (R97), remembered devices (R98) and step-up (R99).

On every store, through the public API, on a manual clock.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from datetime import timedelta

import pytest

import twostep as ts
from twostep.testing import FAST, Phone

from ..conftest import ALL_STORES, PASSWORD, World, every_store, store_snapshot
from .helpers import enrolled_session

NEW_PASSWORD = "a new horse battery"
HOUR = timedelta(hours=1)


store = pytest.fixture(params=ALL_STORES, name="store")(every_store)  # PostgreSQL too


def state(world: World, session: ts.Session) -> str:
    """``"valid"``, or why ``check_session`` refuses the session."""
    try:
        world.service.check_session(session)
    except ts.SessionInvalid as refused:
        return refused.reason
    return "valid"


def remembered(world: World, user: ts.User, **options: object) -> ts.DeviceToken:
    """``user`` (enrolled if need be) logs in with a code and remembers the device."""
    session = world.login(user)  # enrols inside the login if the account requires it
    if user.id not in world.phones:
        world.enroll(session)
    return world.service.remember_device(world.login(user), **options)  # type: ignore[arg-type]


def through(world: World, user: ts.User, device: ts.DeviceToken, pw: str = PASSWORD) -> object:
    return world.service.login(user.email, pw, device=device.token)


def with_settings(
    world: World, store: ts.Store, keyring: ts.AESGCMKeyring, **changes: object
) -> ts.TwoStep:
    """Another service on the same store and clock, with other settings."""
    settings = dataclasses.replace(FAST, **changes)  # type: ignore[arg-type]
    return ts.TwoStep(
        store, issuer="Acme Analytics", clock=world.clock, settings=settings, cipher=keyring
    )


def events(world: World, action: str, **filters: object) -> list[ts.AuditEvent]:
    """The account's events of ``action``, oldest first, read by the owner."""
    owner = world.login(world.owner)
    page = world.service.audit_page(owner, action=action, limit=1000, **filters)  # type: ignore[arg-type]
    return list(reversed(page.events))


def require(world: World, **requirement: object) -> None:
    owner = world.login(world.owner)
    world.service.set_two_factor_required(owner, True, **requirement)  # type: ignore[arg-type]


# -- R97: turning 2FA on ends the other sessions ---------------------------------------


def test_r97_turning_2fa_on_ends_the_other_sessions_and_the_confirming_one_goes_on(
    world: World,
) -> None:
    confirming = world.login(world.member)
    other_tab = world.login(world.member)
    someone_else = world.login(world.manager)
    world.enroll(confirming)

    assert (state(world, other_tab), state(world, someone_else)) == ("revoked", "valid")
    seen = world.service.check_session(confirming)
    assert seen.two_factor_enabled is True
    assert seen.second_factor_at == world.clock.now()  # R99: the code just passed counts


def test_r97_r3_the_enrolment_inside_a_login_ends_the_sessions_of_the_grace(
    world: World,
) -> None:
    require(world, grace_period=HOUR)
    in_grace = world.service.login(world.member.email, PASSWORD)
    assert isinstance(in_grace, ts.LoggedIn)
    world.clock.advance(hours=1)
    assert state(world, in_grace.session) == "two_factor_required"
    enrolled = world.login(world.member)  # R3: enrols inside the login
    # With 2FA on, the old session would be admitted again: R97 has ended it.
    assert state(world, in_grace.session) == "revoked"
    assert state(world, enrolled) == "valid"


def test_r97_r40_moving_to_a_new_phone_ends_no_session(world: World) -> None:
    require(world)
    moving = world.login(world.member)  # enrols inside the login
    other_tab = world.login(world.member)
    enrollment = world.service.begin_reset(moving, world.fresh_code(world.member.id))
    new_phone = Phone(enrollment.secret, world.clock)
    world.service.confirm_enrollment(moving, new_phone.code())
    assert (state(world, moving), state(world, other_tab)) == ("valid", "valid")
    world.phones[world.member.id] = new_phone
    assert state(world, world.login(world.member)) == "valid"


# -- R98: remembered devices -----------------------------------------------------------


def test_r98_a_remembered_device_skips_the_code_step_never_the_password(world: World) -> None:
    device = remembered(world, world.manager, label="Firefox on Linux")
    made = world.clock.now()
    assert device.expires_at == made + FAST.remember_device_for

    world.clock.advance(hours=2)
    step = through(world, world.manager, device)
    assert isinstance(step, ts.LoggedIn)
    assert step.session.second_factor_at is None  # no second factor was passed
    assert state(world, step.session) == "valid"
    with pytest.raises(ts.InvalidCredentials):
        through(world, world.manager, device, "the wrong password")
    unknown = world.service.login(world.manager.email, PASSWORD, device="0" * 64)
    assert isinstance(unknown, ts.CodeRequired)  # an unknown token is ignored
    # Only for the user it was made for: another user with 2FA is asked for a code.
    enrolled_session(world, world.member)
    assert isinstance(through(world, world.member, device), ts.CodeRequired)

    (info,) = world.service.remembered_devices(step.session)
    assert info == ts.DeviceInfo(
        device.device_id, "Firefox on Linux", made, device.expires_at, made + 2 * HOUR
    )
    logins = events(world, "login", user_id=world.manager.id)
    through_it = [e for e in logins if e.reason == "remembered_device"]
    assert [e.outcome for e in through_it] == [ts.Outcome.SUCCESS]
    (kept,) = events(world, "device_remembered")
    assert (kept.reason, kept.actor_id, kept.target_id) == (
        device.device_id,
        world.manager.id,
        world.manager.id,
    )


def test_r98_a_device_expires_and_the_settings_cap_its_life(
    world: World, store: ts.Store, keyring: ts.AESGCMKeyring
) -> None:
    short = remembered(world, world.manager, valid_for=HOUR)
    long = world.service.remember_device(world.login(world.manager))
    world.clock.advance(seconds=HOUR.total_seconds() - 31)  # the login took 30 s
    assert isinstance(through(world, world.manager, short), ts.LoggedIn)
    world.clock.advance(seconds=1)
    assert isinstance(through(world, world.manager, short), ts.CodeRequired)
    world.clock.advance(minutes=1)  # the second device is now more than an hour old
    assert isinstance(through(world, world.manager, long), ts.LoggedIn)

    stricter = with_settings(world, store, keyring, remember_device_for=HOUR)
    step = stricter.login(world.manager.email, PASSWORD, device=long.token)
    assert isinstance(step, ts.CodeRequired)  # read live: at most an hour, now
    with pytest.raises(ts.InvalidInput) as refused:
        stricter.remember_device(world.login(world.manager), valid_for=2 * HOUR)
    assert refused.value.reason == "invalid_valid_for"


def _new_phone(world: World) -> None:
    session = world.login(world.manager)
    enrollment = world.service.begin_reset(session, world.fresh_code(world.manager.id))
    world.phones[world.manager.id] = Phone(enrollment.secret, world.clock)
    world.service.confirm_enrollment(session, world.phones[world.manager.id].code())


def _deactivated_and_back(world: World) -> None:
    owner = world.login(world.owner)
    world.service.deactivate_user(owner, world.manager.id)
    world.service.reactivate_user(owner, world.manager.id)


FORGETTING: dict[str, Callable[[World], object]] = {  # what happens to the manager
    "reset_by_owner_r41": lambda w: w.service.reset_two_factor(w.login(w.owner), w.manager.id),
    "reset_by_operator_r42": lambda w: w.service.operator_reset_two_factor(w.manager.email),
    "turned_off_r31": lambda w: w.service.disable_two_factor(
        w.login(w.manager), w.fresh_code(w.manager.id)
    ),
    "new_phone_r40": _new_phone,  # the account requires 2FA beforehand
    "password_changed_r85": lambda w: w.service.change_password(
        w.login(w.manager), PASSWORD, NEW_PASSWORD, code=w.fresh_code(w.manager.id)
    ),
    "password_reset_r86": lambda w: w.service.complete_password_reset(
        w.service.begin_password_reset(w.manager.email).token, NEW_PASSWORD
    ),
    "demoted_r80": lambda w: w.service.set_role(w.login(w.owner), w.manager.id, "member"),
    "deactivated_r81": _deactivated_and_back,
    "required_of_everyone_r21": require,
    "required_of_admins_r96": lambda w: require(w, of="admins"),
}


@pytest.mark.parametrize("name", sorted(FORGETTING))
def test_r98_every_device_of_the_user_is_forgotten_when(world: World, name: str) -> None:
    enrolled_session(world, world.owner)
    if name == "new_phone_r40":
        require(world)
    device = remembered(world, world.manager)
    assert isinstance(through(world, world.manager, device), ts.LoggedIn)

    FORGETTING[name](world)
    password = NEW_PASSWORD if name.startswith("password") else PASSWORD
    step = through(world, world.manager, device, password)
    if isinstance(step, ts.LoggedIn):  # their 2FA was removed: they turn it on again (R97)
        assert step.session.two_factor_enabled is False
        world.enroll(step.session)
        step = through(world, world.manager, device, password)
    assert isinstance(step, ts.CodeRequired)
    session = world.service.complete_login(step, world.fresh_code(world.manager.id)).session
    assert world.service.remembered_devices(session) == []


def test_r98_r96_a_requirement_that_does_not_cover_a_member_keeps_their_device(
    world: World,
) -> None:
    device = remembered(world, world.member)
    require(world, of="admins")
    assert isinstance(through(world, world.member, device), ts.LoggedIn)
    owner = world.login(world.owner)
    world.service.set_two_factor_required(owner, True)  # widened: now it covers them
    assert isinstance(through(world, world.member, device), ts.CodeRequired)


def test_r98_a_user_lists_and_forgets_their_devices(world: World) -> None:
    laptop = remembered(world, world.manager, label="Laptop")
    world.clock.advance(minutes=5)
    phone = remembered(world, world.manager)
    session = world.login(world.manager)
    listed = world.service.remembered_devices(session)
    assert [(d.device_id, d.label, d.last_used_at) for d in listed] == [
        (laptop.device_id, "Laptop", None),
        (phone.device_id, "", None),
    ]
    mine = remembered(world, world.member)  # another user's device id is not theirs
    assert world.service.forget_device(session, mine.device_id) is False
    assert world.service.forget_device(session, "no-such-device") is False

    assert world.service.forget_device(session, laptop.device_id) is True
    assert world.service.forget_device(session, laptop.device_id) is False
    assert [d.device_id for d in world.service.remembered_devices(session)] == [phone.device_id]
    assert isinstance(through(world, world.manager, laptop), ts.CodeRequired)
    assert isinstance(through(world, world.manager, phone), ts.LoggedIn)
    assert isinstance(through(world, world.member, mine), ts.LoggedIn)
    (forgotten,) = events(world, "device_forgotten")
    assert (forgotten.reason, forgotten.target_id) == (laptop.device_id, world.manager.id)


def test_r98_only_a_session_that_passed_a_code_remembers_its_device(
    world: World, store: ts.Store
) -> None:
    device = remembered(world, world.manager)
    through_device = through(world, world.manager, device)
    assert isinstance(through_device, ts.LoggedIn)
    password_only = world.login(world.member)
    for session in (password_only, through_device.session):
        before = store_snapshot(store, skip=("audit",))
        with pytest.raises(ts.NotAllowed) as refused:
            world.service.remember_device(session)
        assert (refused.value.reason, refused.value.rule) == ("no_second_factor_in_session", "R98")
        assert store_snapshot(store, skip=("audit",)) == before
    denied = events(world, "device_remembered", outcome="denied")
    assert [(e.actor_id, e.reason) for e in denied] == [
        (world.member.id, "no_second_factor_in_session"),
        (world.manager.id, "no_second_factor_in_session"),
    ]
    # A code passed in the session since (R99) lets it remember the device.
    world.service.step_up(through_device.session, world.fresh_code(world.manager.id))
    assert world.service.remember_device(through_device.session).device_id


def test_r98_the_token_is_shown_once_and_kept_only_as_its_hash(
    world: World, store: ts.Store
) -> None:
    device = remembered(world, world.manager, label="Laptop")
    step = through(world, world.manager, device)
    seen = [
        device,
        step,
        world.service.remembered_devices(world.login(world.manager)),
        events(world, "device_remembered"),
        events(world, "login"),
        world.service,
    ]
    assert all(device.token not in repr(thing) for thing in seen)
    stored = repr(store_snapshot(store))
    assert device.token not in stored
    assert hashlib.sha256(device.token.encode()).hexdigest() in stored


@pytest.mark.parametrize("token", [123, b"a" * 64, "", "a" * 129, "é" * 64, "\ud800"], ids=repr)
def test_r98_a_device_token_twostep_could_not_have_made_is_refused(
    world: World, store: ts.Store, token: object
) -> None:
    remembered(world, world.manager)
    before = store_snapshot(store)
    with pytest.raises(ts.InvalidInput) as refused:
        world.service.login(world.manager.email, PASSWORD, device=token)  # type: ignore[arg-type]
    assert refused.value.reason == "invalid_device"
    assert store_snapshot(store) == before


BAD_VALID_FOR = [timedelta(0), -HOUR, FAST.remember_device_for + timedelta(seconds=1), 3600, "1d"]
BAD_OPTIONS = [("valid_for", v) for v in BAD_VALID_FOR] + [("label", v) for v in (5, "", "x" * 201)]


@pytest.mark.parametrize(("option", "value"), BAD_OPTIONS, ids=repr)
def test_r98_bad_options_are_refused_and_change_nothing(
    world: World, store: ts.Store, option: str, value: object
) -> None:
    enrolled_session(world, world.manager)
    session = world.login(world.manager)
    before = store_snapshot(store)
    with pytest.raises(ts.InvalidInput) as refused:
        world.service.remember_device(session, **{option: value})  # type: ignore[arg-type]
    assert refused.value.reason == f"invalid_{option}"
    assert store_snapshot(store) == before


# -- R99: step-up ----------------------------------------------------------------------

STEP_UP_ACTIONS = {  # the owner's changes to another user that take no code of their own
    "set_role": "role_changed",  # R80
    "reset_two_factor": "two_factor_reset",  # R41
    "set_email": "email_changed",  # R89
}


def sensitive(world: World, owner: ts.Session, action: str, n: int) -> None:
    """The ``n``-th change by ``action`` to the member, each one a real change."""
    member = world.member.id
    if action == "set_role":
        world.service.set_role(owner, member, ["manager", "member"][n % 2])
    elif action == "set_email":
        world.service.set_email(owner, member, f"member{n}@acme.test")
    else:
        world.service.reset_two_factor(owner, member)


@pytest.mark.parametrize("action", sorted(STEP_UP_ACTIONS))
def test_r99_an_owner_with_2fa_steps_up_before_a_sensitive_change(
    world: World, store: ts.Store, action: str
) -> None:
    enrolled_session(world, world.owner)
    owner = world.login(world.owner)  # a code passed now
    sensitive(world, owner, action, 0)
    world.clock.advance(seconds=FAST.step_up_within.total_seconds() - 1)  # type: ignore[union-attr]
    sensitive(world, owner, action, 1)
    world.clock.advance(seconds=1)

    before = store_snapshot(store, skip=("audit",))
    with pytest.raises(ts.StepUpRequired) as refused:
        sensitive(world, owner, action, 2)
    assert isinstance(refused.value, ts.NotAllowed)
    assert (refused.value.reason, refused.value.rule) == ("step_up_required", "R99")
    assert store_snapshot(store, skip=("audit",)) == before
    with pytest.raises(ts.InvalidCode):
        world.service.step_up(owner, "000000")
    with pytest.raises(ts.StepUpRequired):  # a wrong code marks nothing
        sensitive(world, owner, action, 2)
    denied = events(world, STEP_UP_ACTIONS[action], outcome="denied")
    assert [(e.actor_id, e.target_id, e.reason) for e in denied] == [
        (world.owner.id, world.member.id, "step_up_required")
    ] * 2

    stepped = world.service.step_up(owner, world.fresh_code(world.owner.id))
    assert stepped.second_factor_at == world.clock.now()
    assert world.service.check_session(owner).second_factor_at == world.clock.now()
    sensitive(world, owner, action, 2)
    (audited,) = events(world, "step_up", outcome="success")
    assert (audited.actor_id, audited.reason) == (world.owner.id, "otp")


def test_r99_r4_r6_a_step_up_code_is_checked_and_throttled_like_any_code(
    world: World,
) -> None:
    enrolled_session(world, world.owner)
    owner = world.login(world.owner)
    phone = world.phones[world.owner.id]
    with pytest.raises(ts.InvalidCode):  # R4: the code the login took is not taken again
        world.service.step_up(owner, phone.code())
    world.service.step_up(owner, world.fresh_code(world.owner.id))  # clears the count
    world.clock.advance(hours=2)
    for _ in range(FAST.code_throttle.free_failures + 1):
        with pytest.raises(ts.InvalidCode):
            world.service.step_up(owner, "000000")
    with pytest.raises(ts.Throttled) as blocked:  # even a right code waits
        world.service.step_up(owner, phone.code())
    # The user's code counter is the one of every code: their login waits too (R6).
    step = world.service.login(world.owner.email, PASSWORD)
    assert isinstance(step, ts.CodeRequired)
    with pytest.raises(ts.Throttled):
        world.service.complete_login(step, phone.code())
    with pytest.raises(ts.StepUpRequired):
        world.service.set_role(owner, world.member.id, "manager")
    world.clock.advance(blocked.value.retry_after)
    world.service.step_up(owner, world.fresh_code(world.owner.id))
    world.service.set_role(owner, world.member.id, "manager")


def test_r99_a_user_without_2fa_cannot_step_up_and_nothing_is_counted(
    world: World, store: ts.Store
) -> None:
    member = world.login(world.member)  # the password alone
    for _ in range(FAST.code_throttle.free_failures + 2):
        with pytest.raises(ts.NotAllowed) as refused:
            world.service.step_up(member, "123456")
        assert (refused.value.reason, refused.value.rule) == ("two_factor_off", "R99")
    with store.transaction(write=False) as tx:
        assert tx.get_throttle(ts.ThrottleKey(ts.ThrottleScope.USER, world.member.id)) is None
    denied = events(world, "step_up", outcome="denied")
    assert [e.reason for e in denied] == ["two_factor_off"] * (FAST.code_throttle.free_failures + 2)


@pytest.mark.parametrize("action", sorted(STEP_UP_ACTIONS))
def test_r99_an_owner_without_2fa_is_never_asked(world: World, action: str) -> None:
    owner = world.login(world.owner)  # the password alone
    world.clock.advance(hours=11)
    sensitive(world, owner, action, 0)
    sensitive(world, owner, action, 1)


def test_r99_r98_a_device_session_steps_up_first_unless_step_up_is_off(
    world: World, store: ts.Store, keyring: ts.AESGCMKeyring
) -> None:
    step = through(world, world.owner, remembered(world, world.owner))
    assert isinstance(step, ts.LoggedIn)
    with pytest.raises(ts.StepUpRequired):  # no second factor passed in it (R98)
        world.service.set_role(step.session, world.member.id, "manager")

    relaxed = with_settings(world, store, keyring, step_up_within=None)
    relaxed.set_role(step.session, world.member.id, "manager")
    world.clock.advance(hours=11)
    relaxed.set_email(step.session, world.member.id, "relaxed@acme.test")
    relaxed.reset_two_factor(step.session, world.manager.id)

    world.service.step_up(step.session, world.fresh_code(world.owner.id))
    world.service.set_role(step.session, world.member.id, "member")


def test_r99_a_code_passed_by_an_enrolment_or_a_credential_change_marks_the_session(
    world: World,
) -> None:
    owner = world.login(world.owner)
    world.clock.advance(minutes=50)
    world.enroll(owner)  # R97: the confirming session goes on, marked
    world.clock.advance(minutes=50)  # 100 min after the login, 50 after the code
    world.service.set_role(owner, world.member.id, "manager")

    world.clock.advance(minutes=50)
    with pytest.raises(ts.StepUpRequired):
        world.service.set_role(owner, world.member.id, "member")
    code = world.fresh_code(world.owner.id)
    owner = world.service.change_password(owner, PASSWORD, NEW_PASSWORD, code=code)
    assert owner.second_factor_at == world.clock.now()
    world.service.set_role(owner, world.member.id, "member")

    world.clock.advance(hours=1)
    code = world.fresh_code(world.owner.id)
    owner = world.service.change_email(owner, "boss@acme.test", password=NEW_PASSWORD, code=code)
    assert owner.second_factor_at == world.clock.now()
    world.service.set_role(owner, world.member.id, "manager")


def test_r99_the_actions_that_take_a_code_are_fresh_by_themselves(world: World) -> None:
    owner = enrolled_session(world, world.owner)
    world.clock.advance(hours=2)
    with pytest.raises(ts.StepUpRequired):
        world.service.set_role(owner, world.member.id, "manager")
    world.service.regenerate_backup_codes(owner, world.fresh_code(world.owner.id))  # R5
    world.service.disable_two_factor(owner, world.fresh_code(world.owner.id))  # R31
    world.service.set_role(owner, world.member.id, "manager")  # no 2FA: nothing to ask
