"""Secrets at rest and in output, enumeration resistance, constant time, keys and the hook.

docs/security.md describes what these tests hold the library to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import twostep as ts
from twostep._passwords import Passwords
from twostep.testing import FAST, ManualClock, Phone

from .conftest import PASSWORD, World, ask_code

OTHER_PASSWORD = "a second good password"


@dataclass
class Story:
    """A full story on one service, and every secret it handed out on the way."""

    service: ts.TwoStep
    clock: ManualClock
    store: ts.Store
    account: ts.Account
    owner: ts.User
    member: ts.User
    secrets: list[str] = field(default_factory=list)  # texts that must appear nowhere
    raw: list[bytes] = field(default_factory=list)  # raw secret bytes (TOTP keys)
    shown: list[object] = field(default_factory=list)  # every value the API returned
    errors: list[ts.TwoStepError] = field(default_factory=list)

    def keep(self, value: object) -> object:
        self.shown.append(value)
        return value

    def secret_key(self, enrollment: ts.Enrollment) -> Phone:
        self.secrets += [enrollment.secret, enrollment.secret.lower(), enrollment.uri]
        self.secrets.append(enrollment.secret_groups)
        self.raw.append(base64.b32decode(enrollment.secret))
        return Phone(enrollment.secret, self.clock)

    def codes(self, codes: ts.BackupCodes) -> list[str]:
        for code in codes:
            self.secrets += [code, code.replace("-", ""), code.upper(), code.replace("-", " ")]
        return list(codes)

    def refused(self, call: Callable[..., object], *args: object) -> None:
        with pytest.raises(ts.TwoStepError) as caught:
            call(*args)
        self.errors.append(caught.value)


def wrong_code(phone: Phone) -> str:
    """A well-formed OTP that the phone's secret does not accept in the drift window."""
    valid = {phone.code(offset_steps=o) for o in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(100)) if c not in valid)


def full_story(service: ts.TwoStep, clock: ManualClock, store: ts.Store) -> Story:
    """Users log in, enrol, use and regenerate codes, fail, get reset; some flows stay open."""
    account = service.create_account("Acme")
    owner = service.create_user(account.id, "owner@acme.test", PASSWORD, ts.Role.OWNER)
    member = service.create_user(account.id, "member@acme.test", OTHER_PASSWORD)
    s = Story(service, clock, store, account, owner, member)
    s.secrets += [PASSWORD, OTHER_PASSWORD]
    s.shown += [account, owner, member]

    step = s.keep(service.login(owner.email, PASSWORD))
    assert isinstance(step, ts.LoggedIn)
    owner_session = step.session
    s.secrets.append(owner_session.token)
    step = s.keep(service.login(member.email, OTHER_PASSWORD))
    assert isinstance(step, ts.LoggedIn)
    member_session = step.session
    s.secrets.append(member_session.token)

    enrollment = service.begin_enrollment(member_session)
    s.keep(enrollment)
    phone = s.secret_key(enrollment)
    first_code = phone.code()
    codes = s.codes(service.confirm_enrollment(member_session, first_code))
    s.secrets.append(first_code)

    clock.advance(30)
    step = s.keep(service.login(member.email, OTHER_PASSWORD))
    assert isinstance(step, ts.CodeRequired)
    s.secrets.append(step.challenge)
    s.refused(service.complete_login, step, wrong_code(phone))
    done = s.keep(service.complete_login(step, codes[0]))  # a backup code
    assert isinstance(done, ts.LoggedIn)
    s.secrets.append(done.session.token)
    s.refused(service.complete_login, step, codes[1])  # the challenge is used up
    step = s.keep(service.login(member.email, OTHER_PASSWORD))
    assert isinstance(step, ts.CodeRequired)
    s.secrets.append(step.challenge)
    s.refused(service.complete_login, step, codes[0])  # used before (R5)
    clock.advance(30)
    new_codes = s.codes(service.regenerate_backup_codes(member_session, phone.code()))
    s.keep(service.two_factor_status(member_session))

    s.refused(service.login, member.email, "not the password")
    s.refused(service.login, "nobody@acme.test", "not the password")
    s.refused(service.two_factor_overview, member_session)
    s.refused(service.check_session, "not a token")

    service.set_two_factor_required(owner_session, True)
    s.refused(service.check_session, owner_session)
    step = s.keep(service.login(owner.email, PASSWORD))
    assert isinstance(step, ts.EnrollmentRequired)
    s.secrets.append(step.challenge)
    owner_phone = s.secret_key(step.enrollment)
    done = s.keep(service.complete_login(step, owner_phone.code()))
    assert isinstance(done, ts.LoggedIn)
    assert done.backup_codes is not None
    s.codes(done.backup_codes)
    owner_session = done.session
    s.secrets.append(owner_session.token)
    s.keep(service.two_factor_overview(owner_session))

    # The member moves to a new phone but does not confirm yet (a pending secret is stored).
    clock.advance(30)
    step = s.keep(service.login(member.email, OTHER_PASSWORD))
    assert isinstance(step, ts.CodeRequired)
    done = s.keep(service.complete_login(step, phone.code()))
    assert isinstance(done, ts.LoggedIn)
    member_session = done.session
    s.secrets.append(member_session.token)
    reset = service.begin_reset(member_session, new_codes[3])
    s.keep(reset)
    s.secret_key(reset)
    # A login left waiting at its second step (a challenge is stored).
    clock.advance(30)
    step = s.keep(service.login(member.email, OTHER_PASSWORD))
    assert isinstance(step, ts.CodeRequired)
    s.secrets.append(step.challenge)
    s.keep(service.audit_trail(owner_session))
    return s


