"""Redis behind Sentinel on loopback: a master, a replica and one sentinel, for failovers.

The sentinel runs Debian's Redis in sentinel mode (``redis-sentinel``, or the same
binary as ``redis-server --sentinel``), watches the master under the name
``mymaster`` with a quorum of one and a 1 s down-after, so killing the master
promotes the replica within a few seconds. ``kill_master`` does that and
``wait_for_failover`` returns the new master's port once the sentinel names it.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from pkg_testbed.procs import ServerProcess, TestbedError, free_port, wait_until
from pkg_testbed.redis import RedisServer
from pkg_testbed.system import redis_server

__all__ = ["MASTER_NAME", "SentinelSet"]

MASTER_NAME = "mymaster"


def _command(port: int, *args: str) -> bytes:
    """One RESP command to 127.0.0.1:port; the raw reply (enough for these checks)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(payload)
        time.sleep(0.05)
        return sock.recv(65536)


class SentinelSet:
    """Start with ``start()``; ``sentinels`` is the ``PKG_REDIS_SENTINELS`` value."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.master = RedisServer(workdir / "master")
        self.replica = RedisServer(
            workdir / "replica", extra_args=["--replicaof", "127.0.0.1", str(self.master.port)]
        )
        self.sentinel_port = free_port()
        self._sentinel: ServerProcess | None = None

    @property
    def sentinels(self) -> str:
        return f"127.0.0.1:{self.sentinel_port}"

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        wait_until(
            lambda: b"master_link_status:up" in _command(self.replica.port, "INFO", "replication"),
            timeout=30,
            what="the replica to sync with the master",
            proc=self.replica._proc,  # type: ignore[arg-type]
        )
        folder = self.workdir / "sentinel"
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "sentinel.conf"  # the sentinel rewrites it: its own copy
        config.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\nprotected-mode no\n"
            f"dir {folder}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        binary = shutil.which("redis-sentinel")
        argv = [binary, str(config)] if binary else [str(redis_server()), str(config), "--sentinel"]
        self._sentinel = ServerProcess("redis-sentinel", argv, folder / "sentinel.log")
        self._sentinel.start()
        wait_until(
            lambda: (
                b"num-slaves" in _command(self.sentinel_port, "SENTINEL", "MASTER", MASTER_NAME)
                and self._replicas_known() > 0
            ),
            timeout=30,
            what="the sentinel to know the master and its replica",
            proc=self._sentinel,
        )

    def _replicas_known(self) -> int:
        reply = _command(self.sentinel_port, "SENTINEL", "MASTER", MASTER_NAME).split(b"\r\n")
        index = reply.index(b"num-slaves")
        return int(reply[index + 2])

    def master_port(self) -> int:
        """The port the sentinel names as the master now."""
        reply = _command(self.sentinel_port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return int(reply.split(b"\r\n")[4])

    def kill_master(self) -> int:
        """SIGKILL the current master; its port."""
        port = self.master_port()
        server = self.master if port == self.master.port else self.replica
        server.kill()
        return port

    def wait_for_failover(self, old_port: int, timeout: float = 30) -> int:
        """The new master's port, once the sentinel has promoted the replica."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.master_port()
            if port != old_port and b"role:master" in _command(port, "INFO", "replication"):
                return port
            time.sleep(0.1)
        log = self._sentinel.log_tail() if self._sentinel else ""
        raise TestbedError(f"no failover within {timeout}s:\n{log}")

    def stop(self) -> None:
        if self._sentinel is not None:
            self._sentinel.stop()
            self._sentinel = None
        self.replica.stop()
        self.master.stop()
