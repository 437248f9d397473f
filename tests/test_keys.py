"""Keys: every bad key source is a typed error naming the source, never the key material."""

from __future__ import annotations

import base64
import io
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest

import twostep as ts
from twostep._codes import seal_totp_key
from twostep._domain import TwoFactorState
from twostep._setup import load_keyring
from twostep.testing import FAST, ManualClock, Phone

from .cli_helpers import ENV_VARS, run
from .conftest import PASSWORD

KEY = base64.b64encode(secrets.token_bytes(32)).decode()
OTHER = base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def refused(
    call: object, *, names: str, material: tuple[str, ...] = (KEY, OTHER)
) -> ts.ConfigurationError:
    """``call()`` raises ``ConfigurationError`` naming ``names`` and quoting no key material."""
    assert callable(call)
    with pytest.raises(ts.ConfigurationError) as error:
        call()
    message = str(error.value)
    assert names in message, message
    for secret in material:
        for piece in (secret, secret[:8], secret[-12:]):
            assert piece not in message, message
            assert piece not in repr(error.value)
    assert error.value.__cause__ is None or isinstance(error.value.__cause__, ts.TwoStepError)
    return error.value


# -- 1. every bad key source is a ConfigurationError that names it -------------------------


def _file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "twostep.key"
    path.write_bytes(content)
    path.chmod(0o600)
    return path


