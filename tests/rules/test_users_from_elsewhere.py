"""Users from elsewhere (R90-R94): the rules' tests, through the public API, on every store.

The hashes are made by the libraries that make them in the wild: Django's own hashers
(Django is in the ``test`` extra), ``hashlib``, pyca's ``bcrypt`` and argon2-cffi.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import subprocess
import sys
from collections.abc import Callable

import argon2
import bcrypt
import pytest

import twostep as ts
from twostep.testing import Phone

from ..conftest import ALL_STORES, PASSWORD, World, every_store, store_snapshot
from .helpers import require_2fa, stored_user

OLD = "the password of the old site"


store = pytest.fixture(params=ALL_STORES, name="store")(every_store)  # PostgreSQL too


def django_hasher(name: str) -> Callable[[str], str]:
    """A hash made by Django's own hasher ``name`` (in django.contrib.auth.hashers)."""

    def make(password: str) -> str:
        from django.contrib.auth import hashers  # its hashers need no settings

        hasher = getattr(hashers, name)()
        salt = bcrypt.gensalt(4) if "BCrypt" in name else hasher.salt()
        if name == "PBKDF2PasswordHasher":
            return str(hasher.encode(password, salt, iterations=1000))
        return str(hasher.encode(password, salt))

    return make


def hashlib_pbkdf2(algorithm: str, digest: str) -> Callable[[str], str]:
    def make(password: str) -> str:
        key = hashlib.pbkdf2_hmac(digest, password.encode(), b"NaCl1234", 1200)
        return f"{algorithm}$1200$NaCl1234${base64.b64encode(key).decode()}"

    return make


def bcrypt_hash(prefix: str) -> Callable[[str], str]:
    def make(password: str) -> str:
        made = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
        return prefix + made.removeprefix("$2b$")

    return make


def argon2_hash(kind: argon2.Type, prefix: str = "") -> Callable[[str], str]:
    def make(password: str) -> str:
        hasher = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1, type=kind)
        made = hasher.hash(password)
        return made.removeprefix("$") if prefix else made

    return make


FORMATS: dict[str, Callable[[str], str]] = {
    "django_pbkdf2_sha256": django_hasher("PBKDF2PasswordHasher"),
    "django_bcrypt_sha256": django_hasher("BCryptSHA256PasswordHasher"),
    "django_bcrypt": django_hasher("BCryptPasswordHasher"),
    "hashlib_pbkdf2_sha256": hashlib_pbkdf2("pbkdf2_sha256", "sha256"),
    "hashlib_pbkdf2_sha1": hashlib_pbkdf2("pbkdf2_sha1", "sha1"),
    "bcrypt_2b": bcrypt_hash("$2b$"),
    "bcrypt_2a": bcrypt_hash("$2a$"),
    "bcrypt_2y": bcrypt_hash("$2y$"),
    "argon2id_other_costs": argon2_hash(argon2.Type.ID),
    "argon2i": argon2_hash(argon2.Type.I),
    "django_argon2": lambda p: "argon2" + argon2_hash(argon2.Type.ID)(p),
}


def imported(world: World, make: Callable[[str], str], email: str = "old@acme.test") -> ts.User:
    return world.service.import_user(world.account.id, email, password_hash=make(OLD))


# -- R90: the import -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_r90_r91_r92_a_hash_made_elsewhere_logs_in_and_becomes_argon2id(
    world: World, fmt: str
) -> None:
    user = imported(world, FORMATS[fmt])
    with pytest.raises(ts.InvalidCredentials):
        world.service.login(user.email, OLD + "!")
    assert stored_user(world.service._context.store, user.id).password_hash != ""
    kept = stored_user(world.service._context.store, user.id).password_hash
    assert not kept.startswith("$argon2id$v=19$m=8,t=1,p=1$")  # R92: a wrong one changes nothing

    step = world.service.login(user.email, OLD)
    assert isinstance(step, ts.LoggedIn)  # R2: no 2FA, not required
    upgraded = stored_user(world.service._context.store, user.id).password_hash
    assert upgraded.startswith("$argon2id$")
    assert not world.service._context.passwords.needs_rehash(upgraded)
    assert isinstance(world.service.login(user.email, OLD), ts.LoggedIn)
    with pytest.raises(ts.InvalidCredentials):
        world.service.login(user.email, OLD + "!")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plaintext password",
        "md5$salt$5f4dcc3b5aa765d61d8327deb882cf99",
        "sha1$salt$5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8",
        "pbkdf2_sha256$0$salt$" + base64.b64encode(b"k" * 32).decode(),
        "pbkdf2_sha256$-5$salt$" + base64.b64encode(b"k" * 32).decode(),
        "pbkdf2_sha256$1000$salt$" + base64.b64encode(b"k" * 31).decode(),
        "pbkdf2_sha256$1000$salt$not base64",
        "pbkdf2_sha256$1000$$" + base64.b64encode(b"k" * 32).decode(),
        "pbkdf2_sha256$10000001$salt$" + base64.b64encode(b"k" * 32).decode(),
        "pbkdf2_sha512$1000$salt$" + base64.b64encode(b"k" * 64).decode(),
        "$2b$04$tooshort",
        "$2b$03$" + "a" * 53,
        "$2x$04$" + "a" * 53,
        "bcrypt_sha256$" + "$2b$04$" + "a" * 52,
        "$argon2id$v=19$m=65536,t=3,p=4$garbage",
        "argon2$bcrypt$x",
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$" + "A" * 22 + "\n",
        "x" * 600,
        "é" * 20,
        None,
    ],
)
def test_r90_other_formats_are_refused_and_nothing_is_stored(world: World, bad: str | None) -> None:
    store = world.service._context.store
    before = store_snapshot(store)
    value: object = 12345 if bad is None else bad
    with pytest.raises(ts.InvalidInput) as refused:
        world.service.import_user(world.account.id, "old@acme.test", password_hash=value)  # type: ignore[arg-type]
    assert refused.value.reason == "invalid_password_hash"
    if isinstance(bad, str) and len(bad) > 4:
        assert bad not in str(refused.value)
        assert bad not in repr(refused.value)
    assert store_snapshot(store) == before


