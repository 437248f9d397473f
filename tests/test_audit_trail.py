"""Reading the audit trail (R60, R75-R77), through the public API, on every store.

A flood of throttled attempts is counted on a handful of events (R75), so an owner's
earlier action stays on the first page; the trail is read page by page through a
cursor that later events do not shift, with filters (R76); old events are purged (R77).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock

from .conftest import PASSWORD, World, make_store

KINDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
ATTACKER = "198.51.100.7"
FLOOD = 10_000


@dataclass
class Scene:
    """A world whose service reports every event to ``published`` (the host's hook)."""

    world: World
    store: ts.Store
    published: list[ts.AuditEvent]

    @property
    def service(self) -> ts.TwoStep:
        return self.world.service


def make_scene(kind: str, tmp_path: Path, settings: ts.Settings = FAST) -> Scene:
    store = make_store(kind, tmp_path)
    clock = ManualClock()
    published: list[ts.AuditEvent] = []
    service = ts.TwoStep(
        store,
        issuer="Acme",
        clock=clock,
        settings=settings,
        cipher=ts.AESGCMKeyring.generate(),
        on_event=published.append,
    )
    account = service.create_account("Acme")
    owner = service.create_user(account.id, "owner@acme.test", PASSWORD, ts.Role.OWNER)
    manager = service.create_user(account.id, "manager@acme.test", PASSWORD, ts.Role.MANAGER)
    member = service.create_user(account.id, "member@acme.test", PASSWORD, ts.Role.MEMBER)
    return Scene(World(service, clock, account, owner, manager, member), store, published)


@pytest.fixture(params=KINDS)
def scene(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Scene]:
    made = make_scene(request.param, tmp_path)
    yield made
    made.store.close()


def walk(
    service: ts.TwoStep, session: ts.Session, *, limit: int, **filters: object
) -> list[list[ts.AuditEvent]]:
    """Every page of the trail, following the cursors to the end."""
    pages: list[list[ts.AuditEvent]] = []
    cursor: str | None = None
    while True:
        page = service.audit_page(session, limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        pages.append(list(page.events))
        if page.next_cursor is None:
            return pages
        assert len(page.events) == limit  # a page that has a next one is full
        cursor = page.next_cursor


def owner_resets_member(world: World) -> tuple[ts.Session, ts.AuditEvent]:
    """The owner's action that a flood must not hide: the member's 2FA reset (R41)."""
    owner = world.login(world.owner)
    world.enroll(world.login(world.member))
    world.service.reset_two_factor(owner, world.member.id)
    (reset,) = world.service.audit_page(owner, limit=1).events
    assert (reset.action, reset.actor_id) == ("two_factor_reset", world.owner.id)
    return owner, reset


def flood(world: World, attempts: int) -> Counter[str]:
    """Wrong passwords for the owner's email from one client, 10 ms apart."""
    outcomes: Counter[str] = Counter()
    for _ in range(attempts):
        world.clock.advance(0.01)
        try:
            world.service.login(world.owner.email, "not the password", client=ATTACKER)
        except ts.Throttled:
            outcomes["throttled"] += 1
        except ts.InvalidCredentials:
            outcomes["failure"] += 1
    return outcomes


# -- R75: throttled repeats are one event with a count ------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_r75_a_flood_of_throttled_logins_is_a_handful_of_events(kind: str, tmp_path: Path) -> None:
    scene = make_scene(kind, tmp_path)
    world = scene.world
    owner, reset = owner_resets_member(world)
    scene.published.clear()

    outcomes = flood(world, FLOOD)

    assert outcomes["throttled"] > FLOOD * 0.99
    assert outcomes.total() == FLOOD
    pages = walk(world.service, owner, limit=10)
    events = [e for page in pages for e in page]
    flooded = events[: events.index(reset)]
    assert {(e.action, e.actor_id) for e in flooded} == {("login", world.owner.id)}
    assert len(flooded) < 20, flooded  # 100 s of flood: a few failures, 2 throttled events
    throttled = [e for e in flooded if e.outcome is ts.Outcome.THROTTLED]
    assert sum(e.repeats for e in throttled) == outcomes["throttled"]
    assert sum(e.repeats for e in flooded) == FLOOD
    assert all(e.repeats == 1 for e in flooded if e.outcome is ts.Outcome.FAILURE)
    # Each throttled event spans at most the window from its first attempt, its time.
    assert len(throttled) <= (FLOOD * 0.01) // 60 + 2
    # The host's hook still saw every attempt, one by one.
    assert len(scene.published) == FLOOD
    assert all(e.repeats == 1 for e in scene.published)
    # The owner's earlier action stays on the first page, and is at hand by filter.
    assert reset in world.service.audit_trail(owner)
    assert len(pages) <= 3
    assert world.service.audit_page(owner, action="two_factor_reset").events == (reset,)
    assert world.service.audit_page(owner, outcome="success", limit=1).events == (reset,)
    assert reset in world.service.audit_page(owner, user_id=world.member.id, limit=1).events
    scene.store.close()


def test_r76_without_collapse_a_flood_hides_nothing_from_paging_and_filters(
    tmp_path: Path,
) -> None:
    # The flood of R75 with every attempt its own event: the first page is all flood,
    # but the owner's action is one filter, or a walk of the pages, away.
    scene = make_scene("memory", tmp_path, replace(FAST, audit_collapse_window=None))
    world = scene.world
    owner, reset = owner_resets_member(world)
    outcomes = flood(world, FLOOD)
    assert reset not in world.service.audit_trail(owner, limit=1000)
    assert world.service.audit_page(owner, action=ts.AuditAction.TWO_FACTOR_RESET).events == (
        reset,
    )
    assert world.service.audit_page(owner, outcome=ts.Outcome.SUCCESS, limit=1).events == (reset,)
    pages = walk(world.service, owner, limit=1000)
    events = [e for page in pages for e in page]
    assert events.index(reset) == FLOOD
    assert all(e.repeats == 1 for e in events)
    assert sum(e.outcome is ts.Outcome.THROTTLED for e in events) == outcomes["throttled"]
    scene.store.close()


#: Password failures block for 10 minutes: every attempt of a test is throttled.
LONG_BLOCKS = replace(FAST, password_throttle=ts.ThrottleSettings(base_delay=timedelta(minutes=10)))


@pytest.mark.parametrize("kind", KINDS)
def test_r75_repeats_collapse_only_within_the_window_and_by_their_kind(
    kind: str, tmp_path: Path
) -> None:
    scene = make_scene(kind, tmp_path, LONG_BLOCKS)
    world = scene.world
    owner = world.login(world.owner)
    window = LONG_BLOCKS.audit_collapse_window
    assert window == timedelta(minutes=1)

    def throttled_login(user: ts.User) -> None:
        with pytest.raises(ts.Throttled):
            world.service.login(user.email, "not the password")

    for user in (world.member, world.manager):
        for _ in range(LONG_BLOCKS.password_throttle.free_failures + 1):
            with pytest.raises(ts.InvalidCredentials):
                world.service.login(user.email, "not the password")
    first = world.clock.now()
    throttled_login(world.member)
    world.clock.advance(1)
    throttled_login(world.member)
    throttled_login(world.manager)  # another actor: its own event
    world.clock.set(first + window)
    throttled_login(world.member)  # at the window's end: still counted on the first
    world.clock.advance(microseconds=1)
    throttled_login(world.member)  # past it: a new event
    events = world.service.audit_page(owner, outcome="throttled").events
    assert [(e.at - first, e.repeats, e.reason, e.actor_id) for e in events] == [
        (window + timedelta(microseconds=1), 1, "email", world.member.id),
        (timedelta(seconds=1), 1, "email", world.manager.id),
        (timedelta(0), 3, "email", world.member.id),
    ]
    hooked = [e for e in scene.published if e.outcome is ts.Outcome.THROTTLED]
    assert [e.repeats for e in hooked] == [1] * 5  # the host's hook saw each attempt
    scene.store.close()


def test_r75_throttled_attempts_of_unknown_emails_collapse_too(tmp_path: Path) -> None:
    scene = make_scene("memory", tmp_path)
    assert isinstance(scene.store, ts.InMemoryStore)
    outcomes: Counter[str] = Counter()
    for _ in range(200):
        scene.world.clock.advance(0.1)  # 20 s: within one window
        try:
            scene.service.login("nobody@acme.test", "not the password")
        except ts.Throttled:
            outcomes["throttled"] += 1
        except ts.InvalidCredentials:
            outcomes["failure"] += 1
    anonymous = [e for _, e in scene.store.audit if e.account_id is None]
    throttled = [e for e in anonymous if e.outcome is ts.Outcome.THROTTLED]
    assert [(e.actor, e.actor_id, e.repeats) for e in throttled] == [
        ("anonymous", None, outcomes["throttled"])
    ]
    assert len(anonymous) == 1 + outcomes["failure"]
    assert outcomes["throttled"] > 150
    assert len([e for e in scene.published if e.account_id is None]) == 200


def test_r75_a_collapse_window_of_none_gives_each_attempt_its_event(tmp_path: Path) -> None:
    scene = make_scene("memory", tmp_path, replace(FAST, audit_collapse_window=None))
    world = scene.world
    owner = world.login(world.owner)
    for _ in range(FAST.password_throttle.free_failures + 1):
        with pytest.raises(ts.InvalidCredentials):
            world.service.login(world.member.email, "not the password")
    for _ in range(3):
        with pytest.raises(ts.Throttled):
            world.service.login(world.member.email, "not the password")
    events = world.service.audit_page(owner, outcome="throttled").events
    assert [e.repeats for e in events] == [1, 1, 1]


@pytest.mark.parametrize("value", [timedelta(seconds=-1), 60, "1 minute"])
@pytest.mark.parametrize(
    "name", ["audit_collapse_window", "audit_retention", "anonymous_audit_retention"]
)
def test_audit_settings_refuse_what_is_not_a_duration(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        replace(ts.Settings(), **{name: value})  # type: ignore[arg-type]


# -- R76: pages and filters ----------------------------------------------------------------------


def test_r76_pages_give_every_event_once_with_inserts_in_between(scene: Scene) -> None:
    world = scene.world
    owner = world.login(world.owner)
    for _ in range(22):  # logins of the member: one event each
        world.clock.advance(1)
        world.login(world.member)
    before = [e for page in walk(world.service, owner, limit=1000) for e in page]
    seen: list[ts.AuditEvent] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = world.service.audit_page(owner, limit=5, cursor=cursor)
        seen += page.events
        pages += 1
        for _ in range(3):  # more events between two pages, newer than every page
            world.clock.advance(1)
            world.login(world.manager)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == before  # each once, in order, none of those added meanwhile
    assert pages == -(-len(before) // 5)
    newest = world.service.audit_page(owner, limit=pages * 3).events
    assert {e.actor_id for e in newest} == {world.manager.id}


def test_r76_a_cursor_names_no_more_than_a_position(scene: Scene) -> None:
    # A cursor from one filter works with another, and one of another account's trail
    # shows nothing of that account: the account comes from the session.
    world = scene.world
    owner = world.login(world.owner)
    for _ in range(3):
        world.clock.advance(1)
        world.login(world.member)
    first = world.service.audit_page(owner, limit=1, action="login")
    assert first.next_cursor is not None
    rest = world.service.audit_page(owner, cursor=first.next_cursor)
    assert all(e.account_id == world.account.id for e in rest.events)
    assert first.events[0] not in rest.events
    assert world.service.audit_page(owner, limit=10_000).next_cursor is None


def test_r76_each_filter(scene: Scene) -> None:
    world = scene.world
    owner = world.login(world.owner)
    world.clock.advance(10)
    start = world.clock.now()
    member = world.login(world.member)
    world.enroll(member)
    world.clock.advance(10)
    with pytest.raises(ts.NotAllowed):
        world.service.two_factor_overview(member)
    middle = world.clock.now()
    world.clock.advance(10)
    world.service.reset_two_factor(owner, world.member.id)
    with pytest.raises(ts.InvalidCredentials):
        world.service.login(world.manager.email, "not the password")
    everything = world.service.audit_trail(owner, limit=1000)

    def page(**filters: object) -> list[ts.AuditEvent]:
        found = [e for p in walk(world.service, owner, limit=2, **filters) for e in p]
        assert found == list(world.service.audit_page(owner, limit=1000, **filters).events)  # type: ignore[arg-type]
        return found

    def where(keep: object) -> list[ts.AuditEvent]:
        return [e for e in everything if keep(e)]  # type: ignore[operator]

    for action in (ts.AuditAction.LOGIN, "login", "two_factor_reset", "overview_viewed"):
        assert page(action=action) == where(lambda e, a=action: e.action == a)
    assert page(action="logout") == []
    assert page(user_id=world.member.id) == where(
        lambda e: world.member.id in {e.actor_id, e.target_id}
    )
    assert any(e.actor_id == world.owner.id for e in page(user_id=world.member.id))  # a target
    assert page(outcome="denied") == where(lambda e: e.outcome == "denied")
    assert page(outcome=ts.Outcome.FAILURE) == where(lambda e: e.outcome == "failure")
    assert page(since=middle) == where(lambda e: e.at >= middle)
    assert page(until=middle) == where(lambda e: e.at < middle)
    assert page(since=start, until=middle) == where(lambda e: start <= e.at < middle)
    assert page(since=middle, until=middle) == []
    assert page(action="login", user_id=world.member.id, outcome="success", since=start) == (
        where(lambda e: e.action == "login" and e.actor_id == world.member.id)
    )
    assert {e.outcome for e in everything} >= {"success", "failure", "denied"}


@pytest.mark.parametrize(
    ("filters", "reason"),
    [
        ({"limit": 0}, "invalid_limit"),
        ({"limit": 10_001}, "invalid_limit"),
        ({"cursor": ""}, "invalid_cursor"),
        ({"cursor": "a1."}, "invalid_cursor"),
        ({"cursor": "a1.0"}, "invalid_cursor"),
        ({"cursor": "a1.-4"}, "invalid_cursor"),
        ({"cursor": "a1.+4"}, "invalid_cursor"),
        ({"cursor": "a1.٤"}, "invalid_cursor"),
        ({"cursor": "a1." + "9" * 20}, "invalid_cursor"),
        ({"cursor": "4"}, "invalid_cursor"),
        ({"cursor": 4}, "invalid_cursor"),
        ({"action": "Login"}, "invalid_action"),
        ({"action": "login_code"}, "invalid_action"),
        ({"action": ts.Outcome.SUCCESS}, "invalid_action"),
        ({"action": 1}, "invalid_action"),
        ({"outcome": "ok"}, "invalid_outcome"),
        ({"outcome": ts.AuditAction.LOGIN}, "invalid_outcome"),
        ({"user_id": ""}, "invalid_user_id"),
        ({"user_id": 7}, "invalid_user_id"),
        ({"since": datetime(2026, 1, 1)}, "invalid_since"),  # noqa: DTZ001 (naive on purpose)
        ({"until": "2026-01-01"}, "invalid_until"),
        (
            {"since": datetime(2026, 1, 2, tzinfo=UTC), "until": datetime(2026, 1, 1, tzinfo=UTC)},
            "invalid_time_range",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v)),
)
def test_r61_bad_filters_are_invalid_input_and_audit_nothing(
    scene: Scene, filters: dict[str, object], reason: str
) -> None:
    world = scene.world
    owner = world.login(world.owner)
    before = world.service.audit_trail(owner)
    with pytest.raises(ts.InvalidInput) as refused:
        world.service.audit_page(owner, **filters)  # type: ignore[arg-type]
    assert refused.value.reason == reason
    assert world.service.audit_trail(owner) == before


@pytest.mark.parametrize("who", ["member", "manager"])
def test_r50_only_owners_and_managers_read_pages(scene: Scene, who: str) -> None:
    world = scene.world
    session = world.login(getattr(world, who))
    owner = world.login(world.owner)
    if who == "manager":
        assert world.service.audit_page(session, action="login").events
        return
    with pytest.raises(ts.NotAllowed) as refused:
        world.service.audit_page(session, action="login")
    assert "R50" in refused.value.rule
    denied = world.service.audit_page(owner, limit=1).events[0]
    assert (denied.action, denied.outcome, denied.actor_id) == (
        "audit_trail_viewed",
        "denied",
        world.member.id,
    )


# -- R77: retention ---------------------------------------------------------------------------


def test_r77_purge_keeps_events_for_their_retention(scene: Scene) -> None:
    world = scene.world
    owner = world.login(world.owner)
    with pytest.raises(ts.InvalidCredentials):
        world.service.login("nobody@acme.test", "not the password")
    kept = world.service.audit_trail(owner, limit=1000)
    world.clock.advance(days=399)
    world.service.purge_expired()  # the event of no account goes (30 days), not the others
    owner = world.login(world.owner)
    assert world.service.audit_trail(owner, limit=1000)[1:] == kept
    world.clock.advance(days=2)
    world.service.purge_expired()  # the first events are past 400 days
    owner = world.login(world.owner)
    trail = world.service.audit_trail(owner, limit=1000)
    assert [e.at for e in trail] == [world.clock.now(), world.clock.now() - timedelta(days=2)]


def test_r77_anonymous_events_go_after_their_shorter_retention(tmp_path: Path) -> None:
    scene = make_scene("memory", tmp_path)
    assert isinstance(scene.store, ts.InMemoryStore)
    world = scene.world
    with pytest.raises(ts.InvalidCredentials):
        world.service.login("nobody@acme.test", "not the password")
    anonymous = [e for _, e in scene.store.audit if e.account_id is None]
    assert len(anonymous) == 1
    world.clock.advance(days=30)
    world.service.purge_expired()
    assert [e for _, e in scene.store.audit if e.account_id is None] == anonymous
    world.clock.advance(seconds=1)
    world.service.purge_expired()
    assert [e for _, e in scene.store.audit if e.account_id is None] == []
    assert len(scene.store.audit) == 4  # the account's and its users' creation stay


def test_r77_a_retention_of_none_keeps_every_event(tmp_path: Path) -> None:
    settings = replace(FAST, audit_retention=None, anonymous_audit_retention=None)
    scene = make_scene("memory", tmp_path, settings)
    with pytest.raises(ts.InvalidCredentials):
        scene.service.login("nobody@acme.test", "not the password")
    scene.world.clock.advance(days=10_000)
    scene.service.purge_expired()
    assert len(scene.store.audit) == 5  # type: ignore[attr-defined]
