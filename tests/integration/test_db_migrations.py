"""The migration runner on a real PostgreSQL: schema, concurrency, immutability, CLI, psql check."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from evaluator_sidecar.store.errors import MigrationChecksumError, MigrationError
from evaluator_sidecar.store.migrations import (
    ADVISORY_LOCK_KEY,
    apply_migrations,
    load_migrations,
    migrations_dir,
)
from evaluator_sidecar.store.schema_dump import dump_schema
from pkg_testbed.postgres import PostgresServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCHEMA_SQL = REPO / "migrations" / "schema.sql"
VERIFY_SQL = REPO / "migrations" / "verify_pkg_migrations.sql"
PKG_MIGRATE = Path(sys.executable).parent / "pkg-migrate"


def _copy_migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), folder)
    return folder


async def _applied(dsn: str) -> list[tuple[int, str, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version, name, sha256 FROM schema_migrations ORDER BY 1")
    finally:
        await conn.close()
    return [(r["version"], r["name"], r["sha256"]) for r in rows]


class TestSchema:
    async def test_migrating_an_empty_database_yields_the_committed_schema(
        self, postgres_server: PostgresServer, empty_dsn: str
    ) -> None:
        await apply_migrations(empty_dsn)
        dumped = dump_schema(empty_dsn, pg_dump=str(postgres_server.bindir / "pg_dump"))
        assert dumped == SCHEMA_SQL.read_text(encoding="utf-8"), (
            "migrations/schema.sql is stale: regenerate it with "
            "python -m evaluator_sidecar.store.schema_dump (see migrations/README.md)"
        )

    async def test_every_file_is_recorded_with_its_sha256(self, empty_dsn: str) -> None:
        applied = await apply_migrations(empty_dsn)
        expected = [(m.version, m.name, m.sha256) for m in load_migrations()]
        assert [(m.version, m.name, m.sha256) for m in applied] == expected
        assert await _applied(empty_dsn) == expected

    async def test_a_second_run_applies_nothing(self, empty_dsn: str) -> None:
        await apply_migrations(empty_dsn)
        assert await apply_migrations(empty_dsn) == []


class TestConcurrentRunners:
    async def test_two_runners_at_once_both_succeed_and_each_file_is_applied_once(
        self, empty_dsn: str
    ) -> None:
        first, second = await asyncio.gather(
            apply_migrations(empty_dsn), apply_migrations(empty_dsn)
        )
        names = sorted(m.name for m in [*first, *second])
        assert names == sorted(m.name for m in load_migrations())
        assert len(await _applied(empty_dsn)) == len(load_migrations())

    async def test_a_runner_waiting_too_long_for_the_lock_says_who_to_look_for(
        self, empty_dsn: str
    ) -> None:
        holder = await asyncpg.connect(empty_dsn)
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
            with pytest.raises(MigrationError, match="advisory lock"):
                await apply_migrations(empty_dsn, lock_timeout=0.3)
        finally:
            await holder.close()


class TestImmutability:
    async def test_a_changed_applied_file_is_refused_naming_the_file_and_both_checksums(
        self, empty_dsn: str, tmp_path: Path
    ) -> None:
        folder = _copy_migrations(tmp_path)
        await apply_migrations(empty_dsn, directory=folder)
        before = await _applied(empty_dsn)
        changed = folder / "0002_pkg_ops.sql"
        changed.write_text(changed.read_text() + "\n-- an innocent-looking edit\n")
        with pytest.raises(MigrationChecksumError) as caught:
            await apply_migrations(empty_dsn, directory=folder)
        message = str(caught.value)
        assert "0002_pkg_ops.sql" in message
        assert before[1][2] in message
        assert load_migrations(folder)[1].sha256 in message
        assert "new numbered migration" in message
        assert await _applied(empty_dsn) == before

    async def test_a_pending_file_is_refused_too_while_an_applied_one_changed(
        self, empty_dsn: str, tmp_path: Path
    ) -> None:
        folder = _copy_migrations(tmp_path)
        await apply_migrations(empty_dsn, directory=folder)
        (folder / "0001_pkg_core.sql").write_text("-- replaced\n")
        (folder / "0099_more.sql").write_text("CREATE TABLE more_stuff (id bigint PRIMARY KEY);\n")
        with pytest.raises(MigrationChecksumError):
            await apply_migrations(empty_dsn, directory=folder)
        conn = await asyncpg.connect(empty_dsn)
        try:
            assert await conn.fetchval("SELECT to_regclass('more_stuff')") is None
        finally:
            await conn.close()

    async def test_a_database_migrated_by_newer_code_is_refused(
        self, empty_dsn: str, tmp_path: Path
    ) -> None:
        folder = _copy_migrations(tmp_path)
        # The next number (numbers may have gaps: each branch was given its own).
        future = f"{max(m.version for m in load_migrations(folder)) + 1:04d}_future.sql"
        (folder / future).write_text("CREATE TABLE future_stuff (id bigint);\n")
        await apply_migrations(empty_dsn, directory=folder)
        (folder / future).unlink()
        with pytest.raises(MigrationError, match=future.replace(".", r"\.")):
            await apply_migrations(empty_dsn, directory=folder)

    async def test_a_failing_migration_is_rolled_back_and_not_recorded(
        self, empty_dsn: str, tmp_path: Path
    ) -> None:
        folder = _copy_migrations(tmp_path)
        versions = [m.version for m in load_migrations(folder)]
        broken = f"{max(versions) + 1:04d}_broken.sql"  # the next number
        (folder / broken).write_text(
            "CREATE TABLE half_done (id bigint);\nSELECT no_such_function();\n"
        )
        with pytest.raises(
            MigrationError, match=broken.replace(".", r"\.") + " failed and was rolled back"
        ):
            await apply_migrations(empty_dsn, directory=folder)
        assert [v for v, _, _ in await _applied(empty_dsn)] == versions
        conn = await asyncpg.connect(empty_dsn)
        try:
            assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        finally:
            await conn.close()


class TestConsoleCommand:
    def test_pkg_migrate_reads_the_dsn_from_the_environment(self, empty_dsn: str) -> None:
        env = {**os.environ, "PKG_DATABASE_URL": empty_dsn}
        result = subprocess.run(
            [str(PKG_MIGRATE)], env=env, capture_output=True, text=True, check=False, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "applied 0004_pkg_views_functions.sql" in result.stdout
        again = subprocess.run(
            [str(PKG_MIGRATE), "--dsn", empty_dsn], capture_output=True, text=True, check=False
        )
        assert again.returncode == 0
        assert "schema is up to date" in again.stdout

    def test_an_unreachable_database_fails_with_host_and_port_but_no_password(self) -> None:
        dsn = "postgresql://pkg:s3cret-pw@127.0.0.1:1/pkg"
        result = subprocess.run(
            [str(PKG_MIGRATE), "--dsn", dsn], capture_output=True, text=True, check=False
        )
        assert result.returncode == 1
        assert "127.0.0.1:1" in result.stderr
        assert "s3cret-pw" not in result.stderr + result.stdout


class TestVerificationScript:
    def _psql(self, server: PostgresServer, dsn: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [server.psql(), dsn, "-X", "-f", str(VERIFY_SQL)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def test_it_passes_on_a_migrated_database(
        self, postgres_server: PostgresServer, migrated_dsn: str
    ) -> None:
        result = self._psql(postgres_server, migrated_dsn)
        assert result.returncode == 0, result.stderr
        assert "PKG verification passed" in result.stdout

    async def test_it_fails_naming_a_missing_object(
        self, postgres_server: PostgresServer, migrated_dsn: str
    ) -> None:
        conn = await asyncpg.connect(migrated_dsn)
        try:
            await conn.execute("DROP VIEW pkg_deployment_coverage")
            await conn.execute("DROP FUNCTION pkg_check_integrity()")
        finally:
            await conn.close()
        result = await asyncio.to_thread(self._psql, postgres_server, migrated_dsn)
        assert result.returncode != 0
        assert "view pkg_deployment_coverage" in result.stderr
        assert "function pkg_check_integrity()" in result.stderr
        assert "PKG verification passed" not in result.stdout

    def test_it_fails_on_an_empty_database(
        self, postgres_server: PostgresServer, empty_dsn: str
    ) -> None:
        result = self._psql(postgres_server, empty_dsn)
        assert result.returncode != 0
        assert "table pkg_snapshots" in result.stderr
