"""A real PostgreSQL server for the ledger tests, started from the Debian package's binaries.

The server runs in a temporary directory on a Unix socket only (no TCP), with trust
authentication, and is stopped when the session ends. As root (CI containers), it runs as the
``postgres`` user, as initdb requires. Without the binaries the tests that need it are skipped,
saying why; CI's image has them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _binaries() -> tuple[str, str] | None:
    found = [shutil.which(name) for name in ("initdb", "pg_ctl")]
    if all(found):
        return found[0], found[1]  # type: ignore[return-value]
    for version in sorted(Path("/usr/lib/postgresql").glob("*"), reverse=True):
        initdb, pg_ctl = version / "bin" / "initdb", version / "bin" / "pg_ctl"
        if initdb.exists() and pg_ctl.exists():
            return str(initdb), str(pg_ctl)
    return None


class PostgresServer:
    def __init__(self, root: Path) -> None:
        binaries = _binaries()
        if binaries is None:
            pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            pytest.skip("psycopg is not installed (pip install -e '.[postgres]')")
        self.initdb, self.pg_ctl = binaries
        self.root, self.data, self.socket = root, root / "data", root / "socket"
        self.socket.mkdir(parents=True)
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(root, self.user)
            shutil.chown(self.socket, self.user)
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "expunge", "--no-sync")
        options = f"-k {self.socket} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(root / "log"), "-w", "start")

    def _run(self, *args: str) -> None:
        command = (["runuser", "-u", self.user, "--"] if self.user else []) + list(args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr or done.stdout}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://expunge@/{database}?host={self.socket}"

    def new_database(self) -> str:
        """A fresh, empty database: its URL."""
        import psycopg

        name = f"ledger_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=str(self.socket), user="expunge", dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")


def postgres_server() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="expunge-pg-"))
    server = PostgresServer(root)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