def test_r90_the_import_is_audited_without_the_hash(world: World) -> None:
    events: list[ts.AuditEvent] = []
    service = ts.TwoStep(
        world.service._context.store,
        issuer="Acme",
        clock=world.clock,
        settings=world.service.settings,
        cipher=world.service._context.cipher,
        on_event=events.append,
    )
    made = FORMATS["bcrypt_2b"](OLD)
    user = service.import_user(world.account.id, "old@acme.test", password_hash=made)
    bare = service.import_user(world.account.id, "sso@acme.test", role="manager")
    assert [(e.action, e.outcome, e.target_id, e.actor, e.reason) for e in events] == [
        ("user_created", "success", user.id, "operator", "imported_hash"),
        ("user_created", "success", bare.id, "operator", "without_password"),
    ]
    assert bare.role is ts.Role.MANAGER
    assert made not in repr(user)
    assert made[7:29] not in repr(events)  # not the salt either


def test_r90_the_host_may_choose_the_id_once(world: World) -> None:
    user = world.service.import_user(world.account.id, "sso@acme.test", user_id="42")
    assert user.id == "42"
    with pytest.raises(ts.InvalidInput) as taken:
        world.service.import_user(world.account.id, "other@acme.test", user_id="42")
    assert taken.value.reason == "user_id_taken"
    with pytest.raises(ts.EmailTaken):
        world.service.import_user(world.account.id, "SSO@acme.test")
    with pytest.raises(ts.UnknownAccount):
        world.service.import_user("no-such-account", "new@acme.test")


