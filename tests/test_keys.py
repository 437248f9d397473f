"""Keys: every bad key source is a typed error naming the source, never the key material."""

from __future__ import annotations

import base64
import io
import secrets
from pathlib import Path

import pytest

import twostep as ts
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