BAD_FILES = {
    "missing": None,
    "empty": b"",
    "only a comment": b"# made by twostep init\n",
    "truncated in the key": f"k1:{KEY[:20]}\n".encode(),
    "truncated in the padding": f"k1:{KEY[:-2]}\n".encode(),
    "truncated in the id": b"k",
    "not UTF-8": b"k1:" + secrets.token_bytes(31) + b"\xff\xfe\n",
    "latin-1 text": f"k1:{KEY}\n# cl\xe9\n".encode("latin-1"),
    "a non-ASCII character in the key": f"k1:{KEY[:-2]}\u00e9=\n".encode(),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_key_file_is_a_configuration_error_naming_it(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = BAD_FILES[case]
    path = tmp_path / "twostep.key" if content is None else _file(tmp_path, content)
    environ = {"TWOSTEP_KEY_FILE": str(path)}
    error = refused(lambda: ts.AESGCMKeyring.from_environment(environ), names="TWOSTEP_KEY_FILE")
    assert str(path) in str(error)
    # The same file behind the CLI's TWOSTEP_KEY_FILE and its <database>.key fallback.
    monkeypatch.setenv("TWOSTEP_KEY_FILE", str(path))
    refused(lambda: load_keyring(str(tmp_path / "x.db"), io.StringIO()), names=str(path))
    monkeypatch.delenv("TWOSTEP_KEY_FILE")
    database = str(path).removesuffix(".key")
    if content is not None:
        refused(lambda: load_keyring(database, io.StringIO()), names=str(path))


def test_a_key_file_that_is_a_directory_is_a_configuration_error(tmp_path: Path) -> None:
    environ = {"TWOSTEP_KEY_FILE": str(tmp_path)}
    refused(lambda: ts.AESGCMKeyring.from_environment(environ), names=str(tmp_path))


BAD_LISTS = {
    "no colon": KEY,
    "not base64": "k1:not base64!",
    "a non-ASCII character": f"k1:{KEY[:-2]}\u00e9=",
    "too short": f"k1:{base64.b64encode(b'short').decode()}",
    "too long": f"k1:{base64.b64encode(secrets.token_bytes(33)).decode()}",
    "no id": f":{KEY}",
    "an id that is not alphanumeric": f"k-1:{KEY}",
    "only separators": " , ,\n",
    "the second key bad": f"k1:{KEY},k2:{OTHER[:30]}",
}


@pytest.mark.parametrize("case", sorted(BAD_LISTS))
def test_a_malformed_twostep_keys_is_a_configuration_error_naming_it(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"TWOSTEP_KEYS": BAD_LISTS[case]}
    refused(lambda: ts.AESGCMKeyring.from_environment(environ), names="TWOSTEP_KEYS")
    monkeypatch.setenv("TWOSTEP_KEYS", BAD_LISTS[case])
    refused(lambda: load_keyring(str(tmp_path / "x.db"), io.StringIO()), names="TWOSTEP_KEYS")
    refused(lambda: ts.TwoStep(ts.InMemoryStore(), issuer="Acme"), names="TWOSTEP_KEYS")


def test_a_key_written_where_the_id_goes_is_not_echoed() -> None:
    # Key material pasted before the colon must not come back in the message.
    error = refused(lambda: ts.AESGCMKeyring.from_string(f"{KEY}:{OTHER}"), names="key 1")
    assert "id" in str(error)


def test_the_cli_reports_a_bad_key_file_on_one_line(tmp_path: Path) -> None:
    database = tmp_path / "twostep.db"
    assert run("--database", str(database), "init")[0] == 0
    key_file = Path(f"{database}.key")
    key_file.write_bytes(b"k1:" + secrets.token_bytes(40))  # not UTF-8
    status, out, err = run("--database", str(database), "create-account", "Acme")
    assert (status, out) == (1, "")
    assert err.startswith("twostep: ")
    assert str(key_file) in err
    assert err.count("\n") == 1


# -- 2. a key id listed twice is refused -----------------------------------------------------


@pytest.mark.parametrize(
    "keys",
    [f"k1:{KEY},k1:{OTHER}", f"k1:{KEY}\nk2:{OTHER}\nk1:{OTHER}", f"k1:{KEY},k1:{KEY}"],
    ids=["new and old", "three lines", "the same key twice"],
)
def test_a_key_id_listed_twice_is_refused(keys: str, tmp_path: Path) -> None:
    error = refused(lambda: ts.AESGCMKeyring.from_string(keys), names="'k1'")
    assert "twice" in str(error)
    refused(lambda: ts.AESGCMKeyring.from_environment({"TWOSTEP_KEYS": keys}), names="k1")
    path = _file(tmp_path, keys.encode())
    environ = {"TWOSTEP_KEY_FILE": str(path)}
    refused(lambda: ts.AESGCMKeyring.from_environment(environ), names=str(path))


# -- 3. the keys must open the stored secrets -------------------------------------------------


def line(key_id: str, key: str = KEY) -> str:
    return f"{key_id}:{key}"


def keyring(*lines: str) -> ts.AESGCMKeyring:
    return ts.AESGCMKeyring.from_string(",".join(lines))


def service(store: ts.Store, cipher: ts.Cipher, **options: object) -> ts.TwoStep:
    return ts.TwoStep(
        store,
        issuer="Acme",
        clock=ManualClock(),
        settings=FAST,
        cipher=cipher,
        **options,  # type: ignore[arg-type]
    )


def enroll_ada_and_bob(store: ts.Store, cipher: ts.Cipher) -> ts.TwoStep:
    """Ada with 2FA on (a confirmed secret), Bob halfway through (a pending secret)."""
    twostep = service(store, cipher)
    account = twostep.create_account("Acme")
    for email in ("ada@acme.test", "bob@acme.test"):
        twostep.create_user(account.id, email, PASSWORD)
        step = twostep.login(email, PASSWORD)
        assert isinstance(step, ts.LoggedIn)
        enrollment = twostep.begin_enrollment(step.session)
        if email.startswith("ada"):
            phone = Phone(enrollment.secret, twostep._context.clock)  # type: ignore[arg-type]
            twostep.confirm_enrollment(step.session, phone.code())
    return twostep


def test_twostep_starts_when_its_keys_open_every_stored_secret(store: ts.Store) -> None:
    service(store, keyring(line("A")))  # nothing stored yet
    enroll_ada_and_bob(store, keyring(line("A")))
    service(store, keyring(line("A")))
    service(store, keyring(line("B", OTHER), line("A")))  # after a rotation, before resealing


def test_twostep_refuses_keys_that_lack_a_key_id_of_the_stored_secrets(store: ts.Store) -> None:
    enroll_ada_and_bob(store, keyring(line("A")))
    error = refused(lambda: service(store, keyring(line("B", OTHER))), names="'A'")
    assert "2 stored TOTP secret" in str(error)  # Ada's and Bob's pending one
    assert "'B'" not in str(error)
    # A host can still start, e.g. to reset the users the lost key locked out (R41).
    service(store, keyring(line("B", OTHER)), check_keys=False)


def test_twostep_refuses_a_key_whose_id_is_right_but_whose_bytes_are_wrong(
    store: ts.Store,
) -> None:
    enroll_ada_and_bob(store, keyring(line("A")))
    wrong = keyring(line("B", OTHER), line("A", OTHER))  # A's id, another key
    error = refused(lambda: service(store, wrong), names="'A'")
    assert "does not open" in str(error)
    assert "'B'" not in str(error)
    service(store, wrong, check_keys=False)


def test_a_pending_secret_alone_is_checked_too(store: ts.Store) -> None:
    enroll_ada_and_bob(store, keyring(line("A")))
    with store.transaction() as tx:
        for found in tx.users_page("", 10):
            if found.email == "ada@acme.test":
                tx.put_user(found.without_two_factor(end_sessions=True))
    refused(lambda: service(store, keyring(line("B", OTHER))), names="'A'")


def test_the_key_check_leaves_other_ciphers_alone(store: ts.Store) -> None:
    class Plain:
        """A cipher of the host's own (e.g. a KMS): twostep cannot tell its keys."""

        def seal(self, plaintext: bytes, *, context: bytes) -> str:
            return "plain." + plaintext.hex()

        def open(self, sealed: str, *, context: bytes) -> bytes:
            return bytes.fromhex(sealed.removeprefix("plain."))

        def is_current(self, sealed: str) -> bool:
            return True

    enroll_ada_and_bob(store, Plain())
    service(store, Plain())


def test_check_keys_must_be_a_bool(store: ts.Store) -> None:
    with pytest.raises(ts.InvalidInput):
        service(store, keyring(line("A")), check_keys="no")


def test_the_cli_checks_the_keys_before_resealing_but_not_before_a_reset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "twostep.db"
    assert run("--database", str(database), "init")[0] == 0
    old = Path(f"{database}.key").read_text().strip()
    enroll_ada_and_bob(ts.SQLiteStore(database), ts.AESGCMKeyring.from_string(old))
    old_id = old.split(":")[0]
    for keys in (line("B", OTHER), f"{line('B', OTHER)},{line(old_id, OTHER)}"):
        # The old key left out, then the old id with another key.
        monkeypatch.setenv("TWOSTEP_KEYS", keys)
        status, out, err = run("--database", str(database), "rotate-key", "--reseal")
        assert (status, out) == (1, "")
        assert f"'{old_id}'" in err
        assert err.count("\n") == 1
        assert old.split(":")[1][:8] not in err

    # The operator's reset (R42) opens no secret: it works when the key is lost.
    status, out, err = run("--database", str(database), "reset-2fa", "ada@acme.test")
    assert status == 0, err


# -- 4. resealing refuses an old key first, and shows its progress --------------------------

JAN = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
MAR = datetime(2026, 3, 2, 17, 0, 1, tzinfo=UTC)


def made(when: datetime) -> str:
    return ts.AESGCMKeyring.new_key_line(created=when)


def test_a_new_key_line_carries_its_creation_time_in_its_id() -> None:
    key_line = made(MAR)
    key_id = key_line.split(":")[0]
    assert key_id.startswith("k20260302170001")
    assert key_id.isalnum()
    assert ts.AESGCMKeyring.key_created(key_id) == MAR
    assert made(MAR) != key_line  # a random tail: two keys of one second differ
    assert ts.AESGCMKeyring.key_created(ts.AESGCMKeyring.new_key_line().split(":")[0])
    for undated in ("k1", "a1b2c3d4", "k20261302170001abcd", "k2026030217000xabcd", "K" * 19):
        assert ts.AESGCMKeyring.key_created(undated) is None, undated
    ts.AESGCMKeyring.from_string(key_line)  # a valid key line


def resealing(store: ts.Store, keys: str) -> ts.TwoStep:
    return service(store, ts.AESGCMKeyring.from_string(keys))


def key_ids_in(store: ts.Store) -> set[str]:
    with store.transaction(write=False) as tx:
        return set(tx.sealed_key_ids())


def test_reseal_refuses_when_the_new_key_is_listed_after_the_old_one(store: ts.Store) -> None:
    old, new = made(JAN), made(MAR)
    old_id, new_id = old.split(":")[0], new.split(":")[0]
    enroll_ada_and_bob(store, ts.AESGCMKeyring.from_string(old))
    wrong = resealing(store, f"{old},{new}")  # logins still work: every key opens
    with pytest.raises(ts.ConfigurationError) as error:
        wrong.reseal_secrets()
    message = str(error.value)
    assert f"'{old_id}'" in message
    assert f"'{new_id}'" in message
    assert "first" in message
    assert old.split(":")[1][:8] not in message
    assert new.split(":")[1][:8] not in message
    assert key_ids_in(store) == {old_id}  # nothing resealed

    assert resealing(store, f"{new},{old}").reseal_secrets() == 2
    assert key_ids_in(store) == {new_id}


def test_reseal_refuses_an_undated_key_first_when_a_dated_one_follows(store: ts.Store) -> None:
    # A key made before key ids carried their time, then a new one appended.
    old, new = line("a1b2c3d4"), made(MAR)
    enroll_ada_and_bob(store, ts.AESGCMKeyring.from_string(old))
    with pytest.raises(ts.ConfigurationError, match=r"'a1b2c3d4'.*no creation time"):
        resealing(store, f"{old},{new}").reseal_secrets()
    assert key_ids_in(store) == {"a1b2c3d4"}
    assert resealing(store, f"{new},{old}").reseal_secrets() == 2


@pytest.mark.parametrize(
    "order",
    [
        ("new", "old"),  # the rotation done right
        ("newest", "new", "old"),  # two rotations
        ("new", "undated"),  # an undated key after the current one
        ("undatedA", "undatedB"),  # nothing to compare: as before
    ],
)
def test_reseal_accepts_the_newest_key_first(store: ts.Store, order: tuple[str, ...]) -> None:
    lines = {
        "old": made(JAN),
        "new": made(MAR),
        "newest": made(MAR.replace(month=4)),
        "undated": line("old1", OTHER),
        "undatedA": line("A"),
        "undatedB": line("B", OTHER),
    }
    enroll_ada_and_bob(store, ts.AESGCMKeyring.from_string(lines[order[-1]]))
    twostep = resealing(store, ",".join(lines[name] for name in order))
    assert twostep.reseal_secrets() == 2
    assert key_ids_in(store) == {lines[order[0]].split(":")[0]}


def test_reseal_reports_its_progress_after_each_batch(store: ts.Store) -> None:
    old = made(JAN)
    twostep = enroll_ada_and_bob(store, ts.AESGCMKeyring.from_string(old))
    account = twostep.create_account("Beta")
    for n in range(5):  # five more users halfway through an enrolment
        twostep.create_user(account.id, f"u{n}@beta.test", PASSWORD)
        step = twostep.login(f"u{n}@beta.test", PASSWORD)
        assert isinstance(step, ts.LoggedIn)
        twostep.begin_enrollment(step.session)
    twostep.create_user(account.id, "plain@beta.test", PASSWORD)  # nothing to reseal
    keys = ts.AESGCMKeyring.from_string(f"{made(MAR)},{old}")
    seen: list[tuple[int, int]] = []
    count = service(store, keys).reseal_secrets(
        batch=3, progress=lambda done, total: seen.append((done, total))
    )
    assert count == 7
    assert len(seen) == 3  # 8 users in batches of 3
    assert all(total == 7 for _, total in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1] == (7, 7)
    seen.clear()
    assert service(store, keys).reseal_secrets(progress=lambda *a: seen.append(a)) == 0
    assert seen == [(0, 0)]


@pytest.mark.parametrize("progress", ["print", 3, b"", object()])
def test_reseal_progress_must_be_callable(store: ts.Store, progress: object) -> None:
    keys = ts.AESGCMKeyring.from_string(made(MAR))
    with pytest.raises(ts.InvalidInput):
        service(store, keys).reseal_secrets(progress=progress)  # type: ignore[arg-type]


def test_the_cli_refuses_to_reseal_under_an_older_key_and_shows_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "twostep.db"
    assert run("--database", str(database), "init")[0] == 0
    old = made(JAN)
    Path(f"{database}.key").write_text(old + "\n")  # the installation's key, from January
    store = ts.SQLiteStore(database)
    keyring = ts.AESGCMKeyring.from_string(old)
    twostep = service(store, keyring)
    account = twostep.create_account("Acme")
    with store.transaction() as tx:  # 450 enrolled users, written straight to the store
        for n in range(450):
            user_id = f"user{n:04d}"
            sealed = seal_totp_key(keyring, user_id, secrets.token_bytes(20))
            tx.add_user(
                ts.User(
                    id=user_id,
                    account_id=account.id,
                    email=f"u{n}@acme.test",
                    role=ts.Role.MEMBER,
                    password_hash="$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
                    created_at=JAN,
                    two_factor=TwoFactorState(secret=sealed, enabled_at=JAN),
                )
            )
    store.close()
    new = run("rotate-key")[1].strip()  # made now: newer than January's

    monkeypatch.setenv("TWOSTEP_KEYS", f"{old},{new}")  # the new key appended: wrong
    status, out, err = run("--database", str(database), "rotate-key", "--reseal")
    assert (status, out) == (1, "")
    assert "first" in err
    assert err.count("\n") == 1

    monkeypatch.setenv("TWOSTEP_KEYS", f"{new},{old}")
    monkeypatch.setattr("twostep.cli.RESEAL_REPORT_EVERY", 1)  # a line per batch of 200
    status, out, err = run("--database", str(database), "rotate-key", "--reseal")
    assert status == 0, err
    assert out == f"450 secret(s) resealed under key {new.split(':')[0]}\n"
    assert err.splitlines() == ["resealed 200 / 450", "resealed 400 / 450", "resealed 450 / 450"]
