"""The PostgreSQL client's exceptions, and the one place database errors become them.

Every exception says what went wrong and what to do about it. SQL functions
raise their own SQLSTATEs (class ``PK``, listed in migration 0004), and
:func:`translate` maps those, plus PostgreSQL's standard constraint and
connection errors, to the types below. Callers catch :class:`PKGError` for
everything the client raises on purpose.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import asyncpg

from evaluator_sidecar.policy.errors import Problem
from evaluator_sidecar.policy.resource_checksum import (
    ChecksumMismatchError as _ContentChecksumMismatchError,
)

__all__ = [
    "AuditLogAppendOnlyError",
    "ChecksumMismatchError",
    "ConflictError",
    "DatabaseUnavailableError",
    "EnvironmentMismatchError",
    "IdempotencyConflictError",
    "IntegrityError",
    "InvalidInputError",
    "MigrationChecksumError",
    "MigrationError",
    "NotFoundError",
    "NothingToRollBackError",
    "PKGError",
    "SnapshotArchivedError",
    "SnapshotInUseError",
    "ValidationRequiredError",
    "VersionOwnedError",
    "db_errors",
    "translate",
]

log = logging.getLogger(__name__)


class PKGError(Exception):
    """Base class of everything the PKG database client raises on purpose."""


class NotFoundError(PKGError, LookupError):
    """The snapshot, run or row named does not exist (or is archived and was not asked for)."""


class ConflictError(PKGError):
    """The request contradicts what is stored (same version, different content; a reused key)."""


class VersionOwnedError(ConflictError):
    """The version is stored for another PolicySnapshot resource, which still owns it.

    ``owner_uid``, ``owner_namespace`` and ``owner_name`` name that resource, so a
    caller that can see the cluster may check whether it still exists.
    """

    def __init__(
        self, message: str, *, owner_uid: str, owner_namespace: str | None, owner_name: str | None
    ) -> None:
        super().__init__(message)
        self.owner_uid = owner_uid
        self.owner_namespace = owner_namespace
        self.owner_name = owner_name


class SnapshotArchivedError(ConflictError):
    """The snapshot is archived: restore it before promoting or deploying it."""


class ValidationRequiredError(ConflictError):
    """The snapshot's latest validation run has not succeeded, so it cannot be promoted."""


class EnvironmentMismatchError(ConflictError):
    """The snapshot belongs to another environment than the one named."""


class IdempotencyConflictError(ConflictError):
    """An idempotency key was already used for a different request."""


class SnapshotInUseError(ConflictError):
    """The snapshot is active or deployed, so it cannot be archived."""


class NothingToRollBackError(NotFoundError):
    """There is no earlier snapshot to roll the environment back to."""


class IntegrityError(PKGError):
    """Stored data is inconsistent or was tampered with."""


class ChecksumMismatchError(IntegrityError, _ContentChecksumMismatchError):
    """A checksum given with the data does not match the data, or stored rows no longer
    match the hash recorded when they were stored.

    One exception under both import paths' bases: it is an :class:`IntegrityError` (so
    ``except PKGError`` sees it) and a
    :class:`evaluator_sidecar.policy.resource_checksum.ChecksumMismatchError` (so code
    that catches the policy core's refusal, which knows no database, sees it too).
    ``declared`` and ``actual`` are the two hashes when known.
    """

    def __init__(
        self, message: str, *, version: str = "", declared: str = "", actual: str = ""
    ) -> None:
        # Not the policy error's __init__: that one builds its message from a spec field.
        Exception.__init__(self, message)
        self.version = version
        self.declared = declared
        self.actual = actual
        self.problems = [Problem("checksum", message)]


class AuditLogAppendOnlyError(IntegrityError):
    """Someone tried to change or delete audit history."""


class InvalidInputError(PKGError, ValueError):
    """The caller passed a value the schema refuses (bad enum, percent out of range, ...)."""


