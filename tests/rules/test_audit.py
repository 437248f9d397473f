"""What every action leaves behind (R60, R61), through the public API, on every store."""

from __future__ import annotations

import pytest

import twostep as ts
from twostep.testing import Phone

from ..conftest import PASSWORD, World, ask_code
from .helpers import enrolled_session


def test_r60_every_change_and_failure_is_audited_without_secrets(world: World) -> None:
    secrets_seen: list[str] = [PASSWORD]
    service = world.service

    owner = world.login(world.owner)
    member = world.login(world.member)
    secrets_seen += [owner.token, member.token]
    enrollment = service.begin_enrollment(member)
    phone = Phone(enrollment.secret, world.clock)
    first_code = phone.code()
    codes = service.confirm_enrollment(member, first_code)
    world.phones[world.member.id] = phone
    secrets_seen += [enrollment.secret, enrollment.uri, first_code, *codes]
    secrets_seen += [c.replace("-", "") for c in codes]

    step = ask_code(service, world.member.email)
    secrets_seen.append(step.challenge)
    with pytest.raises(ts.InvalidCode):
        service.complete_login(step, "987654")
    otp = world.fresh_code(world.member.id)
    secrets_seen.append(otp)
    service.complete_login(step, otp)
    step = ask_code(service, world.member.email)
    secrets_seen.append(step.challenge)
    service.complete_login(step, codes.codes[0].upper())
    with pytest.raises(ts.InvalidCredentials):
        service.login(world.member.email, "a wrong password")
    with pytest.raises(ts.NotAllowed):
        service.two_factor_overview(member)
    new_codes = service.regenerate_backup_codes(member, world.fresh_code(world.member.id))
    secrets_seen += list(new_codes)
    service.set_two_factor_required(owner, True)
    owner = world.login(world.owner)
    secrets_seen.append(owner.token)
    secrets_seen.append(world.backup_codes[world.owner.id][0])
    service.reset_two_factor(owner, world.member.id)
    service.set_two_factor_required(owner, False)
    # Throttling: five failures are free, the sixth blocks, the next is throttled.
    step = ask_code(service, world.owner.email)
    for _ in range(5):
        with pytest.raises(ts.InvalidCode):
            service.complete_login(step, "876543")
    step = ask_code(service, world.owner.email)
    with pytest.raises(ts.InvalidCode):
        service.complete_login(step, "876543")
    with pytest.raises(ts.Throttled):
        service.complete_login(step, "876543")
    secrets_seen += ["987654", "876543"]  # typed codes, wrong or not, are never recorded
    world.clock.advance(60)
    world.service.disable_two_factor(owner, world.backup_codes[world.owner.id][1])
    secrets_seen.append(world.backup_codes[world.owner.id][1])
    service.logout(member)

    events = service.audit_trail(owner, limit=1000)
    seen = {(e.action, e.outcome, e.reason) for e in events}
    S, F = ts.Outcome.SUCCESS, ts.Outcome.FAILURE  # noqa: N806 (the legend of the table below)
    # A refusal is recorded under the action of the success it was refused.
    for expected in [
        ("account_created", S, None),
        ("user_created", S, None),
        ("login", S, None),
        ("login", F, "invalid_credentials"),
        ("enrollment_started", S, None),
        ("two_factor_enabled", S, None),
        ("login", F, "wrong"),
        ("overview_viewed", ts.Outcome.DENIED, "owner_or_manager_only"),
        ("backup_codes_regenerated", S, None),
        ("two_factor_required", S, "all_sessions_ended"),
        ("two_factor_reset", S, "by_owner"),
        ("two_factor_optional", S, None),
        ("login", ts.Outcome.THROTTLED, "user"),
        ("two_factor_disabled", S, None),
        ("logout", S, None),
    ]:
        assert expected in seen, expected
    assert {e.action for e in events} <= set(ts.AuditAction)
    # One success event per session born, naming the second step that was passed.
    reasons = {e.reason for e in events if (e.action, e.outcome) == ("login", S)}
    assert {"otp", "backup_code", "enrolled"} <= reasons, reasons
    reset = next(e for e in events if e.action == "two_factor_reset")
    assert (reset.actor, reset.actor_id, reset.target_id) == (
        "user",
        world.owner.id,
        world.member.id,
    )
    assert all(e.at.tzinfo is not None for e in events)
    assert [e.at for e in events] == sorted((e.at for e in events), reverse=True)

    texts = [repr(events)] + [str(getattr(e, f)) for e in events for f in e.__dataclass_fields__]
    blob = "\n".join(texts)
    for secret in secrets_seen:
        assert secret not in blob
    # Nor in the reprs of what the API hands out.
    shown = repr([owner, member, enrollment, codes, new_codes, step, service])
    for secret in secrets_seen:
        if secret != PASSWORD:
            assert secret not in shown


def test_r61_every_refusal_is_a_typed_error_with_a_reason(world: World) -> None:
    member = enrolled_session(world, world.member)
    refusals: list[ts.TwoStepError] = []

    def refused(call: object, *args: object) -> None:
        assert callable(call)
        with pytest.raises(ts.TwoStepError) as caught:
            call(*args)
        refusals.append(caught.value)

    refused(world.service.login, "nobody@acme.test", PASSWORD)
    step = world.service.login(world.member.email, PASSWORD)
    refused(world.service.complete_login, step, "000000")
    refused(world.service.complete_login, step, "12")
    refused(world.service.complete_login, "no such challenge", "000000")
    refused(world.service.set_two_factor_required, member, True)
    refused(world.service.check_session, "no such session")
    refused(world.service.begin_enrollment, member)

    assert [type(e) for e in refusals] == [
        ts.InvalidCredentials,
        ts.InvalidCode,
        ts.InvalidCode,
        ts.ChallengeExpired,
        ts.NotAllowed,
        ts.SessionInvalid,
        ts.NotAllowed,
    ]
    assert [e.reason for e in refusals] == [
        "invalid_credentials",
        "wrong",
        "malformed",
        "unknown",
        "owner_only",
        "unknown",
        "two_factor_already_on",
    ]
    for error in refusals:
        assert str(error)
        assert error.reason in repr(error)
