"""The ``twostep`` commands when the store fails: one line on stderr, exit status 1."""

from __future__ import annotations

from pathlib import Path

import pytest

import twostep as ts

from .cli_helpers import ENV_VARS, run
from .conftest import PASSWORD
from .store_faults import files_cannot_grow

#: Every command that opens the database, with its arguments.
COMMANDS = [
    ("init",),
    ("migrate",),
    ("create-account", "Acme"),
    ("create-user", "no-such-account", "ada@acme.test", "--password-stdin"),
    ("reset-2fa", "ada@acme.test"),
    ("rotate-key", "--reseal"),
    ("purge",),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def _one_line_error(status: int, out: str, err: str) -> str:
    assert status == 1, (status, out, err)
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("twostep: ")
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_file_that_is_not_a_database_is_one_line_and_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the pages of a database\n" * 200)
    monkeypatch.setenv("TWOSTEP_KEYS", ts.AESGCMKeyring.new_key_line())
    if command[0] == "init":
        monkeypatch.delenv("TWOSTEP_KEYS")  # init writes <database>.key, unless it fails
    err = _one_line_error(*run("--database", str(path), *command, stdin=PASSWORD + "\n"))
    assert "not a database" in err
    assert not Path(f"{path}.key").exists()


@pytest.mark.parametrize("command", COMMANDS[1:], ids=lambda c: c[0])
def test_a_full_disk_is_one_line_and_status_1(tmp_path: Path, command: tuple[str, ...]) -> None:
    db = tmp_path / "twostep.db"
    status, _, err = run("--database", str(db), "init")
    assert status == 0, err
    with files_cannot_grow():
        result = run("--database", str(db), *command, stdin=PASSWORD + "\n")
    err = _one_line_error(*result)
    assert "I/O error" in err