class DatabaseUnavailableError(PKGError, ConnectionError):
    """PostgreSQL cannot be reached; the message names host:port, never the password."""


class MigrationError(PKGError):
    """The schema migrations cannot be applied."""


class MigrationChecksumError(MigrationError):
    """A migration file changed after it was applied to this database."""


# SQLSTATEs raised by the migrations' functions (see 0003 and 0004).
_OWN_CODES: dict[str, type[PKGError]] = {
    "PKG01": NotFoundError,
    "PKG02": SnapshotArchivedError,
    "PKG03": ValidationRequiredError,
    "PKG04": EnvironmentMismatchError,
    "PKG05": NothingToRollBackError,
    "PKG06": IdempotencyConflictError,
    "PKG07": SnapshotInUseError,
    "PKG09": AuditLogAppendOnlyError,
}

# Raised outside PostgreSQL's own error reporting (the socket, the client's state).
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.ConnectionDoesNotExistError,
)


def _describe(exc: asyncpg.PostgresError) -> str:
    parts = [str(exc.args[0]) if exc.args else type(exc).__name__]
    detail = getattr(exc, "detail", None)
    hint = getattr(exc, "hint", None)
    if detail:
        parts.append(str(detail))
    if hint:
        parts.append(str(hint))
    return ". ".join(p.rstrip(".") for p in parts) + "."


def translate(exc: BaseException, doing: str) -> PKGError | None:
    """The typed error for a database exception raised while ``doing`` something.

    Returns None for exceptions that are not the database's to explain (they
    propagate unchanged: they are bugs, not user errors).
    """
    if isinstance(exc, PKGError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        code = exc.sqlstate or ""
        own = _OWN_CODES.get(code)
        if own is not None:
            return own(f"{doing}: {_describe(exc)}")
        if isinstance(exc, asyncpg.UniqueViolationError):
            return ConflictError(
                f"{doing}: {_describe(exc)} Something with the same key is already stored: "
                "read it back, or use a new key or version."
            )
        if isinstance(exc, asyncpg.ForeignKeyViolationError):
            text = str(exc)
            if "still referenced" in text:
                return ConflictError(
                    f"{doing}: {_describe(exc)} History refers to it: archive it instead."
                )
            return NotFoundError(f"{doing}: {_describe(exc)} Store the referenced row first.")
        if isinstance(
            exc,
            asyncpg.CheckViolationError
            | asyncpg.NotNullViolationError
            | asyncpg.InvalidTextRepresentationError
            | asyncpg.InvalidParameterValueError
            | asyncpg.DataError,
        ):
            return InvalidInputError(f"{doing}: {_describe(exc)} Correct the value and retry.")
        if code.startswith("08") or code.startswith("57P"):
            return DatabaseUnavailableError(
                f"{doing}: the database connection failed ({_describe(exc)}). Retry when "
                "PostgreSQL is back."
            )
        return None
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        # asyncpg could not encode an argument (wrong type, NaN in JSON, ...).
        return InvalidInputError(f"{doing}: {exc}. Correct the value and retry.")
    if isinstance(exc, _CONNECTION_ERRORS):
        return DatabaseUnavailableError(
            f"{doing}: the database connection failed ({exc}). Retry when PostgreSQL is back."
        )
    return None


def raise_translated(exc: BaseException, doing: str) -> NoReturn:
    """Raise the typed error for ``exc`` (chained), or ``exc`` itself when there is none."""
    typed = translate(exc, doing)
    if typed is None or typed is exc:
        raise exc
    log.debug("database error while %s: %r", doing, exc)
    raise typed from exc


@contextmanager
def db_errors(doing: str) -> Iterator[None]:
    """Turn database exceptions raised inside the block into typed ones.

    ``doing`` completes the sentence "error while ...", e.g. "promoting snapshot 4".
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - translated or re-raised unchanged
        raise_translated(exc, doing)
