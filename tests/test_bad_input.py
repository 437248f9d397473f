"""R61: bad input gets a typed error and changes nothing stored.

A malformed code, a bad argument, an unknown or dead challenge changes nothing at all,
not even the audit trail. A wrong but well-formed code or password is a counted
failure (R6, R60): it may touch only the throttles, the challenge's attempt count and
the audit trail, and it must do so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass
from functools import partial

import pytest

import twostep as ts
from twostep import AuditEvent
from twostep._domain import ThrottleKey, ThrottleScope
from twostep.testing import Phone

from .conftest import PASSWORD, World, ask_code, store_snapshot

TEN_MB = 10 * 1024 * 1024

# Each case is tried on each operation, in one test per operation (one setup, not 90).
MALFORMED_CODES = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="spaces"),
    pytest.param("\t\r\n ", id="whitespace"),
    pytest.param("12345", id="five-digits"),
    pytest.param("1234567", id="seven-digits"),
    pytest.param("12345a", id="letter"),
    pytest.param("123.456", id="dot"),
    pytest.param("١٢٣٤٥٦", id="arabic-indic-digits"),
    pytest.param("\uff11\uff12\uff13\uff14\uff15\uff16", id="fullwidth-digits"),
    pytest.param("123456\x00", id="nul"),
    pytest.param("abcde-fghjk!", id="backup-with-symbol"),
    pytest.param("abcde-fghj", id="backup-too-short"),
    pytest.param("0" * 65, id="65-chars"),
    pytest.param("1" * TEN_MB, id="10MB"),
    pytest.param(None, id="None"),
    pytest.param(123456, id="int"),
    pytest.param(b"123456", id="bytes"),
    pytest.param(["123456"], id="list"),
]

BAD_TOKENS = [
    pytest.param(None, id="None"),
    pytest.param(123, id="int"),
    pytest.param("", id="empty"),
    pytest.param("x" * TEN_MB, id="10MB"),
]


@dataclass
class Scene:
    """An account where the member has 2FA and a login waiting for its code."""

    world: World
    store: ts.Store
    owner: ts.Session
    member: ts.Session
    manager: ts.Session  # with an enrolment waiting for its code
    manager_phone: Phone
    challenge: ts.CodeRequired

    @property
    def service(self) -> ts.TwoStep:
        return self.world.service


@pytest.fixture
def scene(world: World, store: ts.Store) -> Scene:
    owner = world.login(world.owner)
    member = world.login(world.member)
    world.enroll(member)
    manager = world.login(world.manager)
    enrollment = world.service.begin_enrollment(manager)
    world.clock.advance(30)
    challenge = world.service.login(world.member.email, PASSWORD)
    assert isinstance(challenge, ts.CodeRequired)
    return Scene(
        world, store, owner, member, manager, Phone(enrollment.secret, world.clock), challenge
    )


def refused_unchanged(
    store: ts.Store,
    call: Callable[[], object],
    error: type[ts.TwoStepError],
    *,
    reason: str | None = None,
    skip: tuple[str, ...] = (),
) -> ts.TwoStepError:
    """``call`` raises ``error`` (a twostep error) and the store (less ``skip``) is as before."""
    before = store_snapshot(store, skip=skip)
    with pytest.raises(error) as caught:
        call()
    assert isinstance(caught.value, ts.TwoStepError)
    if reason is not None:
        assert caught.value.reason == reason
    assert store_snapshot(store, skip=skip) == before
    return caught.value


def refused_and_audited(
    store: ts.Store, call: Callable[[], object], error: type[ts.TwoStepError], *, reason: str
) -> None:
    """``call`` is refused, the refusal is one new audit event (R60), and nothing else changes."""
    before = store_snapshot(store)
    refused_unchanged(store, call, error, reason=reason, skip=("audit",))
    old, new = before["audit"], store_snapshot(store)["audit"]
    assert isinstance(old, list)
    assert isinstance(new, list)
    added = [row for row in new if row not in old]
    assert len(new) == len(old) + 1
    assert len(added) == 1
    values = astuple(added[0]) if isinstance(added[0], AuditEvent) else tuple(added[0])
    assert "failure" in values
    assert reason in values


def code_operations(s: Scene) -> dict[str, Callable[[object], object]]:
    svc = s.service
    return {
        "complete_login": lambda c: svc.complete_login(s.challenge, c),
        "confirm_enrollment": lambda c: svc.confirm_enrollment(s.manager, c),
        "disable_two_factor": lambda c: svc.disable_two_factor(s.member, c),
        "regenerate_backup_codes": lambda c: svc.regenerate_backup_codes(s.member, c),
        "begin_reset": lambda c: svc.begin_reset(s.member, c),
    }


def wrong_code(phone: Phone) -> str:
    """A well-formed OTP that matches no step of the drift window."""
    window = {phone.code(offset_steps=k) for k in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in window)


# -- codes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    [
        "complete_login",
        "confirm_enrollment",
        "disable_two_factor",
        "regenerate_backup_codes",
        "begin_reset",
    ],
)
def test_r61_a_malformed_code_changes_nothing(scene: Scene, operation: str) -> None:
    call = code_operations(scene)[operation]
    for case in MALFORMED_CODES:
        (code,) = case.values
        error = refused_unchanged(
            scene.store, partial(call, code), ts.InvalidCode, reason="malformed"
        )
        assert len(str(error)) < 200, case.id


@pytest.mark.parametrize(
    "operation",
    ["complete_login", "confirm_enrollment", "disable_two_factor", "regenerate_backup_codes"],
)
@pytest.mark.parametrize("kind", ["otp", "backup"])
def test_r61_a_wrong_code_is_counted_and_audited_only(
    scene: Scene, operation: str, kind: str
) -> None:
    phone = scene.manager_phone if operation == "confirm_enrollment" else None
    phone = phone or scene.world.phones[scene.world.member.id]
    code = wrong_code(phone) if kind == "otp" else "zzzzz-zzzzz"
    user_id = scene.world.manager.id if operation == "confirm_enrollment" else scene.world.member.id
    events_before = len(scene.service.audit_trail(scene.owner, limit=1000))

    error = refused_unchanged(
        scene.store,
        lambda: code_operations(scene)[operation](code),
        ts.InvalidCode,
        reason="wrong",
        skip=("audit", "throttles", "challenges"),
    )

    assert code not in str(error)
    assert code not in repr(error)
    events = scene.service.audit_trail(scene.owner, limit=1000)
    assert len(events) == events_before + 1
    assert events[0].outcome is ts.Outcome.FAILURE
    assert events[0].actor_id == user_id
    assert events[0].reason == "wrong"
    with scene.store.transaction(write=False) as tx:
        throttle = tx.get_throttle(ThrottleKey(ThrottleScope.USER, user_id))
    assert throttle is not None
    assert throttle.failures == 1


def test_r61_a_wrong_login_code_counts_against_the_challenge(scene: Scene) -> None:
    code = wrong_code(scene.world.phones[scene.world.member.id])
    error = refused_unchanged(
        scene.store,
        lambda: scene.service.complete_login(scene.challenge, code),
        ts.InvalidCode,
        skip=("audit", "throttles", "challenges"),
    )
    assert isinstance(error, ts.InvalidCode)
    assert error.attempts_left == 4


def test_r61_a_replayed_code_is_refused_as_such(scene: Scene) -> None:
    code = scene.world.fresh_code(scene.world.member.id)
    scene.service.regenerate_backup_codes(scene.member, code)
    refused_unchanged(
        scene.store,
        lambda: scene.service.disable_two_factor(scene.member, code),
        ts.InvalidCode,
        reason="replayed",
        skip=("audit", "throttles"),
    )
    assert scene.service.two_factor_status(scene.member).enabled is True


# -- logging in --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "password"),
    [
        pytest.param(None, PASSWORD, id="email-None"),
        pytest.param(42, PASSWORD, id="email-int"),
        pytest.param("", PASSWORD, id="email-empty"),
        pytest.param("   ", PASSWORD, id="email-spaces"),
        pytest.param("a" * TEN_MB + "@acme.test", PASSWORD, id="email-10MB"),
        pytest.param("member@acme.test", None, id="password-None"),
        pytest.param("member@acme.test", 12345678, id="password-int"),
        pytest.param("member@acme.test", b"correct horse battery", id="password-bytes"),
        pytest.param("member@acme.test", "x" * TEN_MB, id="password-10MB"),
        pytest.param("member@acme.test", "é" * 600, id="password-over-1024-bytes"),
    ],
)
def test_r61_bad_login_arguments_change_nothing(
    scene: Scene, email: object, password: object
) -> None:
    refused_unchanged(
        scene.store,
        lambda: scene.service.login(email, password),  # type: ignore[arg-type]
        ts.InvalidInput,
    )


@pytest.mark.parametrize(
    "email", ["nobody@acme.test", "NOBODY@elsewhere.test", "member@acme.tes", "\u0661@acme.test"]
)
def test_r61_an_unknown_email_is_invalid_credentials_and_counted_only(
    scene: Scene, email: str
) -> None:
    error = refused_unchanged(
        scene.store,
        lambda: scene.service.login(email, PASSWORD),
        ts.InvalidCredentials,
        reason="invalid_credentials",
        skip=("audit", "throttles"),
    )
    # The same answer as a wrong password: a caller cannot tell which it was.
    wrong_password = refused_unchanged(
        scene.store,
        lambda: scene.service.login(scene.world.member.email, "not the password"),
        ts.InvalidCredentials,
        skip=("audit", "throttles"),
    )
    assert str(error) == str(wrong_password)
    assert PASSWORD not in str(error)


def test_r61_a_bad_client_key_changes_nothing(scene: Scene) -> None:
    refused_unchanged(
        scene.store,
        lambda: scene.service.login(scene.world.member.email, PASSWORD, client=7),  # type: ignore[arg-type]
        ts.InvalidInput,
    )
    refused_unchanged(
        scene.store,
        lambda: scene.service.complete_login(scene.challenge, "123456", client="x" * TEN_MB),
        ts.InvalidInput,
    )


# -- challenges --------------------------------------------------------------------------------


def test_r61_an_unknown_challenge_is_audited_and_changes_nothing(scene: Scene) -> None:
    refused_and_audited(
        scene.store,
        lambda: scene.service.complete_login("no-such-token", "123456"),
        ts.ChallengeExpired,
        reason="unknown",
    )


@pytest.mark.parametrize("token", BAD_TOKENS)
def test_r61_a_malformed_challenge_changes_nothing(scene: Scene, token: object) -> None:
    refused_unchanged(
        scene.store,
        lambda: scene.service.complete_login(token, "123456"),  # type: ignore[arg-type]
        ts.ChallengeExpired,
        reason="unknown",
    )


def test_r61_an_expired_challenge_is_audited_and_changes_nothing(scene: Scene) -> None:
    scene.world.clock.advance(301)
    refused_and_audited(
        scene.store,
        lambda: scene.service.complete_login(
            scene.challenge, scene.world.phones[scene.world.member.id].code()
        ),
        ts.ChallengeExpired,
        reason="expired",
    )


def test_r61_a_used_challenge_is_audited_and_changes_nothing(scene: Scene) -> None:
    phone = scene.world.phones[scene.world.member.id]
    scene.service.complete_login(scene.challenge, phone.code())
    scene.world.clock.advance(30)
    refused_and_audited(
        scene.store,
        lambda: scene.service.complete_login(scene.challenge, phone.code()),
        ts.ChallengeExpired,
        reason="unknown",
    )


def test_r61_an_exhausted_challenge_is_audited_and_changes_nothing(scene: Scene) -> None:
    phone = scene.world.phones[scene.world.member.id]
    for _ in range(5):
        with pytest.raises(ts.InvalidCode):
            scene.service.complete_login(scene.challenge, wrong_code(phone))
    refused_and_audited(
        scene.store,
        lambda: scene.service.complete_login(scene.challenge, phone.code()),
        ts.ChallengeExpired,
        reason="too_many_attempts",
    )


def test_r61_a_throttled_attempt_is_audited_but_checks_nothing(scene: Scene) -> None:
    phone = scene.world.phones[scene.world.member.id]
    for _ in range(6):
        step = ask_code(scene.service, scene.world.member.email)
        with pytest.raises(ts.InvalidCode):
            scene.service.complete_login(step, wrong_code(phone))
    step = ask_code(scene.service, scene.world.member.email)
    error = refused_unchanged(
        scene.store,
        lambda: scene.service.complete_login(step, phone.code()),
        ts.Throttled,
        skip=("audit",),
    )
    assert isinstance(error, ts.Throttled)
    assert error.retry_after > 0
    assert scene.service.audit_trail(scene.owner)[0].outcome is ts.Outcome.THROTTLED


def test_r61_an_expired_enrolment_is_audited_and_changes_nothing(scene: Scene) -> None:
    scene.world.clock.advance(seconds=scene.service.settings.enrollment_ttl.total_seconds())
    refused_and_audited(
        scene.store,
        lambda: scene.service.confirm_enrollment(scene.manager, scene.manager_phone.code()),
        ts.ChallengeExpired,
        reason="expired",
    )


def test_r73_resetting_an_unknown_user_is_audited_and_changes_nothing(scene: Scene) -> None:
    refused_and_audited(
        scene.store,
        lambda: scene.service.reset_two_factor(scene.owner, "nobody"),
        ts.UnknownUser,
        reason="unknown_user",
    )


def test_r61_confirming_without_an_enrolment_is_audited_and_changes_nothing(scene: Scene) -> None:
    refused_and_audited(
        scene.store,
        lambda: scene.service.confirm_enrollment(scene.owner, "123456"),
        ts.NotAllowed,
        reason="no_enrollment_in_progress",
    )


# -- sessions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    [
        "check_session",
        "two_factor_status",
        "begin_enrollment",
        "overview",
        "audit_trail",
        "set_required",
        "reset_other",
        "disable",
        "reset_self",
        "regenerate",
        "confirm",
    ],
)
def test_r61_a_bad_session_changes_nothing(scene: Scene, operation: str) -> None:
    for case in BAD_TOKENS:
        (token,) = case.values
        refused_unchanged(scene.store, session_call(scene, operation, token), ts.SessionInvalid)


def session_call(scene: Scene, operation: str, token: object) -> Callable[[], object]:
    svc = scene.service
    calls: dict[str, Callable[[], object]] = {
        "check_session": lambda: svc.check_session(token),  # type: ignore[arg-type]
        "two_factor_status": lambda: svc.two_factor_status(token),  # type: ignore[arg-type]
        "begin_enrollment": lambda: svc.begin_enrollment(token),  # type: ignore[arg-type]
        "overview": lambda: svc.two_factor_overview(token),  # type: ignore[arg-type]
        "audit_trail": lambda: svc.audit_trail(token),  # type: ignore[arg-type]
        "set_required": lambda: svc.set_two_factor_required(token, True),  # type: ignore[arg-type]
        "reset_other": lambda: svc.reset_two_factor(token, scene.world.member.id),  # type: ignore[arg-type]
        "disable": lambda: svc.disable_two_factor(token, "123456"),  # type: ignore[arg-type]
        "reset_self": lambda: svc.begin_reset(token, "123456"),  # type: ignore[arg-type]
        "regenerate": lambda: svc.regenerate_backup_codes(token, "123456"),  # type: ignore[arg-type]
        "confirm": lambda: svc.confirm_enrollment(token, "123456"),  # type: ignore[arg-type]
    }
    return calls[operation]


def test_r61_an_expired_or_logged_out_session_changes_nothing(scene: Scene) -> None:
    scene.service.logout(scene.member)
    refused_unchanged(
        scene.store,
        lambda: scene.service.disable_two_factor(scene.member, "123456"),
        ts.SessionInvalid,
        reason="unknown",
    )
    scene.world.clock.advance(seconds=scene.service.settings.session_ttl.total_seconds())
    refused_unchanged(
        scene.store,
        lambda: scene.service.set_two_factor_required(scene.owner, True),
        ts.SessionInvalid,
        reason="expired",
    )


# -- roles and other arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    "attempt",
    ["require", "reset_owner", "overview", "audit_trail", "manager_requires", "manager_resets"],
)
def test_r61_wrong_roles_are_refused_with_the_rule_and_change_nothing_but_audit(
    scene: Scene, attempt: str
) -> None:
    svc, w = scene.service, scene.world
    calls: dict[str, Callable[[], object]] = {
        "require": lambda: svc.set_two_factor_required(scene.member, True),
        "reset_owner": lambda: svc.reset_two_factor(scene.member, w.owner.id),
        "overview": lambda: svc.two_factor_overview(scene.member),
        "audit_trail": lambda: svc.audit_trail(scene.member),
        "manager_requires": lambda: svc.set_two_factor_required(scene.manager, True),
        "manager_resets": lambda: svc.reset_two_factor(scene.manager, w.member.id),
    }
    error = refused_unchanged(scene.store, calls[attempt], ts.NotAllowed, skip=("audit",))
    assert isinstance(error, ts.NotAllowed)
    assert error.reason in {"owner_only", "owner_or_manager_only"}
    assert error.rule.startswith("R")
    denied = svc.audit_trail(scene.owner)[0]
    assert denied.outcome is ts.Outcome.DENIED
    assert denied.reason == error.reason


@pytest.mark.parametrize(
    ("what", "error", "reason"),
    [
        ("required-str", ts.InvalidInput, None),
        ("required-int", ts.InvalidInput, None),
        ("required-None", ts.InvalidInput, None),
        ("reset-None", ts.InvalidInput, None),
        ("reset-int", ts.InvalidInput, None),
        ("reset-10MB", ts.InvalidInput, None),
        ("audit-limit-0", ts.InvalidInput, "invalid_limit"),
        ("audit-limit-bool", ts.InvalidInput, "invalid_limit"),
        ("audit-limit-huge", ts.InvalidInput, "invalid_limit"),
        ("account-None", ts.InvalidInput, None),
        ("account-empty", ts.InvalidInput, None),
        ("account-10MB", ts.InvalidInput, None),
        ("user-unknown-account", ts.UnknownAccount, "unknown_account"),
        ("user-taken-email", ts.EmailTaken, "email_taken"),
        ("user-bad-email", ts.InvalidInput, None),
        ("user-email-None", ts.InvalidInput, None),
        ("user-short-password", ts.InvalidInput, "password_too_short"),
        ("user-password-None", ts.InvalidInput, None),
        ("user-role-admin", ts.InvalidInput, "invalid_role"),
        ("user-role-None", ts.InvalidInput, "invalid_role"),
        ("operator-unknown", ts.UnknownUser, "unknown_user"),
        ("operator-None", ts.InvalidInput, None),
    ],
)
def test_r61_bad_arguments_get_typed_errors_and_change_nothing(
    scene: Scene, what: str, error: type[ts.TwoStepError], reason: str | None
) -> None:
    svc, w = scene.service, scene.world
    acc = w.account.id
    calls: dict[str, Callable[[], object]] = {
        "required-str": lambda: svc.set_two_factor_required(scene.owner, "yes"),  # type: ignore[arg-type]
        "required-int": lambda: svc.set_two_factor_required(scene.owner, 1),  # type: ignore[arg-type]
        "required-None": lambda: svc.set_two_factor_required(scene.owner, None),  # type: ignore[arg-type]
        "reset-None": lambda: svc.reset_two_factor(scene.owner, None),  # type: ignore[arg-type]
        "reset-int": lambda: svc.reset_two_factor(scene.owner, 5),  # type: ignore[arg-type]
        "reset-10MB": lambda: svc.reset_two_factor(scene.owner, "u" * TEN_MB),
        "audit-limit-0": lambda: svc.audit_trail(scene.owner, limit=0),
        "audit-limit-bool": lambda: svc.audit_trail(scene.owner, limit=True),
        "audit-limit-huge": lambda: svc.audit_trail(scene.owner, limit=10**9),
        "account-None": lambda: svc.create_account(None),  # type: ignore[arg-type]
        "account-empty": lambda: svc.create_account("  "),
        "account-10MB": lambda: svc.create_account("a" * TEN_MB),
        "user-unknown-account": lambda: svc.create_user("nope", "x@acme.test", PASSWORD),
        "user-taken-email": lambda: svc.create_user(acc, "MEMBER@acme.test", PASSWORD),
        "user-bad-email": lambda: svc.create_user(acc, "not an email", PASSWORD),
        "user-email-None": lambda: svc.create_user(acc, None, PASSWORD),  # type: ignore[arg-type]
        "user-short-password": lambda: svc.create_user(acc, "x@acme.test", "short"),
        "user-password-None": lambda: svc.create_user(acc, "x@acme.test", None),  # type: ignore[arg-type]
        "user-role-admin": lambda: svc.create_user(acc, "x@acme.test", PASSWORD, "admin"),
        "user-role-None": lambda: svc.create_user(acc, "x@acme.test", PASSWORD, None),  # type: ignore[arg-type]
        "operator-unknown": lambda: svc.operator_reset_two_factor("nobody@acme.test"),
        "operator-None": lambda: svc.operator_reset_two_factor(None),  # type: ignore[arg-type]
    }
    raised = refused_unchanged(scene.store, calls[what], error, reason=reason)
    assert str(raised)
    assert PASSWORD not in str(raised)


@pytest.mark.parametrize(
    "changes",
    [
        {"totp_digits": 5},
        {"totp_digits": 10},
        {"totp_period": 0},
        {"totp_drift": -1},
        {"totp_drift": 11},
        {"secret_bytes": 10},
        {"challenge_max_attempts": 0},
        {"backup_code_count": 0},
    ],
    ids=str,
)
def test_r61_settings_that_would_weaken_or_break_codes_are_refused(
    changes: dict[str, int],
) -> None:
    with pytest.raises(ValueError, match=next(iter(changes))):
        ts.Settings(**changes)  # type: ignore[arg-type]


def test_r61_the_settings_range_edges_are_accepted() -> None:
    for digits in (6, 9):
        assert ts.Settings(totp_digits=digits, totp_drift=0).totp_digits == digits
