"""Database errors become typed PKG errors that say what to do (pure: no server involved)."""

from __future__ import annotations

import asyncpg
import pytest

from evaluator_sidecar.store.errors import (
    AuditLogAppendOnlyError,
    ConflictError,
    DatabaseUnavailableError,
    EnvironmentMismatchError,
    IdempotencyConflictError,
    InvalidInputError,
    NotFoundError,
    NothingToRollBackError,
    PKGError,
    SnapshotArchivedError,
    SnapshotInUseError,
    ValidationRequiredError,
    db_errors,
    translate,
)


def _pg(
    code: str, message: str = "it went wrong", hint: str | None = None
) -> asyncpg.PostgresError:
    fields = {"C": code, "M": message, "S": "ERROR"}
    if hint:
        fields["H"] = hint
    error: asyncpg.PostgresError = asyncpg.PostgresError.new(fields)
    return error


class TestOwnCodes:
    @pytest.mark.parametrize(
        ("code", "kind"),
        [
            ("PKG01", NotFoundError),
            ("PKG02", SnapshotArchivedError),
            ("PKG03", ValidationRequiredError),
            ("PKG04", EnvironmentMismatchError),
            ("PKG05", NothingToRollBackError),
            ("PKG06", IdempotencyConflictError),
            ("PKG07", SnapshotInUseError),
            ("PKG09", AuditLogAppendOnlyError),
        ],
    )
    def test_each_code_has_its_type(self, code: str, kind: type[PKGError]) -> None:
        typed = translate(_pg(code, "snapshot 4 is archived", "Restore it first."), "promoting 4")
        assert type(typed) is kind
        assert str(typed) == "promoting 4: snapshot 4 is archived. Restore it first."

    def test_the_hierarchy_lets_callers_catch_broadly(self) -> None:
        assert issubclass(SnapshotArchivedError, ConflictError)
        assert issubclass(NothingToRollBackError, NotFoundError)
        assert issubclass(NotFoundError, LookupError)
        assert issubclass(InvalidInputError, ValueError)
        assert issubclass(DatabaseUnavailableError, ConnectionError)


class TestStandardCodes:
    def test_constraint_violations_are_typed(self) -> None:
        assert isinstance(translate(_pg("23505"), "x"), ConflictError)
        assert isinstance(translate(_pg("23514"), "x"), InvalidInputError)
        assert isinstance(translate(_pg("22P02"), "x"), InvalidInputError)
        missing = _pg("23503", "insert violates foreign key: Key (snapshot_id)=(9) is not present")
        assert isinstance(translate(missing, "x"), NotFoundError)
        referenced = _pg("23503", "update or delete violates foreign key: is still referenced")
        assert isinstance(translate(referenced, "x"), ConflictError)

    def test_connection_failures_are_unavailability(self) -> None:
        assert isinstance(translate(_pg("08006"), "x"), DatabaseUnavailableError)
        assert isinstance(translate(OSError("refused"), "x"), DatabaseUnavailableError)

    def test_bugs_are_not_disguised(self) -> None:
        assert translate(_pg("42601", "syntax error"), "x") is None
        assert translate(KeyError("k"), "x") is None
        with pytest.raises(KeyError), db_errors("reading"):
            raise KeyError("k")

    def test_the_context_manager_chains_the_original(self) -> None:
        original = _pg("PKG01", "snapshot 3 does not exist")
        with pytest.raises(NotFoundError) as caught, db_errors("reading snapshot 3"):
            raise original
        assert caught.value.__cause__ is original
