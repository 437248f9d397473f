"""twostep in one page: a login handler, 2FA on, enforcement, the audit trail.

pyotp stands in for the users' authenticator apps; the rest is what a host writes.
"""

import tempfile
from pathlib import Path

import pyotp

import twostep as ts

PASSWORD = "correct horse battery staple"
apps: dict[str, pyotp.TOTP] = {}  # each user's phone


def log_in(service: ts.TwoStep, email: str, password: str, code: str = "") -> ts.Session:
    """A host's login handler: step 1, then the step 2 that twostep asks for (R1-R3)."""
    match service.login(email, password):
        case ts.LoggedIn(session=session):  # R2: the password is enough
            return session
        case ts.CodeRequired() as step:  # R1: ask for a code from the app, or a backup code
            return service.complete_login(step, code).session
        case ts.EnrollmentRequired() as step:  # R3: the account requires 2FA; set it up now
            # A web page shows step.enrollment.qr_svg() and step.enrollment.secret_groups.
            apps[email] = pyotp.TOTP(step.enrollment.secret)
            done = service.complete_login(step, apps[email].now())
            assert done.backup_codes is not None  # shown once, like at every enrolment
            return done.session
        case _:
            raise AssertionError("unreachable")


with tempfile.TemporaryDirectory() as tmp:
    # SQLite is the embedded default; PostgresStore(dsn) serves several app servers.
    store = ts.SQLiteStore(Path(tmp) / "twostep.db")
    # In production leave cipher= out: keys then come from TWOSTEP_KEYS or
    # TWOSTEP_KEY_FILE (`twostep init` writes a key file).
    service = ts.TwoStep(store, issuer="Acme Analytics", cipher=ts.AESGCMKeyring.generate())

    account = service.create_account("Acme")
    service.create_user(account.id, "ada@acme.example", PASSWORD, ts.Role.OWNER)
    service.create_user(account.id, "cleo@acme.example", PASSWORD, ts.Role.MEMBER)

    # R2: without 2FA, Ada logs in with her password.
    session = log_in(service, "ada@acme.example", PASSWORD)

    # R30, R10: she turns 2FA on: a QR code and the key as text, then one code from the app.
    enrollment = service.begin_enrollment(session)
    print(enrollment.qr_text())  # qr_svg() or qr_png() for a web page
    print("or type the key:", enrollment.secret_groups)
    apps["ada@acme.example"] = pyotp.TOTP(enrollment.secret)
    first_code = apps["ada@acme.example"].now()
    backup_codes = service.confirm_enrollment(session, first_code)
    print(backup_codes.as_text())  # shown once: twostep keeps only hashes

    # R1, R4, R5: now a login has two steps; a used code is refused, a backup code works once.
    step = service.login("ada@acme.example", PASSWORD)
    assert isinstance(step, ts.CodeRequired)
    try:
        service.complete_login(step, first_code)
    except ts.InvalidCode as error:
        print("code refused:", error.reason)  # "replayed"
    session = service.complete_login(step, backup_codes.codes[0]).session
    print("backup codes left:", service.two_factor_status(session).backup_codes_remaining)

    # R20, R21: the owner requires 2FA for everyone; every session ends, hers too.
    service.set_two_factor_required(session, True)
    try:
        service.check_session(session)
    except ts.SessionInvalid as error:
        print("session ended:", error.reason)  # "revoked"

    # R3: Cleo has no 2FA, so she sets it up inside her next login.
    cleo = log_in(service, "cleo@acme.example", PASSWORD)
    try:
        service.set_two_factor_required(cleo, False)  # R22: owners only
    except ts.NotAllowed as error:
        print("not allowed:", error.reason, error.rule)  # owner_only R22

    # R50, R60: owners and managers see who has 2FA on, and what happened.
    session = log_in(service, "ada@acme.example", PASSWORD, code=backup_codes.codes[1])
    for user in service.two_factor_overview(session).users:
        print(f"{user.email:<20} {user.role:<8} 2FA {'on' if user.two_factor_enabled else 'off'}")
    for event in service.audit_trail(session, limit=5):
        print(event.at.isoformat(timespec="seconds"), event.action, event.outcome, event.reason)
    store.close()
