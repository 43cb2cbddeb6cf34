"""PKGClient as a whole: construction, connection errors, the documented usage, integrity checks."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

import evaluator_sidecar
from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.errors import ChecksumMismatchError, DatabaseUnavailableError, PKGError
from pkg_testbed.postgres import PostgresServer

pytestmark = pytest.mark.integration

MakeSnapshot = Callable[..., Awaitable[int]]
VERIFY_SQL = Path(__file__).resolve().parents[2] / "migrations" / "verify_pkg_migrations.sql"


class TestConnecting:
    async def test_an_unreachable_database_names_host_and_port_but_never_the_password(self) -> None:
        client = PKGClient("postgresql://pkg:hunter2-secret@127.0.0.1:1/pkg")
        with pytest.raises(DatabaseUnavailableError) as caught:
            await client.get_active_snapshot()
        message = str(caught.value)
        assert "127.0.0.1:1" in message
        assert "database 'pkg', user 'pkg'" in message
        assert "hunter2-secret" not in message
        assert "PKG_DATABASE_URL" in message
        await client.close()

    async def test_a_missing_database_is_unavailable_too(
        self, postgres_server: PostgresServer
    ) -> None:
        client = PKGClient(postgres_server.dsn("no_such_database"))
        with pytest.raises(DatabaseUnavailableError, match="no_such_database"):
            await client.open()

    async def test_without_a_dsn_the_error_says_how_to_give_one(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("PKG_DATABASE_URL", raising=False)
        with pytest.raises(DatabaseUnavailableError, match="set PKG_DATABASE_URL"):
            await PKGClient.connect()

    async def test_connect_makes_a_ready_client_at_once(self, migrated_dsn: str) -> None:
        from evaluator_sidecar.store import PKGClient as Exported

        client = await Exported.connect(migrated_dsn, env="staging")
        try:
            assert client.env == "staging"
            assert await client.get_active_snapshot("dev") is None
        finally:
            await client.close()

    async def test_the_documented_usage_works_with_the_dsn_from_the_environment(
        self, migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PKG_DATABASE_URL", migrated_dsn)
        async with evaluator_sidecar.PKGClient() as client:
            assert await client.get_active_snapshot() is None
            assert await client.snapshots.get_active_snapshot() is None
            assert await client.deployments.get_deployment_coverage() == []
            assert (await client.check_integrity()) == {"ok": True, "issues": []}

    def test_the_public_names_are_importable_from_the_package(self) -> None:
        for name in (
            "PKGClient",
            "PKGSnapshotsDAO",
            "PKGDeploymentsDAO",
            "PKGValidationDAO",
            "PKGPromotionsDAO",
            "PKGDevicesDAO",
            "PKGAuditDAO",
            "PKGError",
            "NotFoundError",
            "ConflictError",
            "IntegrityError",
            "ChecksumMismatchError",
            "DatabaseUnavailableError",
        ):
            assert getattr(evaluator_sidecar, name).__name__ == name
        assert issubclass(evaluator_sidecar.ChecksumMismatchError, PKGError)


class TestIntegrity:
    async def test_a_cross_snapshot_emission_is_reported_by_the_check_and_the_script(
        self,
        client: PKGClient,
        make_snapshot: MakeSnapshot,
        sql: asyncpg.Connection,
        postgres_server: PostgresServer,
        migrated_dsn: str,
    ) -> None:
        first = await make_snapshot("rules@1.0.0")
        second = await make_snapshot("rules@2.0.0", tag="gold")
        other_type = await sql.fetchval(
            "SELECT id FROM pkg_subtask_types WHERE snapshot_id = $1", second
        )
        # The keys forbid this; a restore around them (or a superuser) does not.
        async with sql.transaction():
            await sql.execute("SET LOCAL session_replication_role = replica")
            await sql.execute(
                "UPDATE pkg_rule_emissions SET subtask_type_id = $1 WHERE snapshot_id = $2",
                other_type,
                first,
            )
        report = await client.check_integrity()
        assert not report["ok"]
        [issue] = report["issues"]
        assert (issue["check_name"], issue["snapshot_id"]) == ("emission_cross_snapshot", first)
        assert f"of snapshot {second}" in issue["detail"]
        result = await asyncio.to_thread(
            subprocess.run,
            [postgres_server.psql(), migrated_dsn, "-X", "-f", str(VERIFY_SQL)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode != 0
        assert "emission_cross_snapshot" in result.stderr

    async def test_the_keys_refuse_a_cross_snapshot_emission_outright(
        self, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        first = await make_snapshot("rules@1.0.0")
        second = await make_snapshot("rules@2.0.0", tag="gold")
        other_type = await sql.fetchval(
            "SELECT id FROM pkg_subtask_types WHERE snapshot_id = $1", second
        )
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await sql.execute(
                "UPDATE pkg_rule_emissions SET subtask_type_id = $1 WHERE snapshot_id = $2",
                other_type,
                first,
            )

    async def test_a_corrupted_artifact_is_reported(
        self, client: PKGClient, sql: asyncpg.Connection
    ) -> None:
        snapshot_id = await client.store_snapshot(
            version="policy@1", env="prod", engine="wasm", wasm_artifact=b"\x00asm\x01\x00\x00\x00"
        )
        async with sql.transaction():
            await sql.execute(
                "ALTER TABLE pkg_snapshot_artifacts "
                "DROP CONSTRAINT pkg_snapshot_artifacts_sha256_matches"
            )
            await sql.execute(
                "UPDATE pkg_snapshot_artifacts SET artifact_bytes = 'tampered'::bytea"
            )
        checks = {i["check_name"] for i in (await client.check_integrity())["issues"]}
        assert checks == {"artifact_sha256_mismatch"}
        # Reading it back refuses it: the rows no longer hash to what was stored.
        with pytest.raises(ChecksumMismatchError, match="changed in PostgreSQL"):
            await client.get_snapshot_by_id(snapshot_id)
