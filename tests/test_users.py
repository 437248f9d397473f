"""The users' life (R80-R84): roles, deactivation, deletion and the list of users.

Every story runs through the public ``TwoStep`` API on each of the three stores.
"""

from __future__ import annotations

from collections.abc import Callable

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import twostep as ts
from twostep.testing import FAST, ManualClock

from .conftest import ALL_STORES, PASSWORD, World, every_store, store_snapshot

store = pytest.fixture(params=ALL_STORES, name="store")(every_store)  # PostgreSQL too


def events(world: World, session: ts.Session, action: str) -> list[tuple[object, ...]]:
    """The account's events of ``action``, newest first, as (outcome, actor, target, reason)."""
    return [
        (e.outcome, e.actor_id, e.target_id, e.reason)
        for e in world.service.audit_page(session, action=action, limit=1000).events
    ]


def refused(world: World, call: object, error: type[ts.TwoStepError], **kw: object) -> str:
    """Call, expect ``error``, and check that nothing but the audit trail changed."""
    store = world.service._context.store
    before = store_snapshot(store, skip=("audit",))
    with pytest.raises(error) as caught:
        call()  # type: ignore[operator]
    assert store_snapshot(store, skip=("audit",)) == before
    return caught.value.reason


# -- R80 roles --------------------------------------------------------------------------


def test_r80_an_owner_changes_roles_and_a_demotion_ends_sessions(world: World) -> None:
    service = world.service
    owner = world.login(world.owner)
    member = world.login(world.member)
    manager = world.login(world.manager)

    service.set_role(owner, world.member.id, ts.Role.MANAGER)  # a promotion: sessions go on
    assert service.check_session(member).role is ts.Role.MANAGER
    service.set_role(owner, world.manager.id, "member")  # a demotion ends them
    with pytest.raises(ts.SessionInvalid):
        service.check_session(manager)
    assert service.login(world.manager.email, PASSWORD)  # they log in again, as a member
    service.set_role(owner, world.member.id, ts.Role.OWNER)
    service.set_role(owner, world.member.id, ts.Role.OWNER)  # no change: no event

    assert events(world, owner, "role_changed") == [
        (ts.Outcome.SUCCESS, world.owner.id, world.member.id, "manager_to_owner"),
        (ts.Outcome.SUCCESS, world.owner.id, world.manager.id, "manager_to_member"),
        (ts.Outcome.SUCCESS, world.owner.id, world.member.id, "member_to_manager"),
    ]


def test_r80_managers_and_members_change_no_role(world: World) -> None:
    service = world.service
    owner = world.login(world.owner)
    for user in (world.manager, world.member):
        session = world.login(user)
        for target, role in ((world.member, "owner"), (world.member, "manager"), (user, "owner")):
            reason = refused(
                world,
                lambda s=session, t=target, r=role: service.set_role(s, t.id, r),
                ts.NotAllowed,
            )
            assert reason == "owner_only"
    denied = events(world, owner, "role_changed")
    assert len(denied) == 6
    assert {e[0] for e in denied} == {ts.Outcome.DENIED}


def test_r80_the_last_active_owner_cannot_demote_themselves(world: World) -> None:
    service = world.service
    owner = world.login(world.owner)
    reason = refused(
        world, lambda: service.set_role(owner, world.owner.id, "member"), ts.NotAllowed
    )
    assert reason == "last_owner"
    assert events(world, owner, "role_changed") == [
        (ts.Outcome.DENIED, world.owner.id, world.owner.id, "last_owner")
    ]
    # With a second active owner, an owner may step down; their sessions end.
    service.set_role(owner, world.manager.id, "owner")
    service.set_role(owner, world.owner.id, "manager")
    with pytest.raises(ts.SessionInvalid):
        service.check_session(owner)
    # A deactivated owner does not count: the one active owner is kept.
    second = world.login(world.manager)
    service.set_role(second, world.owner.id, "owner")
    service.deactivate_user(second, world.owner.id)
    reason = refused(
        world, lambda: service.set_role(second, world.manager.id, "member"), ts.NotAllowed
    )
    assert reason == "last_owner"


# -- R81 deactivation ---------------------------------------------------------------------


