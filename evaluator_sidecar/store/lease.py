"""A lease among the operator's replicas: a PostgreSQL session-level advisory lock.

The lock lives on one dedicated connection (not a pooled one: the pool resets a
connection it takes back, which releases every advisory lock). Whoever holds it
keeps it until its connection closes, so a replica that dies, or loses its
connection, hands it on to the next one that asks.
"""

from __future__ import annotations

import asyncpg

from evaluator_sidecar.store.errors import db_errors
from evaluator_sidecar.store.pool import resolve_dsn

__all__ = ["AdvisoryLease"]


class AdvisoryLease:
    """``await lease.held()``: True while this process holds the lock named ``name``."""

    def __init__(self, dsn: str, name: str) -> None:
        self._dsn = resolve_dsn(dsn)
        self.name = name
        self._conn: asyncpg.Connection | None = None
        self._held = False

    async def held(self) -> bool:
        """Take the lock if it is free; whether this process holds it. Never waits for it."""
        if self._conn is not None and self._conn.is_closed():
            self._conn, self._held = None, False
        with db_errors(f"taking the lease {self.name!r}"):
            if self._conn is None:
                self._conn = await asyncpg.connect(self._dsn, timeout=10)
            if not self._held:
                self._held = bool(
                    await self._conn.fetchval(
                        "SELECT pg_try_advisory_lock(hashtext('pkg_lease'), hashtext($1))",
                        self.name,
                    )
                )
        return self._held

    async def close(self) -> None:
        """Give the lock up (closing the connection releases it)."""
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None and not conn.is_closed():
            await conn.close()
