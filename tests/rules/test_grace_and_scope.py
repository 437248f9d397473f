"""A grace period to enrol (R95) and a requirement of admins only (R96), on every store."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import twostep as ts
from twostep.testing import Phone

from ..conftest import ALL_STORES, PASSWORD, World, every_store, store_snapshot
from .helpers import enrolled_session

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


store = pytest.fixture(params=ALL_STORES, name="store")(every_store)  # PostgreSQL too


def state(world: World, session: ts.Session) -> str:
    """``"valid"``, or why ``check_session`` refuses the session."""
    try:
        world.service.check_session(session)
    except ts.SessionInvalid as refused:
        return refused.reason
    return "valid"


def require(world: World, **requirement: object) -> datetime:
    """The owner (enrolled first if need be) turns the requirement on; returns when."""
    owner = world.login(world.owner)
    if world.owner.id not in world.phones:
        world.enroll(owner)
    started = world.clock.now()
    world.service.set_two_factor_required(owner, True, **requirement)  # type: ignore[arg-type]
    return started


def owner_session(world: World) -> ts.Session:
    """A fresh session of the (enrolled) owner, with a code just passed (R99)."""
    return world.login(world.owner)


def password_login(world: World, user: ts.User) -> ts.LoggedIn:
    step = world.service.login(user.email, PASSWORD)
    assert isinstance(step, ts.LoggedIn), step
    return step


def requirement_reasons(world: World) -> list[str | None]:
    """The reasons of the audited changes of the requirement, oldest first."""
    page = world.service.audit_page(owner_session(world), action="two_factor_required")
    return [event.reason for event in reversed(page.events)]


# -- R95: the grace period -------------------------------------------------------------


def test_r95_inside_the_grace_period_the_password_gives_a_session_until_the_deadline(
    world: World,
) -> None:
    deadline = require(world, grace_period=6 * HOUR) + 6 * HOUR
    logged_in = password_login(world, world.member)  # R95: a session, not an enrolment
    assert logged_in.backup_codes is None
    assert logged_in.enroll_by == logged_in.session.enroll_by == deadline
    session = logged_in.session
    assert world.service.check_session(session).enroll_by == deadline
    status = world.service.two_factor_status(session)
    assert (status.enabled, status.required_by_account, status.enroll_by) == (False, True, deadline)
    # Users with 2FA are unaffected: a code, as always, and nothing due.
    assert isinstance(world.service.login(world.owner.email, PASSWORD), ts.CodeRequired)
    assert world.service.check_session(owner_session(world)).enroll_by is None

    world.clock.set(deadline - timedelta(seconds=1))
    assert state(world, session) == "valid"
    world.clock.set(deadline)  # at the deadline the session stops working
    assert state(world, session) == "two_factor_required"
    with pytest.raises(ts.SessionInvalid):
        world.service.two_factor_status(session)
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.EnrollmentRequired)


def test_r95_r21_turning_it_on_logs_everyone_out_then_the_grace_admits_the_password(
    world: World,
) -> None:
    owner = enrolled_session(world, world.owner)
    manager = world.login(world.manager)
    member = enrolled_session(world, world.member)
    started = world.clock.now()
    world.service.set_two_factor_required(owner, True, grace_period=7 * DAY)

    assert [state(world, s) for s in (owner, manager, member)] == ["revoked"] * 3
    assert password_login(world, world.manager).enroll_by == started + 7 * DAY
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.CodeRequired)
    assert requirement_reasons(world) == ["all_sessions_ended"]


def test_r95_a_shorter_grace_applies_at_once_and_a_longer_one_gives_more(world: World) -> None:
    started = require(world, grace_period=6 * HOUR)
    owner = owner_session(world)
    world.clock.advance(hours=1)
    member = password_login(world, world.member).session

    world.service.set_two_factor_required(owner, True, grace_period=3 * HOUR)
    assert world.service.check_session(member).enroll_by == started + 3 * HOUR
    world.clock.advance(hours=1)
    world.service.set_two_factor_required(owner, True, grace_period=HOUR)  # already over
    assert state(world, member) == "two_factor_required"
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.EnrollmentRequired)
    assert state(world, owner) == "valid"  # a change of grace logs nobody out

    world.service.set_two_factor_required(owner, True, grace_period=6 * HOUR)  # longer
    assert world.service.check_session(member).enroll_by == started + 6 * HOUR
    assert password_login(world, world.member).enroll_by == started + 6 * HOUR

    world.service.set_two_factor_required(owner, True)  # the whole requirement: no grace
    assert state(world, member) == "two_factor_required"
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.EnrollmentRequired)
    assert requirement_reasons(world) == ["all_sessions_ended"] + ["grace_period_changed"] * 4


def test_r95_zero_means_no_grace(world: World) -> None:
    require(world, grace_period=timedelta(0))
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.EnrollmentRequired)


def test_r95_the_longest_grace_is_the_settings_maximum(world: World) -> None:
    started = require(world, grace_period=ts.Settings().max_grace_period)
    assert password_login(world, world.member).enroll_by == started + timedelta(days=90)


def test_r95_a_user_created_later_counts_from_their_creation(world: World) -> None:
    require(world, grace_period=2 * DAY)
    world.clock.advance(days=5)
    newcomer = world.service.create_user(world.account.id, "new@acme.test", PASSWORD)
    created = world.clock.now()
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.EnrollmentRequired)
    world.clock.advance(days=1)
    assert password_login(world, newcomer).enroll_by == created + 2 * DAY
    world.clock.set(created + 2 * DAY)
    assert isinstance(world.service.login(newcomer.email, PASSWORD), ts.EnrollmentRequired)


def test_r95_r70_a_clock_moved_back_before_the_requirement_grants_no_grace(
    world: World,
) -> None:
    world.clock.advance(days=1)
    started = require(world, grace_period=7 * DAY)
    world.clock.set(started - HOUR)  # still after the member's creation
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.EnrollmentRequired)
    world.clock.set(started + HOUR)
    assert password_login(world, world.member).enroll_by == started + 7 * DAY


def test_r95_r30_enrolling_inside_the_grace_period_ends_what_is_due(world: World) -> None:
    require(world, grace_period=6 * HOUR)
    session = password_login(world, world.member).session
    enrollment = world.service.begin_enrollment(session)
    assert state(world, session) == "valid"  # nothing changes until confirmed (R11)
    phone = Phone(enrollment.secret, world.clock)
    world.service.confirm_enrollment(session, phone.code())
    world.phones[world.member.id] = phone

    seen = world.service.check_session(session)
    assert (seen.enroll_by, seen.two_factor_enabled) == (None, True)
    assert world.service.two_factor_status(session).enroll_by is None
    world.clock.advance(hours=7)  # past the deadline: with 2FA, the deadline is no more
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.CodeRequired)
    assert world.login(world.member).enroll_by is None


@pytest.mark.parametrize(
    "grace",
    [-timedelta(seconds=1), timedelta(days=90, seconds=1), 7, 7.0, "7 days", True],
    ids=["negative", "over_max", "int", "float", "str", "bool"],
)
def test_r95_a_bad_grace_period_is_refused_and_changes_nothing(
    world: World, store: ts.Store, grace: object
) -> None:
    require(world, grace_period=DAY)
    owner = owner_session(world)
    member = password_login(world, world.member).session
    before = store_snapshot(store)
    with pytest.raises(ts.InvalidInput) as refused:
        world.service.set_two_factor_required(owner, True, grace_period=grace)  # type: ignore[arg-type]
    assert refused.value.reason == "invalid_grace_period"
    with pytest.raises(ts.InvalidInput):  # turning it on with a bad one is refused as well
        world.service.set_two_factor_required(owner, False, grace_period=grace)  # type: ignore[arg-type]
    assert store_snapshot(store) == before
    assert world.service.check_session(member).enroll_by is not None


# -- R96: whom the requirement covers --------------------------------------------------


def test_r96_admins_only_covers_owners_and_managers(world: World) -> None:
    owner = enrolled_session(world, world.owner)
    manager = world.login(world.manager)
    member = world.login(world.member)
    world.service.set_two_factor_required(owner, True, of="admins")

    assert [state(world, s) for s in (owner, manager, member)] == ["revoked", "revoked", "valid"]
    status = world.service.two_factor_status(member)
    assert (status.required_by_account, status.enroll_by) == (False, None)
    assert password_login(world, world.member).enroll_by is None  # R2: password alone
    assert isinstance(world.service.login(world.manager.email, PASSWORD), ts.EnrollmentRequired)
    manager = world.login(world.manager)  # enrols inside the login (R3)
    assert world.service.two_factor_status(manager).required_by_account is True
    assert requirement_reasons(world) == ["admin_sessions_ended"]


def test_r96_a_member_under_admins_only_turns_2fa_on_and_off_and_cannot_begin_a_reset(
    world: World,
) -> None:
    require(world, of="admins")
    member = enrolled_session(world, world.member)  # R30
    assert world.service.two_factor_status(member).required_by_account is False
    with pytest.raises(ts.NotAllowed) as refused:  # R40: only for those it covers
        world.service.begin_reset(member, world.fresh_code(world.member.id))
    assert refused.value.reason == "account_does_not_require_two_factor"
    world.service.disable_two_factor(member, world.fresh_code(world.member.id))  # R31
    assert world.service.two_factor_status(member).enabled is False
    password_login(world, world.member)  # R2 again

    manager = world.login(world.manager)  # enrolled inside the login: covered
    with pytest.raises(ts.NotAllowed) as kept:
        world.service.disable_two_factor(manager, world.fresh_code(world.manager.id))
    assert kept.value.reason == "account_requires_two_factor"


def test_r96_r95_widening_to_everyone_logs_out_the_members_and_starts_their_grace(
    world: World,
) -> None:
    started = require(world, of="admins", grace_period=6 * HOUR)
    owner = owner_session(world)
    manager = password_login(world, world.manager).session
    member = world.login(world.member)
    world.clock.advance(hours=2)
    widened = world.clock.now()
    world.service.set_two_factor_required(owner, True, grace_period=6 * HOUR)

    assert [state(world, s) for s in (owner, manager, member)] == ["valid", "valid", "revoked"]
    assert world.service.check_session(manager).enroll_by == started + 6 * HOUR
    assert password_login(world, world.member).enroll_by == widened + 6 * HOUR
    assert requirement_reasons(world) == ["admin_sessions_ended", "member_sessions_ended"]


def test_r96_narrowing_to_admins_logs_out_nobody(world: World) -> None:
    started = require(world, grace_period=6 * HOUR)
    owner = owner_session(world)
    manager = password_login(world, world.manager).session
    member = password_login(world, world.member).session
    world.service.set_two_factor_required(owner, True, of="admins", grace_period=6 * HOUR)

    assert [state(world, s) for s in (owner, manager, member)] == ["valid"] * 3
    assert world.service.check_session(member).enroll_by is None  # no longer covered
    assert world.service.check_session(manager).enroll_by == started + 6 * HOUR
    world.clock.set(started + 6 * HOUR)
    assert (state(world, manager), state(world, member)) == ("two_factor_required", "valid")
    assert requirement_reasons(world) == ["all_sessions_ended", "admins_only"]


@pytest.mark.parametrize("role", ["manager", "owner"])
def test_r96_promoting_a_member_without_2fa_under_admins_only_ends_their_sessions(
    world: World, role: str
) -> None:
    require(world, of="admins")
    member = password_login(world, world.member).session
    world.service.set_role(owner_session(world), world.member.id, role)
    assert state(world, member) == "revoked"
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.EnrollmentRequired)


@pytest.mark.parametrize("opened", ["before", "after"])
def test_r80_r96_promoting_an_enrolled_member_under_admins_only_ends_their_sessions_alike(
    world: World, opened: str
) -> None:
    # Whether the session was opened before or after the requirement: the promotion
    # brings the user under it, and they log in again under it, with a code.
    member = enrolled_session(world, world.member) if opened == "before" else None
    require(world, of="admins")
    if member is None:
        member = enrolled_session(world, world.member)
    assert state(world, member) == "valid"
    world.service.set_role(owner_session(world), world.member.id, "manager")
    assert state(world, member) == "revoked"
    assert isinstance(world.service.login(world.member.email, PASSWORD), ts.CodeRequired)


def test_r80_a_promotion_the_requirement_does_not_reach_ends_no_session(world: World) -> None:
    require(world, of="admins")
    manager = world.login(world.manager)  # enrolled inside the login (R3)
    world.service.set_role(owner_session(world), world.manager.id, "owner")  # covered before
    assert state(world, manager) == "valid"


def test_r96_r95_a_promotion_inside_the_grace_counts_from_the_requirement(
    world: World,
) -> None:
    started = require(world, of="admins", grace_period=6 * HOUR)
    member = password_login(world, world.member).session
    world.clock.advance(hours=1)
    world.service.set_role(owner_session(world), world.member.id, "manager")
    assert state(world, member) == "revoked"
    # Logged in again with the password: counted from when the requirement began, not
    # from the promotion.
    manager = password_login(world, world.member).session
    assert world.service.check_session(manager).enroll_by == started + 6 * HOUR
    assert world.service.two_factor_status(manager).required_by_account is True
    world.clock.set(started + 6 * HOUR)
    assert state(world, manager) == "two_factor_required"


@pytest.mark.parametrize("of", ["all", "ADMINS", "owners", "", None, 1])
def test_r96_any_other_of_is_refused_and_changes_nothing(
    world: World, store: ts.Store, of: object
) -> None:
    owner = enrolled_session(world, world.owner)
    member = world.login(world.member)
    before = store_snapshot(store)
    with pytest.raises(ts.InvalidInput) as refused:
        world.service.set_two_factor_required(owner, True, of=of)  # type: ignore[arg-type]
    assert refused.value.reason == "invalid_of"
    assert store_snapshot(store) == before
    assert (state(world, owner), state(world, member)) == ("valid", "valid")


def test_r96_the_requirement_can_be_named_by_its_enum(world: World) -> None:
    require(world, of=ts.RequiredOf.ADMINS)
    assert isinstance(password_login(world, world.member), ts.LoggedIn)
    assert isinstance(world.service.login(world.manager.email, PASSWORD), ts.EnrollmentRequired)