def test_r81_deactivation_ends_sessions_refuses_login_and_keeps_the_user(world: World) -> None:
    service = world.service
    owner = world.login(world.owner)
    member = world.login(world.member)
    world.enroll(member)
    member = world.login(world.member)

    service.deactivate_user(owner, world.member.id)
    with pytest.raises(ts.SessionInvalid):
        service.check_session(member)
    with pytest.raises(ts.InvalidCredentials):
        service.login(world.member.email, PASSWORD)
    service.deactivate_user(owner, world.member.id)  # already: no change, no event
    (listed,) = service.list_users(owner, active=False).users
    assert (listed.user_id, listed.active, listed.two_factor_enabled) == (
        world.member.id,
        False,
        True,
    )

    service.reactivate_user(owner, world.member.id)
    with pytest.raises(ts.SessionInvalid):  # ended sessions stay ended
        service.check_session(member)
    assert world.login(world.member).two_factor_enabled  # with the 2FA they had
    assert events(world, owner, "user_deactivated") == [
        (ts.Outcome.SUCCESS, world.owner.id, world.member.id, None)
    ]
    assert events(world, owner, "user_reactivated") == [
        (ts.Outcome.SUCCESS, world.owner.id, world.member.id, None)
    ]


def test_r81_only_owners_deactivate_and_nobody_deactivates_themselves(world: World) -> None:
    service = world.service
    owner = world.login(world.owner)
    manager = world.login(world.manager)
    for call, reason in (
        (lambda: service.deactivate_user(manager, world.member.id), "owner_only"),
        (lambda: service.reactivate_user(manager, world.member.id), "owner_only"),
        (lambda: service.deactivate_user(owner, world.owner.id), "target_is_self"),
    ):
        assert refused(world, call, ts.NotAllowed) == reason
    assert [e[3] for e in events(world, owner, "user_deactivated")] == [
        "target_is_self",
        "owner_only",
    ]


# -- R82 deletion -------------------------------------------------------------------------


def test_r82_deletion_frees_the_email_and_keeps_the_trail(world: World) -> None:
    service = world.service
    owner = world.login(world.owner)
    member = world.login(world.member)
    world.enroll(member)
    world.service.login(world.member.email, PASSWORD)  # a login challenge left open

    service.delete_user(owner, world.member.id)
    with pytest.raises(ts.SessionInvalid):
        service.check_session(member)
    with pytest.raises(ts.InvalidCredentials):
        service.login(world.member.email, PASSWORD)
    assert world.member.id not in {u.user_id for u in service.list_users(owner).users}
    again = service.create_user(world.account.id, world.member.email, PASSWORD)
    assert again.id != world.member.id
    assert not world.login(again).two_factor_enabled  # nothing of the old user is left

    trail = service.audit_page(owner, user_id=world.member.id, limit=1000).events
    assert trail[0].action == "user_deleted"
    assert (trail[0].actor_id, trail[0].target_id) == (world.owner.id, world.member.id)
    assert trail[0].reason == world.member.email
    assert any(e.action == "two_factor_enabled" for e in trail)  # earlier events stay
    with pytest.raises(ts.UnknownUser):  # gone: an audited UnknownUser, as for any id
        service.delete_user(owner, world.member.id)


def test_r82_only_owners_delete_and_nobody_deletes_themselves(world: World) -> None:
    service = world.service
    owner = world.login(world.owner)
    manager = world.login(world.manager)
    assert (
        refused(world, lambda: service.delete_user(manager, world.member.id), ts.NotAllowed)
        == "owner_only"
    )
    assert (
        refused(world, lambda: service.delete_user(owner, world.owner.id), ts.NotAllowed)
        == "target_is_self"
    )
    # Another owner may be deleted; the actor stays the account's owner.
    service.set_role(owner, world.manager.id, "owner")
    service.delete_user(owner, world.manager.id)
    assert [u.role for u in service.list_users(owner, role="owner").users] == [ts.Role.OWNER]


# -- R83 the list of users ----------------------------------------------------------------


def test_r83_owners_and_managers_page_through_the_users_with_filters(world: World) -> None:
    service = world.service
    owner = world.login(world.owner)
    world.enroll(owner)
    owner = world.login(world.owner)
    extra = [
        service.create_user(world.account.id, f"user{i}@acme.test", PASSWORD) for i in range(5)
    ]
    everyone = [world.owner, world.manager, world.member, *extra]
    manager = world.login(world.manager)

    seen: list[str] = []
    page = service.list_users(manager, limit=3)
    while True:
        seen += [u.user_id for u in page.users]
        if page.next_cursor is None:
            break
        if len(seen) == 3:  # one added meanwhile comes at the end, once
            world.clock.advance(1)
            everyone.append(service.create_user(world.account.id, "late@acme.test", PASSWORD))
        page = service.list_users(manager, limit=3, cursor=page.next_cursor)
    assert seen == [u.id for u in sorted(everyone, key=lambda u: (u.created_at, u.id))]

    assert [u.user_id for u in service.list_users(owner, role=ts.Role.MANAGER).users] == [
        world.manager.id
    ]
    assert [u.user_id for u in service.list_users(owner, two_factor=True).users] == [world.owner.id]
    assert len(service.list_users(owner, two_factor=False, role="member").users) == 7
    assert service.list_users(owner, active=False).users == ()
    assert service.list_users(owner, limit=100).next_cursor is None


