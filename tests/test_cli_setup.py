"""``twostep init`` and ``migrate``, and how the CLI finds the database and the keys."""

from __future__ import annotations

import sqlite3
import stat
import sys
from contextlib import closing
from pathlib import Path

import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock, Phone

from .cli_helpers import ENV_VARS, as_url, create_owner, run
from .conftest import PASSWORD


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "twostep.db"
    status, _, err = run("--database", str(path), "init")
    assert status == 0, err
    return path


# -- init ------------------------------------------------------------------------------------


def test_init_creates_the_schema_and_a_private_key_file(tmp_path: Path) -> None:
    path = tmp_path / "twostep.db"
    status, out, _ = run("--database", str(path), "init")
    assert status == 0
    key_file = Path(f"{path}.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    ts.AESGCMKeyring.from_string(key_file.read_text())  # a valid key line
    assert ts.SQLiteStore(path, migrate=False).schema_version() >= 1
    assert "0600" in out
    assert key_file.read_text().split(":")[1].strip() not in out  # the key is not printed


def test_init_refuses_to_overwrite_a_key_file(db: Path) -> None:
    key_file = Path(f"{db}.key")
    before = key_file.read_text()
    status, _, err = run("--database", str(db), "init")
    assert status == 1
    assert "refusing to overwrite" in err
    assert key_file.read_text() == before


def test_init_writes_the_key_where_twostep_key_file_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "keys" / "twostep.key"
    key_file.parent.mkdir()
    monkeypatch.setenv("TWOSTEP_KEY_FILE", str(key_file))
    monkeypatch.setenv("TWOSTEP_DATABASE", str(tmp_path / "a.db"))
    assert run("init")[0] == 0
    assert key_file.exists()
    assert not Path(f"{tmp_path / 'a.db'}.key").exists()
    assert run("create-account", "Acme")[0] == 0  # and it is found there again


def seal_a_secret(db: Path, *, confirm: bool) -> str:
    """Ada, enrolled (``confirm``) or halfway (a pending secret); returns her secret."""
    create_owner(db)
    clock = ManualClock()
    store = ts.SQLiteStore(db)
    service = ts.TwoStep(
        store,
        issuer="Acme",
        clock=clock,
        settings=FAST,
        cipher=ts.AESGCMKeyring.from_string(Path(f"{db}.key").read_text()),
    )
    step = service.login("ada@acme.test", PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    enrollment = service.begin_enrollment(step.session)
    if confirm:
        service.confirm_enrollment(step.session, Phone(enrollment.secret, clock).code())
    store.close()  # the last connection: the database file holds everything
    return enrollment.secret


def db_state(db: Path) -> tuple[bytes, list[object]]:
    """The database file's bytes, and every user row."""
    data = db.read_bytes()
    with closing(sqlite3.connect(db)) as conn:
        rows: list[object] = conn.execute("SELECT * FROM users ORDER BY id").fetchall()
    return data, rows


@pytest.mark.parametrize("confirm", [True, False], ids=["confirmed", "pending"])
def test_init_refuses_a_new_key_when_the_database_holds_sealed_secrets(
    db: Path, confirm: bool
) -> None:
    secret = seal_a_secret(db, confirm=confirm)
    key_file = Path(f"{db}.key")
    original = key_file.read_text()
    key_file.unlink()  # the key is lost, or the operator forgot it was made
    before = db_state(db)

    status, out, err = run("--database", str(db), "init")

    assert status == 1
    assert "already holds sealed" in err
    assert "original key" in err
    assert err.count("\n") == 1
    assert secret not in err
    assert original.split(":")[1].strip() not in err
    assert out == ""
    assert not key_file.exists()  # no key written
    assert db_state(db) == before  # nothing changed
    key_file.write_text(original)  # with the original key back, all is well
    assert run("--database", str(db), "create-account", "Beta")[0] == 0


def test_init_refuses_a_new_key_file_named_by_twostep_key_file_too(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seal_a_secret(db, confirm=True)
    elsewhere = tmp_path / "new.key"
    monkeypatch.setenv("TWOSTEP_KEY_FILE", str(elsewhere))
    before = db_state(db)
    status, _, err = run("--database", str(db), "init")
    assert status == 1
    assert "already holds sealed" in err
    assert not elsewhere.exists()
    assert db_state(db) == before


def test_init_with_the_original_keys_in_the_environment_still_works(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seal_a_secret(db, confirm=True)
    key_file = Path(f"{db}.key")
    monkeypatch.setenv("TWOSTEP_KEYS", key_file.read_text().strip())
    key_file.unlink()
    status, out, _ = run("--database", str(db), "init")
    assert status == 0
    assert "no key file written" in out
    assert not key_file.exists()


def test_init_writes_a_key_for_users_without_secrets(db: Path) -> None:
    create_owner(db)  # a user, but no TOTP secret sealed under the old key
    key_file = Path(f"{db}.key")
    key_file.unlink()
    status, out, err = run("--database", str(db), "init")
    assert status == 0, err
    assert "written" in out
    assert key_file.exists()
    assert run("--database", str(db), "create-account", "Beta")[0] == 0  # the new key works


@pytest.mark.parametrize("schema", [False, True], ids=["empty-file", "schema-no-users"])
def test_init_on_an_existing_empty_database_writes_a_key(tmp_path: Path, schema: bool) -> None:
    path = tmp_path / "twostep.db"
    if schema:
        ts.SQLiteStore(path).close()
    else:
        sqlite3.connect(path).close()  # an empty file, schema version 0
    status, out, err = run("--database", str(path), "init")
    assert status == 0, err
    assert "written" in out
    assert Path(f"{path}.key").exists()
    assert ts.SQLiteStore(path, migrate=False).schema_version() >= 1


# -- keys ------------------------------------------------------------------------------------


def test_a_missing_key_is_a_clear_error(db: Path) -> None:
    Path(f"{db}.key").unlink()
    status, _, err = run("--database", str(db), "create-account", "Acme")
    assert status == 1
    assert "TWOSTEP_KEYS" in err
    assert "TWOSTEP_KEY_FILE" in err
    assert err.count("\n") == 1


# -- schema ----------------------------------------------------------------------------------


def test_migrate_brings_an_old_database_up_to_date(db: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    sqlite3.connect(old).close()  # schema version 0
    Path(f"{old}.key").write_text(Path(f"{db}.key").read_text())
    status, _, err = run("--database", str(old), "purge")
    assert status == 1
    assert "twostep migrate" in err  # other commands do not migrate behind one's back
    status, out, _ = run("--database", str(old), "migrate")
    assert status == 0
    assert "from version 0 to" in out
    assert run("--database", str(old), "purge")[0] == 0
    assert "already" in run("--database", str(old), "migrate")[1]


def test_a_newer_schema_is_a_clear_error(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 999")
    conn.close()
    for command in ("purge", "migrate"):
        status, _, err = run("--database", str(db), command)
        assert status == 1
        assert "999" in err
        assert "newer" in err


# -- where the database is -------------------------------------------------------------------


def test_no_database_is_a_usage_error() -> None:
    status, _, err = run("purge")
    assert status == 2
    assert "TWOSTEP_DATABASE" in err


def test_a_missing_database_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    status, _, err = run("--database", str(path), "purge")
    assert status == 1
    assert "twostep init" in err
    assert not path.exists()


def test_the_database_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWOSTEP_DATABASE", str(tmp_path / "env.db"))
    assert run("init")[0] == 0
    assert (tmp_path / "env.db").exists()


def test_postgres_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "twostep.stores.postgres", None)  # import fails
    monkeypatch.setenv("TWOSTEP_KEYS", ts.AESGCMKeyring.new_key_line())
    status, _, err = run("--database", "postgresql://localhost/none", "purge")
    assert status == 1
    assert "twostep[postgres]" in err


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_init_refuses_a_new_key_for_a_postgresql_database_with_sealed_secrets(
    tmp_path: Path,
) -> None:
    import psycopg

    from tests import pgserver
    from twostep.stores.postgres import PostgresStore

    dsn, schema = pgserver.new_schema()
    try:
        url = as_url(dsn)
        key_file = tmp_path / "pg.key"
        assert run("--database", url, "init", "--key-file", str(key_file))[0] == 0
        clock = ManualClock()
        store = PostgresStore(dsn, migrate=False)
        service = ts.TwoStep(
            store,
            issuer="Acme",
            clock=clock,
            settings=FAST,
            cipher=ts.AESGCMKeyring.from_string(key_file.read_text()),
        )
        account = service.create_account("Acme")
        service.create_user(account.id, "ada@acme.test", PASSWORD, ts.Role.OWNER)
        step = service.login("ada@acme.test", PASSWORD)
        assert isinstance(step, ts.LoggedIn)
        secret = service.begin_enrollment(step.session).secret  # pending is enough
        store.close()

        def users() -> list[tuple[object, ...]]:
            with psycopg.connect(dsn) as conn:
                return conn.execute("SELECT * FROM users ORDER BY id").fetchall()

        before = users()
        new_key = tmp_path / "new.key"
        status, _, err = run("--database", url, "init", "--key-file", str(new_key))
        assert status == 1
        assert "already holds sealed" in err
        assert secret not in err
        assert not new_key.exists()
        assert users() == before
    finally:
        pgserver.drop_schema(schema)