@pytest.fixture
def story(service: ts.TwoStep, clock: ManualClock, store: ts.Store) -> Story:
    return full_story(service, clock, store)


def stored_user(store: ts.Store, user_id: str) -> ts.User:
    with store.transaction(write=False) as tx:
        user = tx.get_user(user_id)
    assert user is not None
    return user


# -- secrets at rest ------------------------------------------------------------------------


def database_files(path: Path) -> Iterator[Path]:
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            yield candidate


def assert_no_secret_in(blob: bytes, story: Story, where: str) -> None:
    for text in story.secrets:
        for encoded in {text.encode("utf-8"), text.encode("utf-16-le")}:
            assert encoded not in blob, f"a secret is in {where}"
    for raw in story.raw:
        assert raw not in blob, f"a raw TOTP key is in {where}"


def test_the_raw_sqlite_files_hold_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "twostep.db"
    store = ts.SQLiteStore(path)
    clock = ManualClock()
    service = ts.TwoStep(
        store, issuer="Acme", clock=clock, settings=FAST, cipher=ts.AESGCMKeyring.generate()
    )
    story = full_story(service, clock, store)
    assert len(story.secrets) > 50
    # While open, the newest pages are in the write-ahead log: read every file as it is...
    files = list(database_files(path))
    assert Path(f"{path}-wal") in files
    for file in files:
        assert_no_secret_in(file.read_bytes(), story, file.name)
    assert b"member@acme.test" in b"".join(f.read_bytes() for f in files)  # the read works
    # ...and once more after closing, when SQLite has checkpointed the log into the file.
    store.close()
    for file in database_files(path):
        assert_no_secret_in(file.read_bytes(), story, file.name)
    # The tokens are there only as SHA-256 digests, and the TOTP keys only sealed.
    blob = path.read_bytes()
    session_digest = hashlib.sha256(story.secrets[2].encode()).hexdigest()
    assert session_digest.encode() in blob
    assert b"v1." in blob


def test_tokens_are_stored_as_sha256_digests(story: Story) -> None:
    step = story.service.login(story.owner.email, PASSWORD)
    assert isinstance(step, ts.CodeRequired)
    digest = hashlib.sha256(step.challenge.encode()).hexdigest()
    with story.store.transaction(write=False) as tx:
        assert tx.get_challenge(step.challenge) is None
        assert tx.get_challenge(digest) is not None
        session = tx.get_session(hashlib.sha256(story.secrets[2].encode()).hexdigest())
    assert session is not None  # the owner's first session (revoked, but stored)


# -- secrets in output ----------------------------------------------------------------------


def test_no_repr_of_a_result_domain_value_or_error_holds_a_secret(
    story: Story, caplog: pytest.LogCaptureFixture
) -> None:
    stored = [stored_user(story.store, u.id) for u in (story.owner, story.member)]
    sealed = [u.two_factor.secret for u in stored] + [u.two_factor.pending_secret for u in stored]
    hidden = story.secrets + [u.password_hash for u in stored] + [s for s in sealed if s]
    with story.store.transaction(write=False) as tx:
        records: list[object] = [
            tx.get_session(hashlib.sha256(t.encode()).hexdigest()) for t in story.secrets
        ]
        records += [tx.get_challenge(hashlib.sha256(t.encode()).hexdigest()) for t in story.secrets]
        records += tx.audit_events(story.account.id, 10_000)
    values = [*story.shown, *stored, *records, *story.errors, story.service, story.store]
    assert len(story.errors) >= 7
    for value in values:
        for text in (repr(value), str(value)):
            for secret in hidden:
                assert secret not in text, type(value).__name__
    # Nor anything logged on the way.
    for record in caplog.records:
        for secret in hidden:
            assert secret not in record.getMessage()