def test_r83_members_may_not_list_users_and_that_is_audited(world: World) -> None:
    member = world.login(world.member)
    owner = world.login(world.owner)
    assert refused(world, lambda: world.service.list_users(member), ts.NotAllowed) == (
        "owner_or_manager_only"
    )
    assert events(world, owner, "users_listed") == [
        (ts.Outcome.DENIED, world.member.id, None, "owner_or_manager_only")
    ]


# -- R84 bad input -----------------------------------------------------------------------


def test_r84_unknown_and_foreign_users_are_audited_in_the_actors_trail(world: World) -> None:
    service = world.service
    other = service.create_account("Other")
    stranger = service.create_user(other.id, "stranger@other.test", PASSWORD, ts.Role.OWNER)
    owner = world.login(world.owner)
    calls = {
        "role_changed": lambda uid: service.set_role(owner, uid, "member"),
        "user_deactivated": lambda uid: service.deactivate_user(owner, uid),
        "user_reactivated": lambda uid: service.reactivate_user(owner, uid),
        "user_deleted": lambda uid: service.delete_user(owner, uid),
    }
    for action, call in calls.items():
        for user_id in (stranger.id, "no-such-user"):
            assert refused(world, lambda c=call, u=user_id: c(u), ts.UnknownUser) == (
                "unknown_user"
            )
        assert events(world, owner, action) == [
            (ts.Outcome.FAILURE, world.owner.id, "no-such-user", "unknown_user"),
            (ts.Outcome.FAILURE, world.owner.id, stranger.id, "unknown_user"),
        ]
    with service._context.store.transaction(write=False) as tx:
        assert tx.audit_events(other.id, 100)[0].action == "user_created"


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda s, w: s.set_role(w.owner_session, w.member.id, "admin"), "invalid_role"),
        (lambda s, w: s.set_role(w.owner_session, 7, "member"), "invalid_user_id"),
        (lambda s, w: s.deactivate_user(w.owner_session, ""), "invalid_user_id"),
        (lambda s, w: s.delete_user(w.owner_session, None), "invalid_user_id"),
        (lambda s, w: s.list_users(w.owner_session, limit=0), "invalid_limit"),
        (lambda s, w: s.list_users(w.owner_session, cursor="a1.5"), "invalid_cursor"),
        (lambda s, w: s.list_users(w.owner_session, cursor="u1.x.y"), "invalid_cursor"),
        (lambda s, w: s.list_users(w.owner_session, role="admin"), "invalid_role"),
        (lambda s, w: s.list_users(w.owner_session, two_factor="yes"), "invalid_two_factor"),
        (lambda s, w: s.list_users(w.owner_session, active=1), "invalid_active"),
    ],
)
def test_r84_bad_input_is_invalid_input_and_changes_nothing(
    world: World, call: object, reason: str
) -> None:
    world.owner_session = world.login(world.owner)  # type: ignore[attr-defined]
    store = world.service._context.store
    before = store_snapshot(store)
    with pytest.raises(ts.InvalidInput) as caught:
        call(world.service, world)  # type: ignore[operator]
    assert caught.value.reason == reason
    assert store_snapshot(store) == before


# -- R80-R82 under any sequence: the account keeps an active owner -------------------------


