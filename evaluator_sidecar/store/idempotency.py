"""Writes keyed by an idempotency key, and the one retry a concurrent first use needs.

A keyed write (an audit event, a rollout step, a promotion record) first reads the
row that already used its key and returns it; only when there is none does it
insert. Two callers with the same key can both find none: one commits, and the
other's INSERT fails on the key's UNIQUE constraint. Running the whole write once
more, in a new transaction, then finds the winner's row and answers as a retry
would (its id, or IdempotencyConflictError when the key was used for another
request). :func:`write_keyed` is that loop, written once for every DAO.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from evaluator_sidecar.store.pool import Connection, Database

__all__ = ["write_keyed"]

T = TypeVar("T")


async def write_keyed(
    db: Database,
    write: Callable[[Connection], Awaitable[T]],
    *,
    idempotency_key: str | None,
    constraint: str | None = None,
) -> T:
    """``write(conn)`` in a transaction; after a unique violation, once more in a new one.

    The second run happens only with an ``idempotency_key`` (without one no race on a
    key is possible) and, when ``constraint`` is given, only when that constraint was
    the one violated. Any other violation, or one on the second run, propagates.
    ``write`` must therefore look up the key's row before it inserts.
    """
    try:
        async with db.transaction() as conn:
            return await write(conn)
    except asyncpg.UniqueViolationError as exc:
        if idempotency_key is None or (
            constraint is not None and exc.constraint_name != constraint
        ):
            raise
    # The concurrent writer has committed its row: this run returns it, writing nothing.
    async with db.transaction() as conn:
        return await write(conn)
