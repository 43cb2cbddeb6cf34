"""Helpers for the sidecar's integration tests: a migrated database with snapshots, and
``pkg-sidecar`` processes started with the console command on free loopback ports.

Redis is the test bed's (shared by the session), so each test clears only the
keys of the protocol before it runs; pub/sub channels are global in Redis.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson
from redis.asyncio import Redis

from evaluator_sidecar.signals import RedisSignals
from evaluator_sidecar.store.client import PKGClient
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.procs import free_port

T = TypeVar("T")

SIDECAR_BIN = Path(sys.executable).parent / "pkg-sidecar"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
FACTS = {"tags": ["vip"], "signals": {"x2": 0.8}, "context": {"domain": "hotel_ops"}}


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine from a synchronous test (the processes do the async work)."""
    return asyncio.run(coro)


def wait_for(check: Callable[[], bool], *, timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"not true after {timeout} s: {what}")


# --------------------------------------------------------------------------- PostgreSQL


def spec(version: str, *, env: str = "prod", good_fixtures: bool = True) -> dict[str, Any]:
    """A native PolicySnapshot spec whose VIP rule names its own version in the params."""
    expect = ["escalate_vip"] if good_fixtures else ["never_emitted"]
    return {
        "version": version,
        "env": env,
        "engine": "native",
        "rules": [
            {
                "rule_id": "rule-001",
                "rule_name": "high_priority_vip",
                "priority": 10,
                "conditions": [
                    {"condition_type": "TAG", "condition_key": "vip", "operator": "EXISTS"}
                ],
                "emissions": [
                    {
                        "subtask_type": "escalate",
                        "subtask_name": "escalate_vip",
                        "params": {"version": version},
                    }
                ],
            }
        ],
        "fixtures": [
            {"name": "vip-escalates", "input": {"tags": ["vip"]}, "expect": {"subtasks": expect}}
        ],
    }


def create_database(server: PostgresServer, template: str) -> str:
    """A fresh copy of the session's migrated template; its DSN."""
    name = f"pkg_sidecar_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        admin = await asyncpg.connect(server.dsn())
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await admin.close()

    run(create())
    return server.dsn(name)


def drop_database(server: PostgresServer, dsn: str) -> None:
    name = dsn.rsplit("/", 1)[1]

    async def drop() -> None:
        admin = await asyncpg.connect(server.dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    run(drop())


def store_snapshots(
    dsn: str, specs: list[dict[str, Any]], *, promote: str | None = None
) -> dict[str, int]:
    """Store each spec with the client's write path; promote one (validated first); ids."""

    async def go() -> dict[str, int]:
        async with PKGClient(dsn, env="prod", max_size=2) as client:
            ids = {}
            for s in specs:
                stored: Any = await client.store_snapshot_spec(s)
                # The client's write path returns the id, or a record holding it.
                ids[s["version"]] = stored if isinstance(stored, int) else stored.id
            if promote is not None:
                outcome = await client.validate_snapshot(ids[promote])
                assert outcome.success, outcome
                await client.promote_snapshot(ids[promote], reason="test")
            return ids

    return run(go())


# --------------------------------------------------------------------------- Redis


def redis_cli(port: int, *args: str) -> str:
    """The real redis-cli next to redis-server."""
    result = subprocess.run(
        [REDIS_CLI, "-p", str(port), *args], capture_output=True, text=True, check=True, timeout=10
    )
    return result.stdout.strip()


async def with_signals(url: str, fn: Callable[[RedisSignals], Coroutine[Any, Any, T]]) -> T:
    client = Redis.from_url(url)
    try:
        return await fn(RedisSignals(client))
    finally:
        await client.aclose()


def clear_protocol_keys(url: str) -> None:
    async def clear(signals: RedisSignals) -> None:
        keys = [k async for k in signals.redis.scan_iter(match="pkg:*")]
        if keys:
            await signals.redis.delete(*keys)

    run(with_signals(url, clear))


# --------------------------------------------------------------------------- sidecar processes


class Sidecar:
    """One ``pkg-sidecar`` process; ``get``/``post`` talk to its HTTP API."""

    def __init__(
        self,
        workdir: Path,
        *,
        device_id: str,
        database_url: str,
        redis_url: str,
        env: str = "prod",
        target: str = "router",
        region: str = "global",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.device_id = device_id
        self.port = free_port()
        self.workdir = workdir
        self.cache_dir = workdir / f"cache-{device_id}"
        self.log_path = workdir / f"sidecar-{device_id}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PKG_")},
            "PKG_DATABASE_URL": database_url,
            "PKG_REDIS_URL": redis_url,
            "PKG_ENV": env,
            "PKG_TARGET": target,
            "PKG_REGION": region,
            "PKG_DEVICE_ID": device_id,
            "PKG_DEVICE_TYPE": "test",
            "PKG_HTTP_PORT": str(self.port),
            "PKG_CACHE_DIR": str(self.cache_dir),
            "PKG_RESYNC_INTERVAL_SECONDS": "1",
            "PKG_HEARTBEAT_INTERVAL_SECONDS": "0.5",
            "PKG_REDIS_BACKOFF_MAX_SECONDS": "1",
            "PKG_DB_TIMEOUT_SECONDS": "2",
            "PKG_LOG_LEVEL": "INFO",
            **(extra or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> Sidecar:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(SIDECAR_BIN)], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        if wait:
            wait_for(self.alive, timeout=20, what=f"sidecar {self.device_id} answering /healthz")
        return self

    def alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"sidecar {self.device_id} exited:\n{self.log()}")
        try:
            return self.get("/healthz")[0] == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=body,
            method=method,
            headers={"Content-Type": content_type} if body is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        try:
            return status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def post(self, path: str, value: Any) -> tuple[int, Any]:
        return self.request("POST", path, orjson.dumps(value))

    def version(self) -> str | None:
        status, meta = self.get("/v1/metadata")
        assert status == 200, meta
        return meta["version"]  # type: ignore[no-any-return]

    def health(self) -> dict[str, Any]:
        return self.get("/healthz")[1]  # type: ignore[no-any-return]

    def evaluated_version(self) -> str:
        status, body = self.post("/v1/evaluate", FACTS)
        assert status == 200, body
        assert body["subtasks"][0]["params"]["version"] == body["snapshot"]
        return body["snapshot"]  # type: ignore[no-any-return]


def all_on(sidecars: list[Sidecar], version: str) -> Callable[[], bool]:
    return lambda: all(s.version() == version for s in sidecars)
