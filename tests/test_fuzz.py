"""Hostile input (R61): every public operation called with arbitrary values.

Hypothesis feeds each operation of ``TwoStep`` with None, numbers, bytes, huge strings,
control and format characters, lone surrogates, unicode digits ('١٢٣٤٥٦'), whitespace
and separators inside codes, and real values (tokens, codes, ids, emails) slightly
bent or intact. Only ``TwoStepError`` subclasses may come out, and after a refusal the
store is as it was, except for exactly what the refusal must record:

=========================================  ===============================================
refusal                                    what may change
=========================================  ===============================================
``InvalidInput``, ``InvalidCode``          nothing at all (not even the audit trail): a
(``"malformed"``), ``SessionInvalid``,     bad argument is refused before any lookup
``UnknownAccount``, ``EmailTaken``
``NotAllowed``, ``Throttled``,             the audit trail, appended to (R60): a dead or
``ChallengeExpired``, ``UnknownUser``      unknown login challenge is a failed attempt,
                                           an owner's reset of an unknown user too (R73)
``InvalidCredentials``                     the audit trail, and the failure counts of the
                                           email and client keys, which only grow (R6)
``InvalidCode`` (``"wrong"`` or            the audit trail, the failure counts of the user
``"replayed"``)                            and client keys, which only grow, and the
                                           attempt count of at most one login challenge,
                                           by one (R6)
``EmailTaken`` of an email change          the audit trail; for ``change_email``, what the
(R88, R89)                                 right password and code did before it was told
                                           (the counts settled, the code used up); every
                                           user keeps their email
=========================================  ===============================================

Volume runs on the in-memory store, one test per operation; one pass runs every
operation on SQLite with fewer examples.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sqlite3
import string
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import argon2
import argon2.low_level
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import twostep as ts
import twostep._codes
from twostep._domain import ThrottleState
from twostep.testing import FAST, ManualClock, Phone

from .authenticator import ORIGIN, RP_ID, SoftKey
from .conftest import PASSWORD, store_snapshot

PASSKEYS = ts.PasskeySettings(rp_id=RP_ID, origin=ORIGIN)

#: Parameters of every public operation; a leading ``*`` marks a keyword that may be left out,
#: a leading ``=`` a keyword that must be given.
OPERATIONS: dict[str, tuple[str, ...]] = {
    "create_account": ("name",),
    "create_user": ("account_id", "email", "password", "role"),
    "import_user": ("account_id", "email", "*role", "*password_hash", "*user_id"),
    "begin_second_step": ("user_id", "*client"),
    "login": ("email", "password", "*client", "*device"),
    "complete_login": ("challenge", "code", "*client"),
    "check_session": ("session",),
    "logout": ("session",),
    "change_password": ("session", "current", "new", "*code"),
    "begin_password_reset": ("email", "*client"),
    "complete_password_reset": ("token", "new_password"),
    "change_email": ("session", "new_email", "=password", "*code"),
    "two_factor_status": ("session",),
    "begin_enrollment": ("session",),
    "confirm_enrollment": ("session", "code"),
    "disable_two_factor": ("session", "code"),
    "begin_reset": ("session", "code"),
    "regenerate_backup_codes": ("session", "code"),
    "step_up": ("session", "code"),
    "step_up_with_security_key": ("session", "assertion"),
    "remember_device": ("session", "*valid_for", "*label"),
    "remembered_devices": ("session",),
    "forget_device": ("session", "device_id"),
    "set_two_factor_required": ("session", "required", "*of", "*grace_period"),
    "reset_two_factor": ("session", "user_id"),
    "operator_reset_two_factor": ("email",),
    "two_factor_overview": ("session",),
    "audit_trail": ("session", "*limit"),
    "audit_page": (
        "session",
        "*limit",
        "*cursor",
        "*action",
        "*user_id",
        "*outcome",
        "*since",
        "*until",
    ),
    "set_role": ("session", "user_id", "role"),
    "deactivate_user": ("session", "user_id"),
    "reactivate_user": ("session", "user_id"),
    "delete_user": ("session", "user_id"),
    "set_email": ("session", "user_id", "new_email"),
    "list_users": ("session", "*limit", "*cursor", "*role", "*two_factor", "*active"),
    "purge_expired": (),
    "reseal_secrets": ("*batch", "*progress"),
    "security_key_login_options": ("challenge",),
    "complete_login_with_security_key": ("challenge", "assertion", "*client"),
    "begin_security_key_registration": ("session",),
    "finish_security_key_registration": ("session", "credential", "name"),
    "list_security_keys": ("session",),
    "begin_security_key_check": ("session",),
    "remove_security_key": ("session", "key_id", "*code", "*assertion"),
}

MB = 2**20
HUGE = ["x" * (3 * MB), "1" * MB, "a@" + "b" * MB, "abcde-fghjk" * (MB // 10)]
SPECIAL = [
    "",
    " ",
    "\t",
    "\x00",
    "\r\n",
    "١٢٣٤٥٦",  # Arabic-Indic digits
    "۱۲۳۴۵۶",  # extended Arabic-Indic digits
    "\uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth digits
    "12345٦",
    "123 456",
    "123-456",
    " 123456 ",
    "123\u00a0456",  # no-break space
    "123\u200b456",  # zero-width space
    "123\t456",
    "123456\x00",
    "000000",
    "0000000000",
    "abcde-fghjk",
    "ABCDE FGHJK",
    "abcde--fghjk",
    "abcde_fghjk",
    "oilu0-oilu0",
    "\ud800",  # a lone surrogate
    "x\udcff@acme.test",
    "owner@acme.test\x00",
    "OWNER@ACME.TEST",
    " member@acme.test ",
    "member@acme.test\n",
    "owner",
    "member",
    "manager",
    "Owner",
    "true",
    "None",
    "'; DROP TABLE users; --",
    "%s%n{0}",
    "\u202eevil",
    "\U0001f600" * 10,
]


@dataclass(frozen=True)
class Ref:
    """A real value of the template world, looked up when the example runs."""

    name: str


REFS = [
    "owner_session",
    "owner_token",
    "member_session",
    "member_token",
    "manager_token",
    "token_upper",
    "token_cut",
    "token_spaced",
    "challenge",
    "challenge_token",
    "challenge_upper",
    "otp",
    "otp_next",
    "otp_used",
    "otp_arabic",
    "otp_fullwidth",
    "otp_spaced",
    "otp_dashed",
    "otp_tab",
    "otp_nbsp",
    "pending_otp",
    "owner_otp",
    "backup",
    "backup_plain",
    "backup_upper",
    "backup_spaced",
    "backup_nbsp",
    "owner_backup",
    "backup_used",
    "account_id",
    "other_account_id",
    "owner_id",
    "member_id",
    "manager_id",
    "outsider_id",
    "owner_email",
    "member_email",
    "outsider_email",
    "password",
    "blocked_token",
    "blocked_challenge",
    "blocked_email",
    "blocked_otp",
    "key_id",
    "key_assertion",
    "check_assertion",
    "registration",
]

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.binary(max_size=16),
    st.text(max_size=30),
    st.text(st.characters(categories=["Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Nd"]), max_size=12),
    st.sampled_from(SPECIAL),
    st.sampled_from(HUGE),
    st.sampled_from(REFS).map(Ref),
    st.sampled_from(REFS).map(Ref),
    st.lists(st.integers(), max_size=2),
    st.sampled_from([ts.Role.OWNER, object(), {"token": "x"}]),
)
OMIT = object()


def refs(*names: str) -> st.SearchStrategy[Ref]:
    return st.sampled_from(names).map(Ref)


BACKUP = string.digits + string.ascii_lowercase
URLSAFE = string.ascii_letters + string.digits + "-_"
#: What secrets.token_urlsafe(32) gives: 43 URL-safe characters.
TOKEN_LIKE = st.text(alphabet=URLSAFE, min_size=43, max_size=43)

#: Half of the draws for a parameter are values that fit it, so that deep paths are reached.

FITTING: dict[str, st.SearchStrategy[object]] = {
    "session": st.one_of(
        TOKEN_LIKE,
        refs(
            "owner_session",
            "owner_token",
            "member_session",
            "member_token",
            "manager_token",
            "blocked_token",
            "token_upper",
            "token_cut",
            "token_spaced",
        ),
    ),
    "challenge": st.one_of(
        TOKEN_LIKE,
        refs(
            "challenge", "challenge_token", "challenge_upper", "member_token", "blocked_challenge"
        ),
    ),
    "code": st.one_of(
        refs(*(r for r in REFS if "otp" in r or "backup" in r)),
        st.text(alphabet=string.digits, min_size=6, max_size=6),
        st.builds(
            "{}{}{}".format,
            st.text(alphabet=BACKUP, min_size=5, max_size=5),
            st.sampled_from(["-", "", " "]),
            st.text(alphabet=BACKUP, min_size=5, max_size=5),
        ),
    ),
    "email": st.one_of(
        refs("owner_email", "member_email", "outsider_email", "blocked_email"), st.emails()
    ),
    "password": st.one_of(refs("password"), st.text(min_size=8, max_size=20)),
    "current": st.one_of(refs("password"), st.text(min_size=8, max_size=20)),
    "new": st.text(min_size=8, max_size=20),
    "new_password": st.text(min_size=8, max_size=20),
    "new_email": st.one_of(
        refs("owner_email", "member_email", "outsider_email"),
        st.sampled_from(["Member@ACME.test", "someone.new@acme.test"]),
        st.emails(),
    ),
    "token": TOKEN_LIKE,
    "account_id": refs("account_id", "other_account_id", "member_id"),
    "user_id": refs("owner_id", "member_id", "manager_id", "outsider_id", "account_id"),
    "required": st.booleans(),
    "device": TOKEN_LIKE,
    "device_id": st.one_of(st.text(max_size=20), st.sampled_from(["0123456789abcdef"])),
    "of": st.sampled_from(["everyone", "admins", "all", ts.RequiredOf.ADMINS, None, 1]),
    "grace_period": st.sampled_from(
        [None, timedelta(0), timedelta(days=7), timedelta(days=-1), timedelta(days=1000), 5]
    ),
    "valid_for": st.sampled_from(
        [None, timedelta(0), timedelta(days=7), timedelta(days=-1), timedelta(days=1000), "1d"]
    ),
    "label": st.one_of(st.none(), st.text(max_size=30)),
    "password_hash": st.one_of(
        st.just(None),
        st.sampled_from(
            [
                "pbkdf2_sha256$1000$salt$" + "A" * 43 + "=",
                "pbkdf2_sha256$0$salt$AAAA",
                "$2b$04$" + "a" * 53,
                "bcrypt_sha256$$2b$04$" + "a" * 53,
                "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$" + "A" * 22,
                "md5$salt$0123456789abcdef",
            ]
        ),
        st.text(max_size=80),
    ),
    "role": st.sampled_from(["owner", "manager", "member", "admin", ts.Role.MEMBER]),
    "limit": st.integers(min_value=-5, max_value=20_000),
    "batch": st.integers(min_value=-5, max_value=20_000),
    "progress": st.sampled_from([None, lambda *_: None]),
    "client": st.sampled_from(["203.0.113.5", "::1", "client-1"]),
    "name": st.text(min_size=1, max_size=30),
    "cursor": st.one_of(
        st.integers(min_value=-3, max_value=2**64).map("a1.{}".format),
        st.sampled_from(["a1.", "a1.1", "a1.+5", "a1.٣", "1", "a2.5", " a1.5"]),
        st.sampled_from(["u1.", "u1.0.x", "u1.1.\x00", "u1.-1.x", "u1." + "9" * 20 + ".x"]),
    ),
    "action": st.sampled_from([*ts.AuditAction, "Login", "login_code", "nothing"]),
    "outcome": st.sampled_from([*ts.Outcome, "THROTTLED", "ok"]),
    "two_factor": st.sampled_from([True, False, None, 1, "yes"]),
    "active": st.sampled_from([True, False, None, 0, "no"]),
    "key_id": st.one_of(
        refs("key_id", "owner_id"), st.text(alphabet="0123456789abcdef", max_size=32)
    ),
    "assertion": st.one_of(
        refs("key_assertion", "check_assertion"),
        st.sampled_from(["{}", "[]", "null", '{"id": "AA", "rawId": "AA", "type": "public-key"}']),
        st.builds(
            json.dumps,
            st.dictionaries(
                st.sampled_from(["id", "rawId", "type", "response"]),
                st.one_of(st.text(max_size=20), st.just({"clientDataJSON": "e30"})),
            ),
        ),
    ),
    "credential": st.one_of(refs("registration"), st.sampled_from(["{}", '{"response": {}}'])),
    "since": st.one_of(st.datetimes(timezones=st.just(UTC)), st.datetimes()),
    "until": st.one_of(st.datetimes(timezones=st.just(UTC)), st.datetimes()),
}


# -- the template world, cloned for each example -----------------------------------------------


@dataclass
class Template:
    store: ts.Store
    keyring: ts.AESGCMKeyring
    now: datetime
    refs: dict[str, Any]


def populate(store: ts.Store, keyring: ts.AESGCMKeyring) -> Template:
    """Two accounts, with a user in every state.

    The owner and the member have 2FA, the member a security key too, the manager an
    enrolment pending, the member a login waiting for its code (and an assertion of the
    key for it), a key check and a key registration waiting; a fourth user is throttled
    (email and codes).
    """
    clock = ManualClock()
    service = ts.TwoStep(
        store, issuer="Acme", clock=clock, settings=FAST, cipher=keyring, passkeys=PASSKEYS
    )
    account = service.create_account("Acme")
    other = service.create_account("Other")
    owner = service.create_user(account.id, "owner@acme.test", PASSWORD, ts.Role.OWNER)
    member = service.create_user(account.id, "member@acme.test", PASSWORD, ts.Role.MEMBER)
    manager = service.create_user(account.id, "manager@acme.test", PASSWORD, ts.Role.MANAGER)
    blocked = service.create_user(account.id, "blocked@acme.test", PASSWORD, ts.Role.MEMBER)
    outsider = service.create_user(other.id, "outsider@other.test", PASSWORD, ts.Role.OWNER)

    def session(user: ts.User) -> ts.Session:
        step = service.login(user.email, PASSWORD)
        assert isinstance(step, ts.LoggedIn)
        return step.session

    def enroll(s: ts.Session) -> tuple[Phone, list[str]]:
        phone = Phone(service.begin_enrollment(s).secret, clock)
        return phone, list(service.confirm_enrollment(s, phone.code()))

    owner_session, member_session = session(owner), session(member)
    manager_session = session(manager)
    owner_phone, owner_codes = enroll(owner_session)
    member_phone, member_codes = enroll(member_session)
    key = SoftKey()
    created = key.create(service.begin_security_key_registration(member_session))
    key_info = service.finish_security_key_registration(member_session, created, "Key")
    pending = Phone(service.begin_enrollment(manager_session).secret, clock)
    blocked_session = session(blocked)
    blocked_phone, _ = enroll(blocked_session)
    spent = service.login(member.email, PASSWORD)
    assert isinstance(spent, ts.CodeRequired)
    service.complete_login(spent, member_codes[0])  # a used backup code, for replays
    clock.advance(30)
    challenge = service.login(member.email, PASSWORD)
    assert isinstance(challenge, ts.CodeRequired)
    key_assertion = key.get(service.security_key_login_options(challenge))
    check_assertion = key.get(service.begin_security_key_check(member_session))
    registration = SoftKey().create(service.begin_security_key_registration(member_session))
    blocked_challenge = service.login(blocked.email, PASSWORD)
    assert isinstance(blocked_challenge, ts.CodeRequired)
    window = {blocked_phone.code(offset_steps=o) for o in range(-2, 3)}
    wrong = next(c for c in (f"{n:06d}" for n in range(100)) if c not in window)
    for _ in range(FAST.code_throttle.free_failures + 1):
        with pytest.raises(ts.InvalidCode):
            service.regenerate_backup_codes(blocked_session, wrong)
    for _ in range(FAST.password_throttle.free_failures + 1):
        with pytest.raises(ts.InvalidCredentials):
            service.login(blocked.email, "not the password")
    otp, token = member_phone.code(), member_session.token
    backup = member_codes[1]
    refs: dict[str, Any] = {
        "owner_session": owner_session,
        "owner_token": owner_session.token,
        "member_session": member_session,
        "member_token": token,
        "manager_token": manager_session.token,
        "token_upper": token.upper(),
        "token_cut": token[:-1],
        "token_spaced": f" {token} ",
        "challenge": challenge,
        "challenge_token": challenge.challenge,
        "challenge_upper": challenge.challenge.upper(),
        "otp": otp,
        "otp_next": member_phone.code(offset_steps=1),
        "otp_used": member_phone.code(offset_steps=-1),  # accepted at the enrolment (R4)
        "otp_arabic": otp.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
        "otp_fullwidth": otp.translate({ord("0") + d: 0xFF10 + d for d in range(10)}),
        "otp_spaced": f"{otp[:3]} {otp[3:]}",
        "otp_dashed": f"{otp[:3]}-{otp[3:]}",
        "otp_tab": f"{otp[:3]}\t{otp[3:]}",
        "otp_nbsp": f"{otp[:3]}\u00a0{otp[3:]}",
        "pending_otp": pending.code(),
        "owner_otp": owner_phone.code(),
        "backup": backup,
        "backup_plain": backup.replace("-", ""),
        "backup_upper": backup.upper(),
        "backup_spaced": backup.replace("-", " "),
        "backup_nbsp": backup.replace("-", "\u00a0"),
        "owner_backup": owner_codes[0],
        "backup_used": member_codes[0],
        "account_id": account.id,
        "other_account_id": other.id,
        "owner_id": owner.id,
        "member_id": member.id,
        "manager_id": manager.id,
        "outsider_id": outsider.id,
        "owner_email": owner.email,
        "member_email": member.email,
        "outsider_email": outsider.email,
        "password": PASSWORD,
        "blocked_token": blocked_session.token,
        "blocked_challenge": blocked_challenge.challenge,
        "blocked_email": blocked.email,
        "blocked_otp": blocked_phone.code(),
        "key_id": key_info.id,
        "key_assertion": key_assertion,
        "check_assertion": check_assertion,
        "registration": registration,
    }
    assert set(refs) == set(REFS)
    return Template(store, keyring, clock.now(), refs)


def clone_memory(source: ts.InMemoryStore) -> ts.InMemoryStore:
    copy = ts.InMemoryStore()
    for name in (
        "accounts",
        "users",
        "emails",
        "challenges",
        "sessions",
        "throttles",
        "security_keys",
        "credentials",
    ):
        setattr(copy, name, dict(getattr(source, name)))
    copy.members = {k: set(v) for k, v in source.members.items()}
    copy.audit = list(source.audit)
    return copy


@dataclass
class Templates:
    memory: Template
    sqlite: Template
    workdir: Path


@pytest.fixture(scope="module")
def templates() -> Iterator[Templates]:
    workdir = Path(tempfile.mkdtemp(prefix="twostep-fuzz-"))
    keyring = ts.AESGCMKeyring.generate()
    memory = populate(ts.InMemoryStore(), keyring)
    sqlite_store = ts.SQLiteStore(workdir / "template.db")
    sqlite = populate(sqlite_store, keyring)
    sqlite_store.close()
    yield Templates(memory, sqlite, workdir)
    shutil.rmtree(workdir, ignore_errors=True)


_copies = iter(range(10**9))


def fresh_store(templates: Templates, kind: str) -> ts.Store:
    if kind == "memory":
        source = templates.memory.store
        assert isinstance(source, ts.InMemoryStore)
        return clone_memory(source)
    assert isinstance(templates.sqlite.store, ts.SQLiteStore)
    path = templates.workdir / f"copy{next(_copies)}.db"
    with sqlite3.connect(templates.sqlite.store.path) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return ts.SQLiteStore(path)


def resolve(value: object, refs: dict[str, Any]) -> object:
    return refs[value.name] if isinstance(value, Ref) else value


# -- the check ------------------------------------------------------------------------------------

NOTHING_CHANGES = (
    ts.InvalidInput,
    ts.SessionInvalid,
    ts.UnknownAccount,
    ts.EmailTaken,
)


def may_change(error: ts.TwoStepError, operation: str) -> set[str]:
    """The tables a refusal may touch (see the table at the top of this module)."""
    if isinstance(error, ts.EmailTaken) and operation == "change_email":
        return {"audit", "throttles", "users"}  # told after the password and code (R88)
    if isinstance(error, ts.EmailTaken) and operation == "set_email":
        return {"audit"}
    if isinstance(error, ts.InvalidCode):
        if error.reason == "malformed":
            return set()
        return {"audit", "throttles", "challenges"}
    if isinstance(error, ts.InvalidCredentials):
        return {"audit", "throttles"}
    if isinstance(error, ts.NotAllowed | ts.Throttled | ts.ChallengeExpired | ts.UnknownUser):
        return {"audit"}
    assert isinstance(error, NOTHING_CHANGES), f"no rule for {type(error).__name__}"
    return set()


def rows(table: object) -> dict[object, object]:
    """A table of a snapshot as {key: row}: dicts as they are, SQL rows by first column."""
    if isinstance(table, dict):
        return dict(table)
    assert isinstance(table, list)
    return {row[0]: row for row in table}


def failures_of(row: object) -> int:
    return row.failures if isinstance(row, ThrottleState) else int(row[1])  # type: ignore[index]


def attempts_of(row: object) -> int:
    if hasattr(row, "attempts"):
        return int(row.attempts)
    return int(row[5])  # type: ignore[index]


def emails_of(table: object) -> dict[object, object]:
    return {k: u.email if isinstance(u, ts.User) else u[2] for k, u in rows(table).items()}  # type: ignore[index]


def check_refusal(
    before: dict[str, object], after: dict[str, object], error: Exception, operation: str
) -> None:
    assert isinstance(error, ts.TwoStepError)
    allowed = may_change(error, operation)
    if "users" in allowed:  # a code used up, and nothing else: every email as it was
        assert emails_of(after["users"]) == emails_of(before["users"])
    for table, was in before.items():
        if table not in allowed:
            assert after[table] == was, (type(error).__name__, error.reason, table)
    if "audit" in allowed:  # appended to, never rewritten
        old, new = before["audit"], after["audit"]
        assert isinstance(old, list)
        assert isinstance(new, list)
        if old and isinstance(old[0], ts.AuditEvent):
            assert new[: len(old)] == old
        else:
            assert set(old) <= set(new)
    if "throttles" in allowed and not isinstance(error, ts.EmailTaken):  # counts only grow
        old_t, new_t = rows(before["throttles"]), rows(after["throttles"])
        for key, row in old_t.items():
            assert key in new_t
            assert failures_of(new_t[key]) >= failures_of(row)
    if "challenges" in allowed:  # at most one attempt more, on at most one challenge
        old_c, new_c = rows(before["challenges"]), rows(after["challenges"])
        assert set(old_c) == set(new_c)
        changed = [k for k in old_c if old_c[k] != new_c[k]]
        assert len(changed) <= 1
        for key in changed:
            assert attempts_of(new_c[key]) == attempts_of(old_c[key]) + 1


def call_with(templates: Templates, kind: str, operation: str, values: list[object]) -> None:
    """Run ``operation`` on a fresh copy of the template; check what comes out and what stays."""
    template = templates.memory if kind == "memory" else templates.sqlite
    store = fresh_store(templates, kind)
    try:
        service = ts.TwoStep(
            store,
            issuer="Acme",
            clock=ManualClock(template.now),
            settings=FAST,
            cipher=template.keyring,
            passkeys=PASSKEYS,
        )
        args: list[object] = []
        kwargs: dict[str, object] = {}
        for param, value in zip(OPERATIONS[operation], values, strict=True):
            if param.startswith("*"):
                if value is not OMIT:
                    kwargs[param[1:]] = resolve(value, template.refs)
            elif param.startswith("="):
                kwargs[param[1:]] = resolve(value, template.refs)
            else:
                args.append(resolve(value, template.refs))
        before = store_snapshot(store)
        try:
            getattr(service, operation)(*args, **kwargs)
        except ts.TwoStepError as error:
            check_refusal(before, store_snapshot(store), error, operation)
        # Anything else (TypeError, UnicodeEncodeError, ...) fails the test as it is.
    finally:
        store.close()


def arguments(operation: str) -> st.SearchStrategy[list[object]]:
    def value(param: str) -> st.SearchStrategy[object]:
        name = param.lstrip("*=")
        # Not one_of(fitting, anything): one_of flattens, which would weigh each branch alike.
        fitting = st.sampled_from([FITTING[name], anything]).flatmap(lambda s: s)
        return st.one_of(st.just(OMIT), fitting) if param.startswith("*") else fitting

    return st.tuples(*(value(p) for p in OPERATIONS[operation])).map(list)


FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_every_public_operation_is_fuzzed() -> None:
    public = {
        name
        for name, member in inspect.getmembers(ts.TwoStep, inspect.isfunction)
        if not name.startswith("_")
    }
    assert public == set(OPERATIONS)
    for name, params in OPERATIONS.items():
        signature = inspect.signature(getattr(ts.TwoStep, name))
        assert [p.lstrip("*=") for p in params] == list(signature.parameters)[1:], name


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@FUZZ
@given(data=st.data())
def test_r61_arbitrary_values_get_typed_errors_and_change_nothing_else(
    templates: Templates, operation: str, data: st.DataObject
) -> None:
    call_with(templates, "memory", operation, data.draw(arguments(operation)))


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_r61_arbitrary_values_on_sqlite(templates: Templates, data: st.DataObject) -> None:
    operation = data.draw(st.sampled_from(sorted(OPERATIONS)))
    call_with(templates, "sqlite", operation, data.draw(arguments(operation)))


# -- input caps: a huge input costs no Argon2 ------------------------------------------------


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Argon2 computation, of a password or of a backup code, counted."""
    calls: list[str] = []

    def counted(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        return wrapper

    for method in ("hash", "verify"):
        real = getattr(argon2.PasswordHasher, method)
        monkeypatch.setattr(argon2.PasswordHasher, method, counted(method, real))
    monkeypatch.setattr(
        twostep._codes,
        "hash_secret_raw",
        counted("backup", argon2.low_level.hash_secret_raw),
    )
    return calls


def test_r61_a_password_of_several_mb_costs_no_argon2(
    templates: Templates, argon2_calls: list[str]
) -> None:
    store = fresh_store(templates, "memory")
    refs = templates.memory.refs
    service = ts.TwoStep(
        store,
        issuer="Acme",
        clock=ManualClock(templates.memory.now),
        settings=FAST,
        cipher=templates.memory.keyring,
    )
    argon2_calls.clear()
    with pytest.raises(ts.InvalidCredentials):
        service.login(refs["owner_email"], "a wrong but normal password")
    assert argon2_calls == ["verify"]  # a normal wrong password costs one verification

    argon2_calls.clear()
    huge = "x" * (5 * MB)
    multibyte = "é" * (FAST.max_password_bytes // 2 + 1)  # few characters, too many bytes
    for password in (huge, multibyte):
        with pytest.raises(ts.InvalidInput) as too_long:
            service.login(refs["owner_email"], password)
        assert too_long.value.reason == "password_too_long"
        with pytest.raises(ts.InvalidInput):
            service.create_user(refs["account_id"], "new@acme.test", password)
    for code in (huge, refs["backup"] * 100):
        with pytest.raises(ts.InvalidCode) as malformed:
            service.complete_login(refs["challenge"], code)
        assert malformed.value.reason == "malformed"
        with pytest.raises(ts.InvalidCode):
            service.regenerate_backup_codes(refs["member_token"], code)
    assert argon2_calls == []
    # The limit itself is fine: it is hashed like any password.
    exact = "y" * FAST.max_password_bytes
    service.create_user(refs["account_id"], "new@acme.test", exact)
    assert argon2_calls == ["hash"]
    assert isinstance(service.login("new@acme.test", exact), ts.LoggedIn)


def test_the_template_world_is_what_the_fuzz_assumes(templates: Templates) -> None:
    """The real values are real: a sanity check, so the fuzz does reach deep paths."""
    for kind in ("memory", "sqlite"):
        template = templates.memory if kind == "memory" else templates.sqlite
        refs = template.refs
        store = fresh_store(templates, kind)
        try:
            service = ts.TwoStep(
                store,
                issuer="Acme",
                clock=ManualClock(template.now),
                settings=FAST,
                cipher=template.keyring,
            )
            assert service.check_session(refs["member_token"]).user_id == refs["member_id"]
            done = service.complete_login(refs["challenge_token"], refs["otp_spaced"])
            assert done.session.user_id == refs["member_id"]
            service.confirm_enrollment(refs["manager_token"], refs["pending_otp"])
            overview = service.two_factor_overview(refs["owner_token"])
            assert all(u.two_factor_enabled for u in overview.users)
            codes = service.regenerate_backup_codes(refs["member_token"], refs["backup_upper"])
            assert len(codes) == FAST.backup_code_count
        finally:
            store.close()
        store = fresh_store(templates, kind)
        try:  # the security key's values are real too (R101-R106)
            service = ts.TwoStep(
                store,
                issuer="Acme",
                clock=ManualClock(template.now),
                settings=FAST,
                cipher=template.keyring,
                passkeys=PASSKEYS,
            )
            token = refs["challenge_token"]
            done = service.complete_login_with_security_key(token, refs["key_assertion"])
            assert done.session.user_id == refs["member_id"]
            member = refs["member_token"]
            service.finish_security_key_registration(member, refs["registration"], "Other")
            proof = refs["check_assertion"]
            service.remove_security_key(member, refs["key_id"], assertion=proof)
            assert [k.name for k in service.list_security_keys(member)] == ["Other"]
        finally:
            store.close()
