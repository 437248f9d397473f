"""What the start-up check of the keys costs (``TwoStep(..., check_keys=True)``), on SQLite.

100,000 enrolled users, one in ten also halfway through a new enrolment (a pending
secret), every secret sealed for its own user: creating a ``TwoStep`` with the check,
and without it, with one key and then in the middle of a rotation (two keys, half the
secrets under each). Each figure is the median of fresh stores, so that it includes
what the first read of the users' table costs a new connection.
"""

from __future__ import annotations

import base64
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import KEYRING, Report, cheap, populate_sqlite

from twostep import AESGCMKeyring, TwoStep
from twostep._codes import seal_totp_key
from twostep.stores.sqlite import SQLiteStore

#: After a rotation: a new key first, then the key of _common.KEYRING.
NEW = AESGCMKeyring.from_string(
    f"new:{base64.b64encode(bytes(range(32, 64))).decode()},"
    f"bench:{base64.b64encode(bytes(range(32))).decode()}"
)


def _seal_everyone(path: Path, cipher: AESGCMKeyring, every: int = 1) -> None:
    """Seal a new secret for every ``every``-th user, and a pending one for every tenth."""
    store = SQLiteStore(path, migrate=False)
    db = store._connection()
    ids = [row[0] for row in db.execute("SELECT id FROM users ORDER BY id")][::every]
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "UPDATE users SET totp_secret = ? WHERE id = ?",
        ((seal_totp_key(cipher, i, secrets.token_bytes(20)), i) for i in ids),
    )
    db.executemany(
        "UPDATE users SET pending_secret = ? WHERE id = ?",
        ((seal_totp_key(cipher, i, secrets.token_bytes(20)), i) for i in ids[::10]),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


def _start(path: Path, cipher: AESGCMKeyring, *, check_keys: bool, rounds: int) -> float:
    """The median time to create a ``TwoStep`` on a store just opened."""
    times = []
    for _ in range(rounds):
        store = SQLiteStore(path, migrate=False)
        started = time.perf_counter()
        TwoStep(store, issuer="bench", settings=cheap(), cipher=cipher, check_keys=check_keys)
        times.append(time.perf_counter() - started)
        store.close()
    return statistics.median(times)


def main(quick: bool) -> list[Report]:
    users = 10_000 if quick else 100_000
    rounds = 5 if quick else 11
    with tempfile.TemporaryDirectory(prefix="twostep-bench-") as tmp:
        path = Path(tmp) / "keys.db"
        ts, *_ = populate_sqlite(path, users)
        ts._context.store.close()
        _seal_everyone(path, KEYRING)
        one = _start(path, KEYRING, check_keys=True, rounds=rounds)
        off = _start(path, KEYRING, check_keys=False, rounds=rounds)
        _seal_everyone(path, NEW, every=2)  # half the users resealed: mid-rotation
        two = _start(path, NEW, check_keys=True, rounds=rounds)
    return [
        Report(
            "key_check_at_start",
            f"{one * 1e3:.0f} ms with one key, {two * 1e3:.0f} ms with two "
            f"(mid-rotation), {off * 1e3:.1f} ms without the check; SQLite, "
            f"{users:,} enrolled users",
        )
    ]


if __name__ == "__main__":
    for figure in main("--quick" in sys.argv):
        print(figure.line(), flush=True)
