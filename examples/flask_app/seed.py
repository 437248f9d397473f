"""Seed data: one account with an owner, a manager and a member."""

from __future__ import annotations

import twostep as ts

ACCOUNT = "Acme"
#: (email, password, role): demo credentials, printed on start.
USERS = (
    ("owner@acme.example", "owner-demo-pass", ts.Role.OWNER),
    ("manager@acme.example", "manager-demo-pass", ts.Role.MANAGER),
    ("member@acme.example", "member-demo-pass", ts.Role.MEMBER),
)


def is_seeded(store: ts.Store) -> bool:
    with store.transaction(write=False) as tx:
        return tx.find_user_by_email(USERS[0][0]) is not None


def seed(service: ts.TwoStep) -> dict[ts.Role, ts.User]:
    """Create the account and its three users; returns them by role."""
    account = service.create_account(ACCOUNT)
    return {
        role: service.create_user(account.id, email, password, role)
        for email, password, role in USERS
    }


def describe() -> str:
    lines = [f"Seed users of the account {ACCOUNT!r} (demo passwords):"]
    lines += [f"  {role:<8} {email:<22} {password}" for email, password, role in USERS]
    return "\n".join(lines)
