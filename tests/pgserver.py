"""A PostgreSQL server for the tests: the one named by the environment, or a throwaway one.

``TWOSTEP_TEST_POSTGRES_DSN`` names a server to use. Without it, the first test that
needs PostgreSQL starts a private cluster (``initdb`` into a temporary directory,
``pg_ctl start`` on a free localhost port) and it is stopped when the test run ends.
Each test gets a schema of its own (through ``search_path`` in its DSN), which is
dropped afterwards. Without PostgreSQL binaries the tests are skipped, unless
``TWOSTEP_REQUIRE_POSTGRES=1`` (as in CI), which makes that a failure.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from twostep.stores.postgres import PostgresStore

DSN_ENV = "TWOSTEP_TEST_POSTGRES_DSN"
REQUIRE_ENV = "TWOSTEP_REQUIRE_POSTGRES"


def _bindir() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Cluster:
    """A throwaway cluster: its data directory, and how to stop it."""

    bindir: Path
    root: Path
    port: int
    runas: list[str]

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=twostep dbname=postgres"

    def _run(self, *args: str) -> None:
        result = subprocess.run(  # noqa: S603 - fixed binaries, our own arguments
            [*self.runas, *args], capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{result.stdout}{result.stderr}{tail}"
            )

    def start(self) -> None:
        data = self.root / "data"
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "twostep",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.resume()

    def resume(self) -> None:
        """Start the server on the cluster's data directory and port (again, after ``halt``)."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.root / "data"),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "start",
        )

    def halt(self) -> None:
        """Stop the server and keep its data: an outage, which ``resume`` ends."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-w", "stop")

    def stop(self) -> None:
        try:
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.root / "data"),
                "-m",
                "immediate",
                "stop",
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> Cluster:
    """A new cluster (initdb, pg_ctl start) in a temporary directory; as ``postgres`` if root."""
    bindir = _bindir()
    if bindir is None:
        raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl)")
    root = Path(tempfile.mkdtemp(prefix="twostep-pg-"))
    runas: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root, and there is no `postgres` user") from None
        os.chown(root, user.pw_uid, user.pw_gid)
        runas = ["runuser", "-u", "postgres", "--"]
    cluster = Cluster(bindir, root, _free_port(), runas)
    try:
        cluster.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


_lock = threading.Lock()
_base: str | None = None


def base_dsn() -> str:
    """The server for this test run (started on first use); skips or fails without one."""
    global _base  # noqa: PLW0603 (one server for the whole run, started on first use)
    with _lock:
        if _base is not None:
            return _base
        if os.environ.get(DSN_ENV):
            _base = os.environ[DSN_ENV]
            return _base
        if _bindir() is None:
            message = f"no PostgreSQL: install it or set {DSN_ENV}"
            if os.environ.get(REQUIRE_ENV) == "1":
                pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
            pytest.skip(message)
        cluster = start_cluster()
        atexit.register(cluster.stop)
        _base = cluster.dsn
        return _base


def with_schema(dsn: str, schema: str) -> str:
    """``dsn`` whose connections use ``schema`` (and only it) for twostep's tables."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, options=f"-c search_path={schema}")


def new_schema() -> tuple[str, str]:
    """A fresh, empty schema on the test server: (its DSN, its name)."""
    import psycopg

    base = base_dsn()
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return with_schema(base, name), name


def drop_schema(name: str) -> None:
    import psycopg

    with psycopg.connect(base_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def make_store(**options: Any) -> PostgresStore:
    """A ``PostgresStore`` on a fresh schema, which is dropped when the store is closed."""
    from twostep.stores.postgres import PostgresStore

    dsn, name = new_schema()

    class _Throwaway(PostgresStore):
        def close(self) -> None:
            super().close()
            drop_schema(name)

    return _Throwaway(dsn, **options)
