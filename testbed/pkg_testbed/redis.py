"""A real redis-server on a free loopback port, without persistence.

``stop()`` and ``start()`` keep the port, so tests can take Redis away for a
while and bring it back where clients expect it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

from pkg_testbed.procs import ServerProcess, free_port, wait_until
from pkg_testbed.system import redis_server

__all__ = ["RedisServer"]


class RedisServer:
    def __init__(
        self, workdir: Path, port: int | None = None, *, extra_args: Sequence[str] = ()
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        #: More redis-server options (``--replicaof``, ``--tls-port``, ...).
        self.extra_args = list(extra_args)
        self.binary = redis_server()
        self._proc: ServerProcess | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._proc = ServerProcess(
            "redis",
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                *self.extra_args,
            ],
            self.workdir / "redis.log",
        )
        self._proc.start()
        wait_until(
            self._pong, timeout=15, what=f"redis-server on port {self.port}", proc=self._proc
        )

    def _pong(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def kill(self) -> None:
        """SIGKILL, as a crashed server: nothing is flushed, clients see the socket close."""
        if self._proc is not None:
            self._proc.kill()
            self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()