def test_r60_audit_events_hold_no_secret(story: Story) -> None:
    with story.store.transaction(write=False) as tx:
        events = tx.audit_events(story.account.id, 10_000)
    assert len(events) > 20
    texts = [str(getattr(e, name)) for e in events for name in e.__dataclass_fields__]
    blob = "\n".join(texts)
    for secret in story.secrets:
        assert secret not in blob


# -- enumeration resistance -------------------------------------------------------------------


def test_unknown_email_wrong_password_and_inactive_user_look_the_same(
    world: World, store: ts.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    inactive = replace(stored_user(store, world.manager.id), active=False)
    with store.transaction() as tx:
        tx.put_user(inactive)
    verifications: list[bool] = []
    verify = Passwords.verify

    def counting(self: Passwords, password_hash: str | None, password: str) -> bool:
        verifications.append(password_hash is None)
        return verify(self, password_hash, password)

    monkeypatch.setattr(Passwords, "verify", counting)
    errors: list[ts.TwoStepError] = []
    for email, password in [
        ("nobody@acme.test", PASSWORD),  # unknown email
        (world.member.email, "not the password"),  # wrong password
        (world.manager.email, "not the password"),  # inactive user, wrong password
        (world.manager.email, PASSWORD),  # inactive user, right password
    ]:
        with pytest.raises(ts.TwoStepError) as caught:
            world.service.login(email, password)
        errors.append(caught.value)
    assert {type(e) for e in errors} == {ts.InvalidCredentials}
    assert {(str(e), e.reason, repr(e)) for e in errors} == {
        (str(errors[0]), "invalid_credentials", repr(errors[0]))
    }
    # The same Argon2 work each time: one verification, a dummy one for the unknown email.
    assert verifications == [True, False, False, False]


def test_an_inactive_user_loses_sessions_and_pending_logins(world: World, store: ts.Store) -> None:
    session = world.login(world.member)
    world.enroll(session)
    step = ask_code(world.service, world.member.email)
    inactive = replace(stored_user(store, world.member.id), active=False)
    with store.transaction() as tx:
        tx.put_user(inactive)
    with pytest.raises(ts.SessionInvalid):
        world.service.check_session(session)
    with pytest.raises(ts.ChallengeExpired):
        world.service.complete_login(step, world.fresh_code(world.member.id))


# -- constant time ------------------------------------------------------------------------------


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(len(a))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    return calls


def test_otps_are_compared_in_constant_time_over_the_whole_window(
    world: World, comparisons: list[int]
) -> None:
    session = world.login(world.member)
    world.enroll(session)
    step = ask_code(world.service, world.member.email)
    comparisons.clear()
    world.service.complete_login(step, world.fresh_code(world.member.id))
    # One comparison per code of the drift window, whichever matched, each of the
    # code as a fixed-width number (4 bytes hold 9 digits).
    assert comparisons == [4] * (2 * FAST.totp_drift + 1)


def test_backup_codes_are_compared_in_constant_time_with_every_digest(
    world: World, comparisons: list[int]
) -> None:
    session = world.login(world.member)
    world.enroll(session)
    step = ask_code(world.service, world.member.email)
    comparisons.clear()
    world.service.complete_login(step, world.backup_codes[world.member.id][0])
    assert comparisons == [32] * FAST.backup_code_count  # never stops at the first match


# -- keys and their rotation --------------------------------------------------------------------


def key_line(key_id: str) -> str:
    return ts.AESGCMKeyring.new_key_line(key_id)


def sealed_values(store: ts.Store) -> list[str]:
    with store.transaction(write=False) as tx:
        users = tx.users_page("", 1000)
    values = [u.two_factor.secret for u in users] + [u.two_factor.pending_secret for u in users]
    return [v for v in values if v is not None]


def test_key_rotation_keeps_logins_working_and_reseals_every_secret(
    world: World, store: ts.Store
) -> None:
    a, b = key_line("A"), key_line("B")
    world.service = ts.TwoStep(
        store,
        issuer="Acme",
        clock=world.clock,
        settings=FAST,
        cipher=ts.AESGCMKeyring.from_string(a),
    )
    for user in (world.owner, world.member):
        world.enroll(world.login(user))
    manager = world.login(world.manager)
    pending = world.service.begin_enrollment(manager)  # a pending secret, under A too
    assert [v.split(".")[1] for v in sealed_values(store)] == ["A", "A", "A"]

    def service(keys: str, *, check_keys: bool = True) -> ts.TwoStep:
        cipher = ts.AESGCMKeyring.from_string(keys)
        return ts.TwoStep(
            store,
            issuer="Acme",
            clock=world.clock,
            settings=FAST,
            cipher=cipher,
            check_keys=check_keys,
        )

    # The new key first, the old one still there: logins go on.
    world.service = service(f"{b},{a}")
    world.login(world.member)
    assert world.service.reseal_secrets() == 3
    assert [v.split(".")[1] for v in sealed_values(store)] == ["B", "B", "B"]
    assert world.service.reseal_secrets() == 0

    # Once resealed, the old key can go; the pending enrolment survives the rotation.
    world.service = service(b)
    world.login(world.owner)
    world.service.confirm_enrollment(manager, Phone(pending.secret, world.clock).code())
    # The old key alone opens nothing any more: refused at start-up, else at the first use.
    with pytest.raises(ts.ConfigurationError, match="lack key id 'B'"):
        service(a)
    world.service = service(a, check_keys=False)
    step = ask_code(world.service, world.member.email)
    with pytest.raises(ts.StoreError):
        world.service.complete_login(step, world.fresh_code(world.member.id))


def test_a_sealed_secret_copied_to_another_user_does_not_open(
    world: World, store: ts.Store
) -> None:
    phone = world.enroll(world.login(world.member))
    world.enroll(world.login(world.manager))
    member = stored_user(store, world.member.id)
    manager = stored_user(store, world.manager.id)
    with store.transaction() as tx:
        tx.put_user(replace(manager, two_factor=member.two_factor))
    step = ask_code(world.service, world.manager.email)
    world.clock.advance(30)
    with pytest.raises(ts.StoreError) as failed:
        world.service.complete_login(step, phone.code())
    assert "authentication" in str(failed.value)


def test_a_secret_is_sealed_as_its_raw_key_and_one_sealed_as_base32_text_still_opens(
    world: World, store: ts.Store
) -> None:
    # R1/R4 across the change of what is sealed: a secret sealed as its base32 text
    # (before the raw key was) keeps working.
    phone = world.enroll(world.login(world.member))
    cipher = world.service._context.cipher
    member = stored_user(store, world.member.id)
    assert member.two_factor.secret is not None
    context = f"twostep:totp:{member.id}".encode()
    plain = cipher.open(member.two_factor.secret, context=context)
    assert plain[:1] == b"\0"
    assert len(plain) == 1 + FAST.secret_bytes
    assert base64.b32encode(plain[1:]).decode() == phone._totp.secret

    old_style = cipher.seal(phone._totp.secret.encode(), context=context)
    with store.transaction() as tx:
        tx.put_user(replace(member, two_factor=replace(member.two_factor, secret=old_style)))
    world.clock.advance(30)
    step = ask_code(world.service, world.member.email)
    assert isinstance(world.service.complete_login(step, phone.code()), ts.LoggedIn)


def test_twostep_refuses_to_start_without_a_key(
    store: ts.Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TWOSTEP_KEYS", raising=False)
    monkeypatch.delenv("TWOSTEP_KEY_FILE", raising=False)
    with pytest.raises(ts.ConfigurationError) as missing:
        ts.TwoStep(store, issuer="Acme", settings=FAST)
    assert "TWOSTEP_KEYS" in str(missing.value)

    for bad in ["A", "A:not base64!", f"A:{base64.b64encode(b'short').decode()}", "   "]:
        monkeypatch.setenv("TWOSTEP_KEYS", bad)
        with pytest.raises(ts.ConfigurationError):
            ts.TwoStep(store, issuer="Acme", settings=FAST)

    monkeypatch.setenv("TWOSTEP_KEYS", f"{key_line('new')},{key_line('old')}")
    service = ts.TwoStep(store, issuer="Acme", settings=FAST)
    assert "new" in repr(service._context.cipher)
    monkeypatch.delenv("TWOSTEP_KEYS")
    key_file = tmp_path / "twostep.key"
    key_file.write_text(f"# made by twostep init\n{key_line('file')}\n")
    monkeypatch.setenv("TWOSTEP_KEY_FILE", str(key_file))
    service = ts.TwoStep(store, issuer="Acme", settings=FAST)
    account = service.create_account("Acme")
    user = service.create_user(account.id, "ann@acme.test", PASSWORD)
    step = service.login(user.email, PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    enrollment = service.begin_enrollment(step.session)
    assert stored_user(store, user.id).two_factor.pending_secret is not None
    assert enrollment.secret not in str(stored_user(store, user.id).two_factor.pending_secret)
    assert sealed_values(store)[0].startswith("v1.file.")


# -- the event hook --------------------------------------------------------------------------


def test_the_event_hook_sees_each_event_after_it_is_committed(
    store: ts.Store, clock: ManualClock, keyring: ts.AESGCMKeyring
) -> None:
    seen: list[tuple[ts.AuditEvent, bool]] = []

    def hook(event: ts.AuditEvent) -> None:
        with store.transaction(write=False) as tx:  # not inside the writing transaction
            committed = event.account_id is None or event in tx.audit_events(
                event.account_id, 10_000
            )
        seen.append((event, committed))

    service = ts.TwoStep(
        store, issuer="Acme", clock=clock, settings=FAST, cipher=keyring, on_event=hook
    )
    account = service.create_account("Acme")
    user = service.create_user(account.id, "ann@acme.test", PASSWORD)
    step = service.login(user.email, PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    enrollment = service.begin_enrollment(step.session)
    phone = Phone(enrollment.secret, clock)
    service.confirm_enrollment(step.session, phone.code())
    clock.advance(30)
    with pytest.raises(ts.InvalidCode):
        service.disable_two_factor(step.session, wrong_code(phone))
    service.disable_two_factor(step.session, phone.code())
    actions = [(e.action, e.outcome) for e, _ in seen]
    assert actions == [
        ("account_created", ts.Outcome.SUCCESS),
        ("user_created", ts.Outcome.SUCCESS),
        ("login", ts.Outcome.SUCCESS),
        ("enrollment_started", ts.Outcome.SUCCESS),
        ("two_factor_enabled", ts.Outcome.SUCCESS),
        # failures are published too, once committed
        ("two_factor_disabled", ts.Outcome.FAILURE),
        ("two_factor_disabled", ts.Outcome.SUCCESS),
    ]
    assert all(committed for _, committed in seen)


def test_a_failing_event_hook_does_not_break_the_login(
    store: ts.Store,
    clock: ManualClock,
    keyring: ts.AESGCMKeyring,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def hook(event: ts.AuditEvent) -> None:
        raise RuntimeError("the mail server is down")

    service = ts.TwoStep(
        store, issuer="Acme", clock=clock, settings=FAST, cipher=keyring, on_event=hook
    )
    account = service.create_account("Acme")
    user = service.create_user(account.id, "ann@acme.test", PASSWORD)
    with caplog.at_level(logging.ERROR, logger="twostep"):
        step = service.login(user.email, PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    assert service.check_session(step.session).user_id == user.id
    assert any("hook" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()
        assert step.session.token not in record.getMessage()


# -- the settings reference of docs/security.md -------------------------------------------------

SECURITY_DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"
UNITS = {"second": "seconds", "minute": "minutes", "hour": "hours", "day": "days"}


def documented_default(text: str) -> object:
    """A default as the doc writes it: `6`, `ThrottleSettings()`, 5 minutes, 1 day."""
    text = text.strip()
    if text.startswith("`"):
        return eval(  # noqa: S307 (our own doc, names limited to the settings types)
            text.strip("`"),
            {"__builtins__": {}},
            {"ThrottleSettings": ts.ThrottleSettings, "Argon2Params": ts.Argon2Params},
        )
    count, unit = text.split()
    return timedelta(**{UNITS[unit.rstrip("s")]: int(count)})


@pytest.mark.parametrize("kind", [ts.Settings, ts.ThrottleSettings])
def test_every_setting_is_documented_with_its_default(kind: type[Any]) -> None:
    doc = SECURITY_DOC.read_text(encoding="utf-8")
    defaults = kind()
    for name in kind.__dataclass_fields__:
        match = re.search(rf"^\| `{name}` \| ([^|]+) \|", doc, re.MULTILINE)
        assert match is not None, f"docs/security.md does not document {name}"
        assert documented_default(match.group(1)) == getattr(defaults, name), name
