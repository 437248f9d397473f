"""The operator's list commands: ``list-accounts`` and ``audit`` (R60), on temp databases."""

from __future__ import annotations

from pathlib import Path

import pytest

import twostep as ts

from .cli_helpers import ENV_VARS, create_owner, run
from .conftest import PASSWORD
from .test_cli_users import cli, service_on, with_member


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


def test_list_accounts_shows_every_account_with_its_requirement(db: Path) -> None:
    status, out, err = cli(db, "list-accounts")
    assert (status, out.split(), err) == (0, ["ID", "2FA", "NAME"], "0 account(s)\n")

    acme, owner_id = create_owner(db)
    service = service_on(db)
    globex = service.create_account("Globex Corporation").id
    owner = service.login("ada@acme.test", PASSWORD)
    assert isinstance(owner, ts.LoggedIn)
    service.set_two_factor_required(owner.session, True)

    status, out, err = cli(db, "list-accounts")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "2FA", "NAME"]
    rows = sorted(line.split(None, 2) for line in lines[1:])
    assert rows == sorted([[acme, "required", "Acme"], [globex, "optional", "Globex Corporation"]])
    assert err == "2 account(s)\n"
    assert owner_id


def test_audit_says_who_did_what_to_whom(db: Path) -> None:
    # R60: the operator reads an account's trail with the users' emails, not only ids.
    account_id, service = with_member(db)
    owner = service.login("ada@acme.test", PASSWORD)
    assert isinstance(owner, ts.LoggedIn)
    (bob,) = (u for u in service.list_users(owner.session).users if u.email == "bob@acme.test")
    service.deactivate_user(owner.session, bob.user_id)

    status, out, err = cli(db, "audit", "--account", account_id)
    assert status == 0, err
    newest = out.splitlines()[0]
    assert newest.endswith("ada@acme.test: user_deactivated of bob@acme.test: success")
    assert "operator: user_created of bob@acme.test: success (imported_hash)" in out
    assert err.startswith(f"{len(out.splitlines())} event(s), newest first")

    # Filters: by user (actor or target), action, outcome; a limit says there is more.
    status, out, _ = cli(db, "audit", "--account", account_id, "--user", "bob@acme.test")
    assert status == 0
    assert out
    assert all("bob@acme.test" in line for line in out.splitlines())
    status, out, _ = cli(db, "audit", "--account", account_id, "--action", "login")
    assert out.splitlines()
    assert all(": login: " in line for line in out.splitlines())
    status, out, _ = cli(db, "audit", "--account", account_id, "--outcome", "denied")
    assert (status, out) == (0, "")
    status, out, err = cli(db, "audit", "--account", account_id, "--limit", "1")
    assert len(out.splitlines()) == 1
    assert "more before them" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--account", "nope"), "no such account"),
        (("--account", "ACCOUNT", "--user", "nobody@acme.test"), "no user has this email"),
        (("--account", "ACCOUNT", "--action", "dance"), "action"),
        (("--account", "ACCOUNT", "--limit", "0"), "limit"),
    ],
)
def test_audit_refuses_bad_filters_in_one_line(db: Path, argv: tuple[str, ...], says: str) -> None:
    account_id, _ = create_owner(db)
    argv = tuple(account_id if a == "ACCOUNT" else a for a in argv)
    status, out, err = cli(db, "audit", *argv)
    assert status == 1
    assert not out
    assert err.startswith("twostep: ")
    assert says in err
    assert err.count("\n") == 1


def test_audit_needs_an_account(db: Path) -> None:
    status, _, err = cli(db, "audit")
    assert status == 2
    assert "--account" in err
