"""write_keyed: the one retry after a concurrent first use of an idempotency key (no server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
import pytest

from evaluator_sidecar.store.idempotency import write_keyed

KEY_CONSTRAINT = "pkg_audit_log_idempotency_key_key"


def _unique_violation(constraint: str = KEY_CONSTRAINT) -> asyncpg.UniqueViolationError:
    error = asyncpg.UniqueViolationError.new(
        {"C": "23505", "M": "duplicate key value", "S": "ERROR", "n": constraint}
    )
    assert isinstance(error, asyncpg.UniqueViolationError)
    return error


class FakeDatabase:
    """Hands out numbered connections, one per transaction, and records how each ended."""

    def __init__(self) -> None:
        self.transactions: list[str] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[int]:
        number = len(self.transactions)
        self.transactions.append("open")
        try:
            yield number
        except BaseException:
            self.transactions[number] = "rolled back"
            raise
        self.transactions[number] = "committed"


class Writer:
    """A keyed write that fails with the given errors first, then returns the connection's id."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[Any] = []

    async def __call__(self, conn: int) -> str:
        self.calls.append(conn)
        if self.errors:
            raise self.errors.pop(0)
        return f"row read on connection {conn}"


async def run(db: FakeDatabase, write: Writer, **options: Any) -> Any:
    # The fakes stand in for Database and a write on a Connection.
    return await write_keyed(cast(Any, db), cast(Any, write), **options)


async def test_a_write_that_succeeds_runs_once() -> None:
    db, write = FakeDatabase(), Writer()
    assert await run(db, write, idempotency_key="k") == "row read on connection 0"
    assert db.transactions == ["committed"]


async def test_a_race_on_the_key_runs_the_write_again_in_a_new_transaction() -> None:
    db, write = FakeDatabase(), Writer(_unique_violation())
    result = await run(db, write, idempotency_key="k", constraint=KEY_CONSTRAINT)
    assert result == "row read on connection 1"
    assert db.transactions == ["rolled back", "committed"]


async def test_without_a_constraint_any_unique_violation_with_a_key_is_retried() -> None:
    db, write = FakeDatabase(), Writer(_unique_violation("some_other_key"))
    assert await run(db, write, idempotency_key="k") == "row read on connection 1"


async def test_without_a_key_a_unique_violation_propagates() -> None:
    db, write = FakeDatabase(), Writer(_unique_violation())
    with pytest.raises(asyncpg.UniqueViolationError):
        await run(db, write, idempotency_key=None, constraint=KEY_CONSTRAINT)
    assert write.calls == [0]


async def test_a_violation_of_another_constraint_propagates() -> None:
    db, write = FakeDatabase(), Writer(_unique_violation("pkg_deployments_pkey"))
    with pytest.raises(asyncpg.UniqueViolationError):
        await run(db, write, idempotency_key="k", constraint=KEY_CONSTRAINT)
    assert write.calls == [0]


async def test_a_second_violation_propagates() -> None:
    db, write = FakeDatabase(), Writer(_unique_violation(), _unique_violation())
    with pytest.raises(asyncpg.UniqueViolationError):
        await run(db, write, idempotency_key="k", constraint=KEY_CONSTRAINT)
    assert write.calls == [0, 1]
    assert db.transactions == ["rolled back", "rolled back"]


async def test_other_errors_are_not_retried() -> None:
    db, write = FakeDatabase(), Writer(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        await run(db, write, idempotency_key="k")
    assert write.calls == [0]