class OwnersMachine(RuleBasedStateMachine):
    """Owners change roles, deactivate, reactivate and delete at random (R80-R82).

    A model says who exists, with which role and whether active; after every step the
    service must agree with it, and the account must have an active owner.
    """

    def __init__(self) -> None:
        super().__init__()
        self.service = ts.TwoStep(
            ts.InMemoryStore(),
            issuer="Acme",
            clock=ManualClock(),
            settings=FAST,
            cipher=ts.AESGCMKeyring.generate(),
        )
        self.account = self.service.create_account("Acme")
        self.ids: list[str] = []
        self.model: dict[str, tuple[ts.Role, bool]] = {}  # id -> (role, active)
        for n, role in enumerate([ts.Role.OWNER, ts.Role.MANAGER, ts.Role.MEMBER, ts.Role.MEMBER]):
            user = self.service.create_user(self.account.id, f"u{n}@acme.test", PASSWORD, role)
            self.ids.append(user.id)
            self.model[user.id] = (role, True)

    def session_of(self, user_id: str) -> ts.Session | None:
        """A fresh session of a user who can log in, or ``None``."""
        if user_id not in self.model or not self.model[user_id][1]:
            return None
        step = self.service.login(f"u{self.ids.index(user_id)}@acme.test", PASSWORD)
        assert isinstance(step, ts.LoggedIn)
        return step.session

    def active_owners(self) -> list[str]:
        return [i for i, (role, active) in self.model.items() if role is ts.Role.OWNER and active]

    def attempt(self, call: Callable[[], None]) -> str | None:
        """Run ``call``; the reason of its refusal, or ``None`` if it went through."""
        try:
            call()
        except (ts.UnknownUser, ts.NotAllowed) as refusal:
            return refusal.reason
        return None

    @rule(actor=st.integers(0, 3), whom=st.integers(0, 3), role=st.sampled_from(list(ts.Role)))
    def set_role(self, actor: int, whom: int, role: ts.Role) -> None:
        session = self.session_of(self.ids[actor])
        if session is None:
            return
        target_id = self.ids[whom]
        reason = self.attempt(lambda: self.service.set_role(session, target_id, role))
        if reason == "unknown_user":
            assert target_id not in self.model
        elif reason == "last_owner":
            assert self.active_owners() == [target_id]
            assert role is not ts.Role.OWNER
        elif reason is not None:
            assert reason == "owner_only"
            assert self.model[session.user_id][0] is not ts.Role.OWNER
        else:
            assert session.role is ts.Role.OWNER
            self.model[target_id] = (role, self.model[target_id][1])

    @rule(
        actor=st.integers(0, 3),
        whom=st.integers(0, 3),
        what=st.sampled_from(["deactivate", "reactivate", "delete"]),
    )
    def change(self, actor: int, whom: int, what: str) -> None:
        session = self.session_of(self.ids[actor])
        if session is None:
            return
        target_id = self.ids[whom]
        call = getattr(self.service, f"{what}_user")
        reason = self.attempt(lambda: call(session, target_id))
        if reason == "unknown_user":
            assert target_id not in self.model
        elif reason is not None:
            assert reason in {"owner_only", "target_is_self"}
            assert session.role is not ts.Role.OWNER or target_id == session.user_id
        else:
            assert session.role is ts.Role.OWNER
            assert target_id != session.user_id
            if what == "delete":
                del self.model[target_id]
            else:
                self.model[target_id] = (self.model[target_id][0], what == "reactivate")

    @invariant()
    def the_account_keeps_an_active_owner_and_matches_the_model(self) -> None:
        assert self.active_owners()
        owner = self.session_of(self.active_owners()[0])
        assert owner is not None
        listed = {
            u.user_id: (u.role, u.active) for u in self.service.list_users(owner, limit=10).users
        }
        assert listed == self.model


TestR80ToR82TheAccountKeepsAnActiveOwner = OwnersMachine.TestCase
TestR80ToR82TheAccountKeepsAnActiveOwner.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None
)


def test_r80_two_owners_stepping_down_at_once_leave_an_active_owner(world: World) -> None:
    """Both read two owners; the second to write must see the first's change (R80)."""
    import threading

    service = world.service
    owner = world.login(world.owner)
    service.set_role(owner, world.manager.id, "owner")
    sessions = [world.login(world.owner), world.login(world.manager)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def step_down(session: ts.Session) -> None:
        barrier.wait()
        try:
            service.set_role(session, session.user_id, "member")
        except (ts.NotAllowed, ts.StoreError) as refusal:  # StoreError: a conflict, retry
            outcomes.append(refusal.reason)
        else:
            outcomes.append("done")

    threads = [threading.Thread(target=step_down, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("done") <= 1
    assert set(outcomes) <= {"done", "last_owner", "conflict"}
    with service._context.store.transaction(write=False) as tx:
        owners = [u for u in tx.users_of(world.account.id) if u.role is ts.Role.OWNER]
    assert len(owners) == 2 - outcomes.count("done") >= 1
