"""The ``twostep`` command line: the demo and the operator commands (R42), on temp databases."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import twostep as ts
from twostep._domain import ThrottleKey, ThrottleScope
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


def service_on(db: Path, clock: ManualClock, keys: str | None = None) -> ts.TwoStep:
    """The library on the CLI's database, as a host application would open it."""
    text = keys if keys is not None else Path(f"{db}.key").read_text()
    return ts.TwoStep(
        ts.SQLiteStore(db),
        issuer="Acme",
        clock=clock,
        settings=FAST,
        cipher=ts.AESGCMKeyring.from_string(text),
    )


def enroll(service: ts.TwoStep, clock: ManualClock) -> tuple[ts.Session, Phone]:
    step = service.login("ada@acme.test", PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    enrollment = service.begin_enrollment(step.session)
    phone = Phone(enrollment.secret, clock)
    service.confirm_enrollment(step.session, phone.code())
    return step.session, phone


# -- the demo ------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_plays_every_rule_and_ends_with_the_audit_trail() -> None:
    # Real Argon2 costs: a few seconds. It runs as the README tells a newcomer to run it.
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env["PYTHONIOENCODING"] = "utf-8"
    done = subprocess.run(
        [sys.executable, "-m", "twostep", "demo"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for rule in ("R1", "R2", "R3", "R4", "R5", "R6", "R10", "R20", "R21", "R22"):
        assert f"\n{rule} " in out or f" {rule} " in out, rule
    for rule in ("R30", "R31", "R32", "R40", "R41", "R42", "R50", "R60"):
        assert rule in out, rule
    assert out.count("Scan this QR code") == 1
    qr_bottoms = [line for line in out.splitlines() if line and set(line) == {"▀"}]
    assert len(qr_bottoms) == 1  # the QR code is drawn, once
    trail = out[out.index("\nR60") :]
    assert "time" in trail
    assert "actor" in trail
    assert "outcome" in trail
    assert "operator" in trail
    assert "out_of_band" in trail
    assert "Throttled" in out
    assert "throttled" in trail
    assert done.stderr == ""


# -- accounts and users -------------------------------------------------------------------


def test_create_account_and_owner_who_can_then_log_in(db: Path) -> None:
    _, user_id = create_owner(db)
    service = service_on(db, ManualClock())
    step = service.login("ada@acme.test", PASSWORD)
    assert isinstance(step, ts.LoggedIn)
    assert step.session.user_id == user_id
    assert step.session.role is ts.Role.OWNER


def test_create_user_reads_the_password_from_the_environment(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id, _ = create_owner(db)
    monkeypatch.setenv("TWOSTEP_PASSWORD", "another long password")
    status, out, _ = run("--database", str(db), "create-user", account_id, "cleo@acme.test")
    assert status == 0
    service = service_on(db, ManualClock())
    step = service.login("cleo@acme.test", "another long password")
    assert isinstance(step, ts.LoggedIn)
    assert step.session.role is ts.Role.MEMBER
    assert step.session.user_id == out.strip()


def test_create_user_never_takes_a_password_from_argv(db: Path) -> None:
    account_id, _ = create_owner(db)
    status, _, err = run(
        "--database", str(db), "create-user", account_id, "x@acme.test", "--password", "secret123"
    )
    assert status == 2
    assert "secret123" not in err


def test_create_user_without_a_password_source_is_a_usage_error(db: Path) -> None:
    account_id, _ = create_owner(db)
    status, _, err = run("--database", str(db), "create-user", account_id, "x@acme.test")
    assert status == 2
    assert "--password-stdin" in err
    assert err.count("\n") == 1  # one line


def test_a_refused_operation_exits_1_with_one_line(db: Path) -> None:
    account_id, _ = create_owner(db)
    status, _, err = run(
        "--database",
        str(db),
        "create-user",
        account_id,
        "ADA@acme.test",  # emails are unique, case-insensitively
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert status == 1
    assert err.startswith("twostep: ")
    assert err.count("\n") == 1
    assert PASSWORD not in err


# -- R42: the operator's reset ------------------------------------------------------------


def test_r42_operator_resets_a_sole_owner_and_it_is_audited(db: Path) -> None:
    create_owner(db)
    clock = ManualClock()
    service = service_on(db, clock)
    session, _ = enroll(service, clock)

    status, out, _ = run("--database", str(db), "reset-2fa", "ada@acme.test")
    assert status == 0
    assert "ada@acme.test" in out

    with pytest.raises(ts.SessionInvalid):  # her sessions ended
        service.check_session(session)
    step = service.login("ada@acme.test", PASSWORD)
    assert isinstance(step, ts.LoggedIn)  # 2FA is off, the account does not require it
    trail = service.audit_trail(step.session)
    reset = next(e for e in trail if e.action == "two_factor_reset")
    assert (reset.actor, reset.actor_id, reset.reason) == ("operator", None, "out_of_band")
    assert reset.target_id == step.session.user_id


def test_r42_reset_of_an_unknown_email_exits_1(db: Path) -> None:
    status, _, err = run("--database", str(db), "reset-2fa", "nobody@acme.test")
    assert status == 1
    assert "no user" in err


# -- keys ----------------------------------------------------------------------------------


def test_rotate_key_prints_a_new_key_line() -> None:
    status, out, _ = run("rotate-key")
    assert status == 0
    keyring = ts.AESGCMKeyring.from_string(out)
    assert out.strip().startswith(keyring.current_key_id + ":")


def test_rotation_new_key_first_then_reseal_then_drop_the_old_key(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_owner(db)
    old = Path(f"{db}.key").read_text().strip()
    clock = ManualClock()
    _, phone = enroll(service_on(db, clock), clock)

    new = run("rotate-key")[1].strip()
    monkeypatch.setenv("TWOSTEP_KEYS", f"{new},{old}")  # 1. the new key first
    status, out, _ = run("--database", str(db), "rotate-key", "--reseal")  # 2. reseal
    assert status == 0
    assert out.startswith("1 secret(s) resealed under key " + new.split(":")[0])
    assert run("--database", str(db), "rotate-key", "--reseal")[1].startswith("0 secret")

    service = service_on(db, clock, keys=new)  # 3. the old key is gone; logins go on
    step = service.login("ada@acme.test", PASSWORD)
    assert isinstance(step, ts.CodeRequired)
    clock.advance(30)
    assert service.complete_login(step, phone.code()).session.email == "ada@acme.test"


# -- maintenance -----------------------------------------------------------------------------


def test_purge_removes_expired_challenges_sessions_and_forgotten_counters(db: Path) -> None:
    # R6: the counter of an unknown email, last failed long ago, goes too; and R77: the
    # 5 audit events of these steps, older than the default retention by the real clock.
    create_owner(db)
    clock = ManualClock(datetime(2000, 1, 1, tzinfo=UTC))  # long expired by the real clock
    service = service_on(db, clock)
    session, _ = enroll(service, clock)
    service.login("ada@acme.test", PASSWORD)  # a login challenge, left unanswered
    with pytest.raises(ts.InvalidCredentials):
        service.login("nobody@acme.test", PASSWORD)
    status, out, _ = run("--database", str(db), "purge")
    assert status == 0
    assert out == (
        "8 expired login challenge(s), session(s), pending enrolment(s), "
        "forgotten throttle counter(s) and audit event(s) past retention removed\n"
    )
    with pytest.raises(ts.SessionInvalid):
        service.check_session(session)
    store = ts.SQLiteStore(db)
    with store.transaction(write=False) as tx:
        assert tx.get_throttle(ThrottleKey(ThrottleScope.EMAIL, "nobody@acme.test")) is None
    store.close()


# -- usage ---------------------------------------------------------------------------------


def test_global_options_may_follow_the_command(db: Path) -> None:
    status, out, _ = run("migrate", "--database", str(db))
    assert status == 0
    assert "already" in out


def test_no_command_and_unknown_commands_are_usage_errors() -> None:
    assert run()[0] == 2
    status, _, err = run("frobnicate")
    assert status == 2
    assert err.count("\n") == 1


# -- PostgreSQL --------------------------------------------------------------------------


@pytest.mark.postgres
def test_operator_commands_work_on_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests import pgserver

    dsn, schema = pgserver.new_schema()
    try:
        url = as_url(dsn)
        key_file = tmp_path / "pg.key"
        assert run("--database", url, "init")[0] == 2  # where does the key go?
        status, out, err = run("--database", url, "init", "--key-file", str(key_file))
        assert status == 0, err
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert url not in out
        monkeypatch.setenv("TWOSTEP_KEY_FILE", str(key_file))
        monkeypatch.setenv("TWOSTEP_DATABASE", url)
        account_id = run("create-account", "Acme")[1].strip()
        status, _, err = run(
            "create-user",
            account_id,
            "ada@acme.test",
            "--role",
            "owner",
            "--password-stdin",
            stdin=PASSWORD,
        )
        assert status == 0, err
        status, out, _ = run("reset-2fa", "ADA@acme.test")
        assert status == 0
        assert "ada@acme.test" in out
        assert run("migrate")[1].startswith("schema at version")
        assert run("purge")[0] == 0
        assert run("rotate-key", "--reseal")[1].startswith("0 secret")
    finally:
        pgserver.drop_schema(schema)
