"""Where the example apps keep their data: ``TWOSTEP_DATABASE``, as for the ``twostep`` CLI."""

from __future__ import annotations

import importlib
import io
import stat
from pathlib import Path
from types import ModuleType

import pytest
from examples.flask_app import seed

import twostep as ts
from twostep import cli
from twostep.testing import FAST

APPS = ("examples.flask_app.app", "examples.fastapi_app.app")


@pytest.fixture(params=APPS, ids=["flask", "fastapi"])
def app_module(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = importlib.import_module(request.param)
    return module


def seeded_database(path: Path, key_line: str) -> None:
    """The seed users, hashed cheaply, so that ``make_service`` finds them and adds none."""
    store = ts.SQLiteStore(path)
    cipher = ts.AESGCMKeyring.from_string(key_line)
    seed.seed(ts.TwoStep(store, issuer="Example", settings=FAST, cipher=cipher))
    store.close()


def holds_account(path: Path, account_id: str) -> bool:
    store = ts.SQLiteStore(path, migrate=False)
    with store.transaction(write=False) as tx:
        found = tx.get_account(account_id) is not None
    store.close()
    return found


def test_make_service_uses_the_database_named_by_twostep_database(
    app_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "app"
    here.mkdir()
    monkeypatch.setattr(app_module, "HERE", here)  # where the default files would go
    key_line = ts.AESGCMKeyring.new_key_line()
    monkeypatch.setenv("TWOSTEP_KEYS", key_line)
    monkeypatch.delenv("TWOSTEP_KEY_FILE", raising=False)
    database = tmp_path / "elsewhere.db"
    seeded_database(database, key_line)
    monkeypatch.setenv("TWOSTEP_DATABASE", str(database))

    account = app_module.make_service().create_account("Made by the app")

    assert holds_account(database, account.id)
    assert list(here.iterdir()) == []  # no default database, no key file


def test_make_service_defaults_to_a_database_beside_the_app(
    app_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "HERE", tmp_path)
    for name in ("TWOSTEP_DATABASE", "TWOSTEP_KEYS", "TWOSTEP_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    key_line = ts.AESGCMKeyring.new_key_line()
    (tmp_path / "twostep-example.db.key").write_text(key_line + "\n")  # as `twostep init`
    seeded_database(tmp_path / "twostep-example.db", key_line)

    account = app_module.make_service().create_account("Made by the app")

    assert holds_account(tmp_path / "twostep-example.db", account.id)


def no_key_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TWOSTEP_DATABASE", "TWOSTEP_KEYS", "TWOSTEP_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_make_service_runs_on_what_twostep_init_made(
    app_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `twostep init --database X`, then the example on X: the key is X.key, beside it.
    here = tmp_path / "app"
    here.mkdir()
    monkeypatch.setattr(app_module, "HERE", here)
    no_key_settings(monkeypatch)
    database = tmp_path / "made-by-init.db"
    assert cli.main(["init", "--database", str(database)], out=io.StringIO()) == 0
    monkeypatch.setenv("TWOSTEP_DATABASE", str(database))
    monkeypatch.setattr(app_module.seed, "is_seeded", lambda _store: True)  # seeding is slow

    service = app_module.make_service()
    account = service.create_account("Acme")
    service.create_user(account.id, "ada@acme.example", "a long enough password", "member")
    session = service.login("ada@acme.example", "a long enough password")
    assert isinstance(session, ts.LoggedIn)
    service.begin_enrollment(session.session)  # a secret sealed with the app's key

    assert list(here.iterdir()) == []  # no key file of its own, no database of its own
    key_file = ts.AESGCMKeyring.from_file(f"{database}.key")
    reopened = ts.SQLiteStore(database, migrate=False)
    ts.TwoStep(reopened, issuer="Example", cipher=key_file)  # checks the key opens it
    reopened.close()


def test_a_first_run_makes_the_database_and_its_key_file_as_twostep_init_does(
    app_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "HERE", tmp_path)
    no_key_settings(monkeypatch)
    monkeypatch.setattr(app_module.seed, "is_seeded", lambda _store: True)  # seeding is slow

    app_module.make_service()

    key_file = tmp_path / "twostep-example.db.key"
    assert (tmp_path / "twostep-example.db").is_file()
    assert not (tmp_path / "twostep.key").exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    ts.AESGCMKeyring.from_file(key_file)  # a key line twostep reads


def test_a_database_without_its_key_file_is_refused_and_no_key_is_made(
    app_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new key could not open the secrets sealed under the lost one.
    monkeypatch.setattr(app_module, "HERE", tmp_path)
    no_key_settings(monkeypatch)
    database = tmp_path / "twostep-example.db"
    ts.SQLiteStore(database).close()

    with pytest.raises(ts.ConfigurationError, match=r"twostep-example\.db\.key"):
        app_module.make_service()
    assert list(tmp_path.glob("*.key")) == []


def test_the_flask_example_offers_security_keys_for_localhost_or_twostep_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # R100: the relying party is the origin's host; WebAuthn needs https or localhost.
    from examples.flask_app.app import passkey_settings

    monkeypatch.delenv("TWOSTEP_ORIGIN", raising=False)
    default = passkey_settings()
    assert (default.rp_id, default.origin) == ("localhost", "http://localhost:5000")
    assert passkey_settings(8123).origin == "http://localhost:8123"
    monkeypatch.setenv("TWOSTEP_ORIGIN", "https://auth.example.org/")
    served = passkey_settings()
    assert (served.rp_id, served.origin) == ("auth.example.org", "https://auth.example.org")
