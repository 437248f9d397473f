"""The operator's commands for the users' life (R80-R83) and imports (R90), on temp databases."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import bcrypt
import pytest

import twostep as ts
from twostep.testing import FAST, ManualClock

from .cli_helpers import ENV_VARS, create_owner, run
from .conftest import PASSWORD

OTHER = "another long password"


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


def service_on(db: Path) -> ts.TwoStep:
    """The library on the CLI's database, with cheap Argon2 (FAST)."""
    return ts.TwoStep(
        ts.SQLiteStore(db),
        issuer="Acme",
        clock=ManualClock(),
        settings=FAST,
        cipher=ts.AESGCMKeyring.from_string(Path(f"{db}.key").read_text()),
    )


def cli(db: Path, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    return run("--database", str(db), *argv, stdin=stdin)


def django_pbkdf2(password: str, salt: str = "somesalt", iterations: int = 1000) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def with_member(db: Path) -> tuple[str, ts.TwoStep]:
    """An account with the owner ada and a member bob (imported, cheaply hashed)."""
    account_id, _ = create_owner(db)
    service = service_on(db)
    service.import_user(account_id, "bob@acme.test", password_hash=django_pbkdf2(PASSWORD))
    return account_id, service


def one_line_refusal(status: int, out: str, err: str) -> None:
    assert status == 1
    assert not out
    assert err.startswith("twostep: ")
    assert err.count("\n") == 1


# -- --help ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    ["list-users", "set-role", "deactivate", "reactivate", "delete-user", "import-users"],
)
def test_every_users_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run(command, "--help")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: twostep {command}")
    assert "R8" in out or "R9" in out


# -- list-users (R83) ---------------------------------------------------------------


def test_list_users_prints_a_table_and_filters(db: Path) -> None:
    account_id, service = with_member(db)
    status, out, err = cli(db, "list-users")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["EMAIL", "ROLE", "2FA", "ACTIVE"]
    assert sorted(line.split() for line in lines[1:]) == [  # all accounts: in no set order
        ["ada@acme.test", "owner", "off", "yes"],
        ["bob@acme.test", "member", "off", "yes"],
    ]
    assert "2 user(s)" in err

    status, out, _ = cli(db, "list-users", "--account", account_id, "--role", "member")
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == ["EMAIL", "bob@acme.test"]
    status, out, _ = cli(db, "list-users", "--2fa", "on")
    assert (status, out.splitlines()[1:]) == (0, [])
    status, out, _ = cli(db, "list-users", "--active", "no")
    assert (status, out.splitlines()[1:]) == (0, [])
    service.create_account("Other")
    status, out, _ = cli(db, "list-users", "--account", account_id, "--active", "yes")
    assert len(out.splitlines()) == 3


def test_list_users_of_an_unknown_account_is_refused(db: Path) -> None:
    create_owner(db)
    one_line_refusal(*cli(db, "list-users", "--account", "nope"))


def test_list_users_with_a_bad_filter_is_a_usage_error(db: Path) -> None:
    status, _, err = cli(db, "list-users", "--2fa", "maybe")
    assert status == 2
    assert err.count("\n") == 1


# -- set-role, deactivate, reactivate (R80, R81) --------------------------------------


