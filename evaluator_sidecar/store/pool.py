"""The one asyncpg pool the PKG client's DAOs share, and what a DSN may safely show.

``Database`` creates the pool on first use (so ``PKGClient()`` can be built
outside an event loop, e.g. in a synchronous constructor) and hands out
connections and short transactions. A database that cannot be reached raises
``DatabaseUnavailableError`` naming host:port, database and user: never the
password, which ``redact_dsn`` also strips from anything logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import asyncpg

from evaluator_sidecar.store.errors import DatabaseUnavailableError

__all__ = [
    "DSN_ENV",
    "Connection",
    "Database",
    "DsnTarget",
    "create_pool",
    "describe_dsn",
    "json_dumps",
    "redact_dsn",
    "resolve_dsn",
]

log = logging.getLogger(__name__)

#: A pooled connection, as the DAOs receive it.
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
#: Transaction isolation levels asyncpg accepts.
Isolation: TypeAlias = Literal[
    "read_committed", "read_uncommitted", "serializable", "repeatable_read"
]

#: The environment variable every PKG process reads its PostgreSQL DSN from.
DSN_ENV = "PKG_DATABASE_URL"


def json_dumps(value: Any) -> str:
    """JSON for jsonb parameters; NaN and infinities are refused (PostgreSQL's JSON has none)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@dataclass(frozen=True)
class DsnTarget:
    """Where a DSN points, without its secrets."""

    host: str
    port: int
    database: str
    user: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (database {self.database!r}, user {self.user!r})"


def describe_dsn(dsn: str) -> DsnTarget:
    """host, port, database and user of a ``postgresql://`` DSN, with libpq's defaults."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or [""])[0] or os.environ.get("PGHOST", "localhost")
    try:
        port = parts.port or int((query.get("port") or [os.environ.get("PGPORT", "5432")])[0])
    except ValueError:
        port = 5432
    user = unquote(parts.username or "") or os.environ.get("PGUSER", "") or "(default user)"
    database = unquote(parts.path.lstrip("/")) or os.environ.get("PGDATABASE", "") or user
    return DsnTarget(host=host, port=port, database=database, user=user)


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***`` (in the netloc and in ``?password=``)."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostinfo}"
    query = "&".join(
        "password=***" if item.split("=", 1)[0].lower() == "password" else item
        for item in parts.query.split("&")
        if item
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def resolve_dsn(dsn: str | None) -> str:
    """``dsn`` when given, else ``$PKG_DATABASE_URL``; an error saying how to give one."""
    value = dsn or os.environ.get(DSN_ENV)
    if not value:
        raise DatabaseUnavailableError(
            f"no PostgreSQL DSN: pass one (dsn=... or --dsn) or set {DSN_ENV}, "
            "e.g. postgresql://user@host:5432/dbname"
        )
    return value


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python values; the audit chain reads details::text
    # explicitly when it needs PostgreSQL's own rendering.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=json_dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 10.0,
    command_timeout: float | None = 60.0,
    application_name: str = "pkg",
) -> asyncpg.Pool:
    """An asyncpg pool with the client's codecs, or DatabaseUnavailableError saying why not."""
    target = describe_dsn(dsn)
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            command_timeout=command_timeout,
            init=_init_connection,
            server_settings={"application_name": application_name},
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = str(exc) or type(exc).__name__
        raise DatabaseUnavailableError(
            f"cannot connect to PostgreSQL at {target}: {reason}. Check that the server is "
            f"running and reachable, and that the DSN (--dsn or {DSN_ENV}) names the right "
            "host, port, database and credentials."
        ) from exc
    log.info("connected to PostgreSQL at %s (pool %d..%d)", target, min_size, max_size)
    return pool


#: How long a caller waits for a free pooled connection. Without a bound a starved pool
#: (every connection held by callers that wait on something else) stalls its callers
#: silently forever; with one they fail with DatabaseUnavailableError and are retried.
ACQUIRE_TIMEOUT_SECONDS = 30.0


class Database:
    """One lazily created pool, shared by every DAO of a client."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: asyncpg.Pool | None = None,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float | None = 60.0,
    ) -> None:
        self._dsn = dsn
        self._pool = pool
        self._owns_pool = pool is None
        self._min_size = min_size
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        """The pool, created on first call."""
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                self._pool = await create_pool(
                    resolve_dsn(self._dsn),
                    min_size=self._min_size,
                    max_size=self._max_size,
                    command_timeout=self._command_timeout,
                )
        return self._pool

    async def _acquire(self, pool: asyncpg.Pool) -> Connection:
        try:
            conn: Connection = await pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS)
        except TimeoutError:
            raise DatabaseUnavailableError(
                f"no PostgreSQL connection came free within {ACQUIRE_TIMEOUT_SECONDS:.0f} s "
                f"(all {self._max_size} of the pool in use); the caller retries. If this "
                "repeats, PostgreSQL is too slow for the load or the pool is too small"
            ) from None
        return conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection for one or a few statements outside a transaction."""
        pool = await self.pool()
        conn = await self._acquire(pool)
        try:
            yield conn
        finally:
            await pool.release(conn)

    @asynccontextmanager
    async def transaction(
        self, *, readonly: bool = False, isolation: Isolation | None = None
    ) -> AsyncIterator[Connection]:
        """A pooled connection inside one transaction: commit on success, roll back on error.

        Keep the block short: no waiting on anything but this database inside it.
        """
        pool = await self.pool()
        conn = await self._acquire(pool)
        try:
            async with conn.transaction(readonly=readonly, isolation=isolation):
                yield conn
        finally:
            await pool.release(conn)

    async def close(self) -> None:
        """Close the pool if this object created it."""
        if self._pool is not None and self._owns_pool:
            await self._pool.close()
            self._pool = None
