"""The schema migration runner behind ``pkg-migrate``.

The migrations are forward-only numbered plain SQL files
(``NNNN_description.sql``) in the repository's top-level ``migrations/`` folder,
their one source. The build ships that folder inside the package as
``evaluator_sidecar.store.sql`` (pyproject.toml maps the package onto the folder),
so an installed package finds them as surely as a checkout does. The runner:

- holds a session advisory lock for the whole run, so two runners started at
  once apply each file exactly once (the second waits, then finds nothing to do);
- refuses to start when a file that was already applied has changed since
  (the error names the file and both sha256 values and says what to do), or when
  the database has a migration this code does not know;
- applies each pending file in its own transaction, together with its row in
  ``schema_migrations`` (version, name, sha256, applied_at, duration).

Files must not contain BEGIN/COMMIT of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.resources
import logging
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from evaluator_sidecar.store.errors import (
    DatabaseUnavailableError,
    MigrationChecksumError,
    MigrationError,
)
from evaluator_sidecar.store.pool import DSN_ENV, describe_dsn, resolve_dsn

__all__ = [
    "ADVISORY_LOCK_KEY",
    "NOT_MIGRATIONS",
    "AppliedMigration",
    "Migration",
    "apply_migrations",
    "load_migrations",
    "main",
    "migration_status",
    "migrations_dir",
]

log = logging.getLogger(__name__)

#: Session advisory lock taken by every runner (an arbitrary constant: "PKGMIGR" in ASCII).
ADVISORY_LOCK_KEY = 0x504B474D494752

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

#: SQL files beside the migrations that are about them, not migrations (migrations/README.md).
NOT_MIGRATIONS = frozenset({"schema.sql", "verify_pkg_migrations.sql"})

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL DEFAULT 0
)
"""


@dataclass(frozen=True)
class Migration:
    """One migration file: its number, file name, SQL text and the sha256 of its bytes."""

    version: int
    name: str
    sql: str
    sha256: str


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``schema_migrations``."""

    version: int
    name: str
    sha256: str


def migrations_dir() -> Path:
    """The folder of the packaged migration files."""
    return Path(str(importlib.resources.files("evaluator_sidecar.store.sql")))


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migration files of ``directory`` (default: the packaged ones), in order.

    Raises MigrationError for a file name that does not follow ``NNNN_name.sql``
    or for two files with the same number.
    """
    folder = directory or migrations_dir()
    if not folder.is_dir():
        raise MigrationError(
            f"migration folder {folder} does not exist: reinstall the package "
            "(pip install -e .) so that its SQL files are present"
        )
    found: dict[int, Migration] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql" or path.name in NOT_MIGRATIONS:
            continue
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path.name} is misnamed: name it NNNN_description.sql "
                "(four digits, lowercase words joined by underscores)"
            )
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"migration files {found[version].name} and {path.name} share number {version}: "
                "give the newer one the next free number"
            )
        data = path.read_bytes()
        found[version] = Migration(
            version=version,
            name=path.name,
            sql=data.decode("utf-8"),
            sha256=hashlib.sha256(data).hexdigest(),
        )
    return [found[v] for v in sorted(found)]


def check_applied(
    migrations: Sequence[Migration], applied: Sequence[AppliedMigration]
) -> list[Migration]:
    """The migrations still to apply, after checking the applied ones are unchanged.

    Pure: raises MigrationChecksumError for an applied file whose content
    changed, MigrationError for an applied version this code does not have.
    """
    by_version = {m.version: m for m in migrations}
    for row in applied:
        current = by_version.get(row.version)
        if current is None:
            raise MigrationError(
                f"the database has migration {row.name} (version {row.version}) that this "
                "code does not ship: it was migrated by a newer release. Run that release's "
                "pkg-migrate, or upgrade this code."
            )
        if current.sha256 != row.sha256:
            raise MigrationChecksumError(
                f"migration {row.name} changed after it was applied: the database recorded "
                f"sha256 {row.sha256}, the file now has sha256 {current.sha256}. Applied "
                "migrations are immutable: restore the file's applied content (e.g. "
                f"git checkout <commit> -- {row.name}) and put the change in a new numbered "
                "migration."
            )
    done = {row.version for row in applied}
    return [m for m in migrations if m.version not in done]