def test_set_role_changes_the_role_and_is_audited_as_the_operators(db: Path) -> None:
    _, service = with_member(db)
    status, out, err = cli(db, "set-role", "BOB@acme.test", "manager")
    assert status == 0, err
    assert "bob@acme.test" in out
    assert "manager" in out
    step = service.login("ada@acme.test", PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    page = service.list_users(step.session, role="manager")
    assert [u.email for u in page.users] == ["bob@acme.test"]
    event = next(e for e in service.audit_trail(step.session) if e.action == "role_changed")
    assert (event.actor, event.actor_id, event.reason) == ("operator", None, "member_to_manager")


def test_set_role_refuses_to_demote_the_last_owner(db: Path) -> None:
    with_member(db)
    one_line_refusal(*cli(db, "set-role", "ada@acme.test", "member"))
    status, out, _ = cli(db, "list-users", "--role", "owner")
    assert status == 0
    assert "ada@acme.test" in out


def test_set_role_of_an_unknown_email_and_a_bad_role(db: Path) -> None:
    create_owner(db)
    one_line_refusal(*cli(db, "set-role", "nobody@acme.test", "member"))
    status, _, err = cli(db, "set-role", "ada@acme.test", "king")
    assert status == 2
    assert err.count("\n") == 1


def test_deactivate_ends_login_and_reactivate_restores_it(db: Path) -> None:
    _, service = with_member(db)
    status, out, err = cli(db, "deactivate", "bob@acme.test")
    assert status == 0, err
    assert "deactivated" in out
    with pytest.raises(ts.InvalidCredentials):
        service.login("bob@acme.test", PASSWORD)
    status, out, _ = cli(db, "list-users", "--active", "no")
    assert "bob@acme.test" in out

    status, out, err = cli(db, "reactivate", "bob@acme.test")
    assert status == 0, err
    assert "reactivated" in out
    assert isinstance(service.login("bob@acme.test", PASSWORD), ts.LoggedIn)


def test_deactivate_refuses_the_last_owner(db: Path) -> None:
    create_owner(db)
    one_line_refusal(*cli(db, "deactivate", "ada@acme.test"))
    one_line_refusal(*cli(db, "reactivate", "nobody@acme.test"))


# -- delete-user (R82) ---------------------------------------------------------------


def test_delete_user_with_yes_deletes_and_frees_the_email(db: Path) -> None:
    account_id, service = with_member(db)
    status, out, err = cli(db, "delete-user", "bob@acme.test", "--yes")
    assert status == 0, err
    assert "deleted" in out
    status, out, _ = cli(db, "list-users")
    assert "bob@acme.test" not in out
    service.import_user(account_id, "bob@acme.test")  # the email is free again


def test_delete_user_without_yes_and_without_a_terminal_refuses(db: Path) -> None:
    with_member(db)
    status, out, err = cli(db, "delete-user", "bob@acme.test", stdin="y\n")
    assert status == 2
    assert not out
    assert "--yes" in err
    assert err.count("\n") == 1
    status, out, _ = cli(db, "list-users")
    assert "bob@acme.test" in out


def test_delete_user_asks_on_a_terminal(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from twostep.cli import main

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with_member(db)
    out, err = io.StringIO(), io.StringIO()
    argv = ["--database", str(db), "delete-user", "bob@acme.test"]
    assert main(argv, out=out, err=err, stdin=Terminal("n\n")) == 1
    assert "nothing deleted" in err.getvalue()
    assert main(argv, out=out, err=err, stdin=Terminal("y\n")) == 0
    assert "deleted; recorded" in out.getvalue()


def test_delete_user_refuses_the_last_owner(db: Path) -> None:
    create_owner(db)
    one_line_refusal(*cli(db, "delete-user", "ada@acme.test", "--yes"))


# -- import-users (R90) --------------------------------------------------------------


def test_import_of_hundreds_of_users_from_csv_then_they_log_in(db: Path) -> None:
    account_id, _ = create_owner(db)
    pbkdf2, hashed_bcrypt = django_pbkdf2(PASSWORD), bcrypt_hash(OTHER)
    lines = ["email,role,hash"]
    lines += [f"user{i}@acme.test,member,{pbkdf2}" for i in range(300)]
    lines += ["crypt@acme.test,manager," + hashed_bcrypt, "host@acme.test,member,"]
    path = db.parent / "users.csv"
    path.write_text("\n".join(lines) + "\n")

    status, out, err = cli(db, "import-users", str(path), "--account", account_id)
    assert status == 0, err
    assert "302 user(s) imported, 0 line(s) failed" in out

    service = service_on(db)
    for email in ("user0@acme.test", "user299@acme.test"):
        assert isinstance(service.login(email, PASSWORD), ts.LoggedIn)
    assert isinstance(service.login("crypt@acme.test", OTHER), ts.LoggedIn)
    with pytest.raises(ts.InvalidCredentials):  # no twostep password: its host checks step 1
        service.login("host@acme.test", "")
    status, out, _ = cli(db, "list-users", "--account", account_id, "--role", "manager")
    assert "crypt@acme.test" in out


def test_import_from_json_lines_reports_bad_lines_and_goes_on(db: Path) -> None:
    account_id, _ = create_owner(db)
    records = [
        json.dumps({"email": "one@acme.test", "role": "member", "hash": bcrypt_hash(PASSWORD)}),
        "{not json",
        json.dumps({"email": "ada@acme.test", "role": "member"}),  # the email is taken
        json.dumps({"email": "two@acme.test", "role": "boss"}),
        json.dumps({"email": "three@acme.test", "hash": "md5$nope"}),
        json.dumps({"email": "four@acme.test"}),
    ]
    path = db.parent / "users.jsonl"
    path.write_text("\n".join(records) + "\n")

    status, out, err = cli(db, "import-users", str(path), "--account", account_id)
    assert status == 1
    assert "2 user(s) imported, 4 line(s) failed" in out
    bad = err.splitlines()
    assert [line.split(":")[2] for line in bad] == ["2", "3", "4", "5"]
    assert all(line.startswith(f"twostep: {path}:") for line in bad)
    assert isinstance(service_on(db).login("one@acme.test", PASSWORD), ts.LoggedIn)


def test_import_reports_progress_every_thousand_lines(db: Path) -> None:
    account_id, _ = create_owner(db)
    path = db.parent / "users.csv"
    rows = [f"u{i}@acme.test,member," for i in range(1000)]
    path.write_text("email,role,hash\n" + "\n".join(rows) + "\n")
    status, out, err = cli(db, "import-users", str(path), "--account", account_id)
    assert status == 0, err
    assert "1,000 line(s) read, 1,000 imported" in err
    assert "1000 user(s) imported" in out


def test_import_refusals(db: Path) -> None:
    account_id, _ = create_owner(db)
    path = db.parent / "users.csv"
    path.write_text("name,password\nx,y\n")
    status, out, err = cli(db, "import-users", str(path), "--account", account_id)
    assert status == 1
    assert "email,role,hash" in err
    assert "0 user(s) imported, 1 line(s) failed" in out
    path.write_text("email,role,hash\nx@acme.test,member,\n")
    status, out, err = cli(db, "import-users", str(path), "--account", "nope")
    assert (status, out.strip()) == (1, "0 user(s) imported, 1 line(s) failed")
    assert "no such account" in err
    one_line_refusal(*cli(db, "import-users", str(db.parent / "none.csv"), "--account", "a"))