def test_r90_bcrypt_without_the_extra_names_the_extra(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = FORMATS["django_bcrypt_sha256"](OLD)
    user = world.service.import_user(world.account.id, "old@acme.test", password_hash=made)
    monkeypatch.setitem(sys.modules, "bcrypt", None)  # as if it were not installed
    for attempt in (
        lambda: world.service.import_user(world.account.id, "new@acme.test", password_hash=made),
        lambda: world.service.login(user.email, OLD),
    ):
        with pytest.raises(ts.ConfigurationError) as missing:
            attempt()
        assert "twostep[import]" in str(missing.value)
        assert made[15:] not in str(missing.value)


# -- R91: checked by the hash's own library ----------------------------------------------


def test_r91_bcrypt_counts_the_first_72_bytes_as_its_makers_did(world: World) -> None:
    long_password = "p" * 72
    made = "$2b$04$" + bcrypt.hashpw(long_password.encode(), bcrypt.gensalt(4)).decode()[7:]
    user = world.service.import_user(world.account.id, "old@acme.test", password_hash=made)
    # A login of 80 bytes is what an old library that cut at 72 accepted.
    assert isinstance(world.service.login(user.email, long_password + "tail1234"), ts.LoggedIn)


def test_r91_a_wrong_password_counts_like_any_other(world: World) -> None:
    user = imported(world, FORMATS["hashlib_pbkdf2_sha256"])
    free = world.service.settings.password_throttle.free_failures
    for _ in range(free + 1):
        with pytest.raises(ts.InvalidCredentials):
            world.service.login(user.email, "not the password")
    with pytest.raises(ts.Throttled):
        world.service.login(user.email, OLD)


def test_r91_the_code_for_other_hashes_is_loaded_only_when_needed() -> None:
    script = (
        "import sys, twostep\n"
        "from twostep.testing import FAST\n"
        "s = twostep.TwoStep(twostep.InMemoryStore(), issuer='x', settings=FAST,"
        " cipher=twostep.AESGCMKeyring.generate())\n"
        "a = s.create_account('A')\n"
        "s.create_user(a.id, 'a@b.test', 'correct horse battery')\n"
        "s.login('a@b.test', 'correct horse battery')\n"
        "s.import_user(a.id, 'c@b.test')\n"
        "loaded = {'twostep._foreign_hashes', 'bcrypt'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)  # noqa: S603 (our own script)


# -- R93: no twostep password ------------------------------------------------------------


def test_r93_login_refuses_a_user_without_a_twostep_password_like_an_unknown_email(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = world.service.import_user(world.account.id, "sso@acme.test")
    verified: list[str] = []
    real = argon2.PasswordHasher.verify

    def counted(self: argon2.PasswordHasher, hashed: str, password: str) -> bool:
        verified.append(hashed)
        return real(self, hashed, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counted)
    for password in ("!", "", "anything at all", PASSWORD):
        with pytest.raises((ts.InvalidCredentials, ts.InvalidInput)):
            world.service.login(user.email, password)
    with pytest.raises(ts.InvalidCredentials):
        world.service.login("nobody@acme.test", "anything at all")
    dummy = world.service._context.passwords._dummy
    assert verified
    assert set(verified) == {dummy}  # the same dummy Argon2 work, each time


def test_r93_the_second_step_alone_is_only_for_users_without_a_twostep_password(
    world: World,
) -> None:
    for user in (world.member, imported(world, FORMATS["bcrypt_2b"])):
        with pytest.raises(ts.NotAllowed) as refused:
            world.service.begin_second_step(user.id)
        assert (refused.value.reason, refused.value.rule) == ("has_password", "R93")
    with pytest.raises(ts.UnknownUser):
        world.service.begin_second_step("no-such-user")

    user = world.service.import_user(world.account.id, "sso@acme.test")
    store = world.service._context.store
    inactive = dataclasses.replace(stored_user(store, user.id), active=False)
    with store.transaction() as tx:
        tx.put_user(inactive)
    with pytest.raises(ts.InvalidCredentials):
        world.service.begin_second_step(user.id)

    trail = [
        (e.action, e.outcome, e.reason)
        for e in reversed(world.service.audit_trail(world.login(world.owner)))
        if e.action == "second_step_begun"
    ]
    assert trail == [
        ("second_step_begun", "denied", "has_password"),
        ("second_step_begun", "denied", "has_password"),
        ("second_step_begun", "failure", "invalid_credentials"),
    ]


# -- R94: then the login's own second step ------------------------------------------------


def test_r94_without_2fa_and_not_required_a_session_at_once(world: World) -> None:
    user = world.service.import_user(world.account.id, "sso@acme.test")
    step = world.service.begin_second_step(user.id, client="203.0.113.5")
    assert isinstance(step, ts.LoggedIn)
    assert world.service.check_session(step.session).user_id == user.id


def test_r94_an_account_that_requires_2fa_enrols_inside_the_login(world: World) -> None:
    require_2fa(world)
    user = world.service.import_user(world.account.id, "sso@acme.test")
    step = world.service.begin_second_step(user.id)
    assert isinstance(step, ts.EnrollmentRequired)
    with pytest.raises(ts.InvalidCode):
        world.service.complete_login(step, "000000")
    phone = Phone(step.enrollment.secret, world.clock)
    done = world.service.complete_login(step, phone.code())
    assert done.backup_codes is not None
    assert world.service.check_session(done.session).two_factor_enabled

    # Then, as R1: a code every time, each code once (R4).
    world.clock.advance(30)
    step2 = world.service.begin_second_step(user.id)
    assert isinstance(step2, ts.CodeRequired)
    code = phone.code()
    assert world.service.complete_login(step2, code).session.user_id == user.id
    step3 = world.service.begin_second_step(user.id)
    assert isinstance(step3, ts.CodeRequired)
    with pytest.raises(ts.InvalidCode) as replayed:
        world.service.complete_login(step3, code)
    assert replayed.value.reason == "replayed"


def test_r94_no_session_before_the_code_and_throttled_like_a_login(world: World) -> None:
    user = world.service.import_user(world.account.id, "sso@acme.test")
    first = world.service.begin_second_step(user.id)
    assert isinstance(first, ts.LoggedIn)
    world.enroll(first.session)
    step = world.service.begin_second_step(user.id)
    assert isinstance(step, ts.CodeRequired)  # R1: no session before the code
    throttled = False
    for _ in range(50):
        try:
            world.service.complete_login(world.service.begin_second_step(user.id), "000000")
        except ts.InvalidCode:
            continue
        except ts.Throttled:
            throttled = True
            break
    assert throttled
    with pytest.raises(ts.Throttled):
        world.service.begin_second_step(user.id)
    events = world.service.audit_trail(world.login(world.owner), limit=1000)
    assert any(e.action == "second_step_begun" and e.outcome == "throttled" for e in events)
