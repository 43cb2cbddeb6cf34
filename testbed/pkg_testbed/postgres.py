"""A real PostgreSQL server in a temporary data directory on a free loopback port.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres``
system user (Debian's package creates it) or, failing that, a ``pkgtestbed``
user made for the purpose. Durability settings are off: the data dies with the
test run anyway, and fsync on a shared machine only slows tests down.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from pkg_testbed.procs import ServerProcess, TestbedError, free_port, wait_until
from pkg_testbed.system import postgres_bindir

__all__ = ["PostgresServer"]

SUPERUSER = "pkg"


def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pkgtestbed"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "pkgtestbed"],
        check=True,
    )
    return "pkgtestbed"


class PostgresServer:
    """Start with ``start()``, connect with ``dsn()``, end with ``stop()``."""

    def __init__(
        self, workdir: Path, port: int | None = None, *, settings: Mapping[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        #: More server settings, each passed as ``-c name=value`` (``ssl=on``, ...).
        self.settings = dict(settings or {})
        self.datadir = workdir / "pgdata"
        self.sockdir = workdir / "pgsock"
        self.port = port or free_port()
        self.user = _service_user()
        self.bindir = postgres_bindir()
        self._proc: ServerProcess | None = None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def own(self, path: Path) -> None:
        """Hand ``path`` to the user the server runs as (a TLS key must be its own)."""
        self._own(path)

    def _own(self, path: Path) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run_as(self, argv: list[str]) -> None:
        kwargs: dict[str, object] = {}
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            cwd="/",  # type: ignore[call-overload]
            **kwargs,
        )
        if result.returncode != 0:
            raise TestbedError(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        first = not (self.datadir / "PG_VERSION").exists()
        for path in (self.datadir, self.sockdir):
            path.mkdir(mode=0o700, exist_ok=True)
            self._own(path)
        if first:
            self._run_as(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        log = self.workdir / "postgres.log"
        log.touch()
        self._own(log)
        self._proc = ServerProcess(
            "postgres",
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.datadir),
                "-p",
                str(self.port),
                "-k",
                str(self.sockdir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "log_min_messages=warning",
                *[arg for k, v in self.settings.items() for arg in ("-c", f"{k}={v}")],
            ],
            log,
            user=self.user,
        )
        self._proc.start()
        wait_until(
            self._accepts, timeout=30, what=f"PostgreSQL on port {self.port}", proc=self._proc
        )

    def _accepts(self) -> bool:
        pg_isready = self.bindir / "pg_isready"
        if pg_isready.exists():
            return (
                subprocess.run(
                    [str(pg_isready), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER],
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            )
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return True

    def psql(self) -> str:
        """The psql client to use against this server."""
        return (
            str(self.bindir / "psql")
            if (self.bindir / "psql").exists()
            else (shutil.which("psql") or "psql")
        )

    def create_database(self, name: str) -> str:
        """Create an empty database and return its DSN."""
        result = subprocess.run(
            [self.psql(), self.dsn(), "-v", "ON_ERROR_STOP=1", "-qc", f'CREATE DATABASE "{name}"'],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise TestbedError(f"creating database {name!r} failed: {result.stderr}")
        return self.dsn(name)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()