async def _applied(conn: asyncpg.Connection) -> list[AppliedMigration]:
    rows = await conn.fetch("SELECT version, name, sha256 FROM schema_migrations ORDER BY version")
    return [AppliedMigration(r["version"], r["name"], r["sha256"]) for r in rows]


async def _connect(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(
            dsn, timeout=10, server_settings={"application_name": "pkg-migrate"}
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnavailableError(
            f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {exc or type(exc).__name__}. "
            f"Check that the server is running and that --dsn or {DSN_ENV} is right."
        ) from exc


async def apply_migrations(
    dsn: str,
    *,
    directory: Path | None = None,
    lock_timeout: float = 120.0,
) -> list[Migration]:
    """Apply the pending migrations to the database at ``dsn``; return those applied.

    Waits up to ``lock_timeout`` seconds for another runner to finish.
    """
    migrations = load_migrations(directory)
    conn = await _connect(dsn)
    try:
        try:
            await asyncio.wait_for(
                conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY), lock_timeout
            )
        except TimeoutError as exc:
            raise MigrationError(
                f"another pkg-migrate has held the migration lock for over {lock_timeout:.0f}s: "
                "wait for it to finish, or find the session holding advisory lock "
                f"{ADVISORY_LOCK_KEY} in pg_locks"
            ) from exc
        try:
            await conn.execute(_BOOTSTRAP)
            pending = check_applied(migrations, await _applied(conn))
            for migration in pending:
                started = time.perf_counter()
                try:
                    async with conn.transaction():
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, sha256, duration_ms) "
                            "VALUES ($1, $2, $3, $4)",
                            migration.version,
                            migration.name,
                            migration.sha256,
                            int((time.perf_counter() - started) * 1000),
                        )
                except asyncpg.PostgresError as exc:
                    raise MigrationError(
                        f"migration {migration.name} failed and was rolled back: {exc}. Fix the "
                        "file (it was not applied) and run pkg-migrate again."
                    ) from exc
                log.info(
                    "applied migration %s (%.0f ms)",
                    migration.name,
                    (time.perf_counter() - started) * 1000,
                )
            return pending
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    finally:
        await conn.close()


async def migration_status(
    dsn: str, *, directory: Path | None = None
) -> tuple[list[AppliedMigration], list[Migration]]:
    """The applied migrations and the pending ones (checking the applied files are unchanged)."""
    migrations = load_migrations(directory)
    conn = await _connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        applied = await _applied(conn) if exists else []
    finally:
        await conn.close()
    return applied, check_applied(migrations, applied)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pkg-migrate",
        description="Apply the PKG schema migrations to a PostgreSQL database.",
    )
    parser.add_argument("--dsn", help=f"postgresql:// DSN (default: ${DSN_ENV})")
    parser.add_argument(
        "--status", action="store_true", help="list applied and pending migrations; apply nothing"
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for another runner (default 120)",
    )
    return parser


async def _run(args: argparse.Namespace) -> int:
    dsn = resolve_dsn(args.dsn)
    if args.status:
        applied, pending = await migration_status(dsn)
        for row in applied:
            print(f"applied  {row.name}  sha256 {row.sha256}")
        for migration in pending:
            print(f"pending  {migration.name}  sha256 {migration.sha256}")
        return 0
    done = await apply_migrations(dsn, lock_timeout=args.lock_timeout)
    if done:
        for migration in done:
            print(f"applied {migration.name}")
    else:
        print("schema is up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``pkg-migrate [--dsn DSN] [--status]``: exit 0 when the schema is up to date."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except (MigrationError, DatabaseUnavailableError) as exc:
        print(f"pkg-migrate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
