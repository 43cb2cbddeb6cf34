"""Rollout rows, device heartbeats (singly and in one-statement batches) and coverage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.errors import (
    IdempotencyConflictError,
    InvalidInputError,
    NotFoundError,
)
from evaluator_sidecar.store.models import DeviceHeartbeat

pytestmark = pytest.mark.integration

MakeSnapshot = Callable[..., Awaitable[int]]


class TestRolloutRows:
    async def test_each_step_updates_one_row_in_place_and_is_audited(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        ids = []
        for step, percent in enumerate((10, 50, 100)):
            ids.append(
                await client.upsert_deployment(
                    snapshot_id=snapshot_id,
                    target="router",
                    region="us-west",
                    percent=percent,
                    deployment_name="router-canary",
                    deployment_uid="uid-d1",
                    step=step,
                    idempotency_key=f"uid-d1/1/step-{step}",
                )
            )
        assert len(set(ids)) == 1
        [row] = await client.get_deployments(target="router")
        assert (row["percent"], row["step"], row["snapshot_version"]) == (100, 2, "rules@1.0.0")
        assert row["last_idempotency_key"] == "uid-d1/1/step-2"
        steps = await client.get_audit_log(entity_type="deployment", entity_id=ids[0])
        assert [s["details"]["percent"] for s in steps] == [10, 50, 100]
        assert {s["action"] for s in steps} == {"deployment.step"}

    async def test_a_replayed_step_returns_the_same_row_and_writes_nothing(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")

        async def step(percent: int) -> int:
            return await client.upsert_deployment(
                snapshot_id=snapshot_id,
                target="edge:door",
                deployment_uid="uid-d2",
                percent=percent,
                idempotency_key=f"k-{percent}",
            )

        first = await step(10)
        await step(50)
        audit_rows = await sql.fetchval("SELECT count(*) FROM pkg_audit_log")
        # A restarted operator repeats the 10% step: the row keeps 50%.
        assert await step(10) == first
        assert await sql.fetchval("SELECT count(*) FROM pkg_audit_log") == audit_rows
        [row] = await client.get_deployments(snapshot_id=snapshot_id)
        assert row["percent"] == 50

    async def test_a_key_used_for_another_kind_of_event_is_a_conflict(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        await client.append_audit(
            "rollout.paused", actor="op", entity_type="rollout", entity_id="r1", idempotency_key="k"
        )
        with pytest.raises(IdempotencyConflictError, match=r"rollout\.paused"):
            await client.upsert_deployment(
                snapshot_id=snapshot_id, target="router", percent=10, idempotency_key="k"
            )

    async def test_deactivated_rows_leave_the_default_listing_and_coverage(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        await client.upsert_deployment(snapshot_id=snapshot_id, target="router", percent=10)
        await client.upsert_deployment(
            snapshot_id=snapshot_id,
            target="router",
            percent=0,
            is_active=False,
            audit_action="deployment.aborted",
            details={"reason": "errors"},
        )
        assert await client.get_deployments() == []
        assert len(await client.get_deployments(active_only=False)) == 1
        assert await client.get_deployment_coverage() == []
        [aborted] = await client.get_audit_log(action="deployment.aborted")
        assert aborted["details"]["reason"] == "errors"

    async def test_bad_values_are_refused_with_a_typed_error(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        with pytest.raises(InvalidInputError, match="pkg_deployments_percent_check"):
            await client.upsert_deployment(snapshot_id=snapshot_id, target="router", percent=150)
        with pytest.raises(NotFoundError):
            await client.upsert_deployment(snapshot_id=12345, target="router", percent=10)
        with pytest.raises(InvalidInputError, match=r"must start with 'deployment\.'"):
            await client.upsert_deployment(
                snapshot_id=snapshot_id, target="router", percent=10, audit_action="rollout.step"
            )


class TestHeartbeats:
    async def test_a_thousand_heartbeats_land_with_one_statement(
        self, migrated_dsn: str, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        single = PKGClient(migrated_dsn, max_size=1)
        try:
            pool = await single.db.pool()
            statements: list[str] = []
            async with pool.acquire() as conn:
                conn.add_query_logger(lambda q: statements.append(q.query))
            beats = [
                DeviceHeartbeat(
                    f"door:D-{i:04d}",
                    "door",
                    snapshot_id=snapshot_id,
                    target="edge:door",
                    region="us-west",
                    evaluations=i,
                )
                for i in range(1000)
            ]
            assert await single.update_device_heartbeats(beats) == 1000
            writes = [s for s in statements if "pkg_device_versions" in s]
            assert len(writes) == 1
            rows = await single.get_device_versions("door", snapshot_id=snapshot_id)
            assert len(rows) == 1000
            assert rows[999]["evaluations"] == 999
        finally:
            await single.close()

    async def test_the_newest_report_wins_even_out_of_order(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        old_id = await make_snapshot("rules@1.0.0")
        new_id = await make_snapshot("rules@1.1.0", tag="gold")
        t0 = datetime.now(UTC) - timedelta(minutes=5)
        await client.update_device_heartbeats(
            [
                DeviceHeartbeat(
                    "door:1",
                    "door",
                    version="rules@1.1.0",
                    seen_at=t0 + timedelta(seconds=2),
                    errors=1,
                    p99_latency_ms=0.4,
                ),
                DeviceHeartbeat("door:1", "door", version="rules@1.0.0", seen_at=t0),
            ]
        )
        # A late batch carrying an older report does not undo the newer one.
        await client.update_device_heartbeat(
            "door:1", "door", old_id, seen_at=t0 + timedelta(seconds=1)
        )
        [row] = await client.get_device_versions()
        assert (row["snapshot_id"], row["version"]) == (new_id, "rules@1.1.0")
        assert (row["errors"], row["p99_latency_ms"], row["target"]) == (1, 0.4, "door")
        # A newer report without metrics keeps the last ones.
        await client.update_device_heartbeat("door:1", "door", old_id, "rules@1.0.0")
        [row] = await client.get_device_versions()
        assert (row["snapshot_id"], row["errors"], row["p99_latency_ms"]) == (old_id, 1, 0.4)

    async def test_an_unknown_snapshot_does_not_fail_the_batch(self, client: PKGClient) -> None:
        written = await client.update_device_heartbeats(
            [
                DeviceHeartbeat("robot:1", "robot", snapshot_id=999, version="rules@9.9.9"),
                DeviceHeartbeat("robot:2", "robot"),
            ]
        )
        assert written == 2
        rows = await client.get_device_versions("robot")
        assert [(r["device_id"], r["snapshot_id"], r["version"]) for r in rows] == [
            ("robot:1", None, "rules@9.9.9"),
            ("robot:2", None, None),
        ]

    async def test_a_heartbeat_without_a_device_id_is_refused(self, client: PKGClient) -> None:
        with pytest.raises(InvalidInputError, match="device_id"):
            await client.update_device_heartbeats([DeviceHeartbeat("", "door")])


class TestCoverage:
    async def test_coverage_counts_devices_on_the_snapshot_against_all_of_the_target(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        old_id = await make_snapshot("rules@1.0.0")
        new_id = await make_snapshot("rules@1.1.0", tag="gold")
        await client.upsert_deployment(snapshot_id=new_id, target="router", region="eu", percent=50)
        await client.upsert_deployment(snapshot_id=new_id, target="router", percent=10)  # global
        stale = datetime.now(UTC) - timedelta(hours=2)
        await client.update_device_heartbeats(
            [
                DeviceHeartbeat("r1", "router", new_id, region="eu"),
                DeviceHeartbeat("r2", "router", old_id, region="eu"),
                DeviceHeartbeat("r3", "router", new_id, region="eu", seen_at=stale),
                DeviceHeartbeat("r4", "router", old_id, region="us"),
                DeviceHeartbeat("d1", "door", new_id, region="eu"),
            ]
        )
        coverage = {c["region"]: c for c in await client.get_deployment_coverage(target="router")}
        # Only live devices count (r3 last beat two hours ago), of exactly the region.
        assert (coverage["eu"]["devices_on_snapshot"], coverage["eu"]["devices_total"]) == (1, 2)
        assert coverage["eu"]["snapshot_version"] == "rules@1.1.0"
        # A sidecar follows its own region's level: a 'global' deployment covers region global.
        assert (coverage["global"]["devices_on_snapshot"], coverage["global"]["devices_total"]) == (
            0,
            0,
        )
        recent = await client.get_deployment_coverage("router", "eu", ttl=timedelta(hours=3))
        assert [(c["devices_on_snapshot"], c["devices_total"]) for c in recent] == [(2, 3)]
        seen = await client.get_device_versions(target="router", seen_within=timedelta(minutes=10))
        assert sorted(d["device_id"] for d in seen) == ["r1", "r2", "r4"]

    async def test_the_view_matches_the_function_without_a_ttl(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        await client.upsert_deployment(snapshot_id=snapshot_id, target="router", percent=100)
        await client.update_device_heartbeat("r1", "router", snapshot_id)
        view = await sql.fetch(
            "SELECT devices_on_snapshot, devices_total, snapshot_version "
            "FROM pkg_deployment_coverage "
            "WHERE target = 'router' AND region = 'global'"
        )
        assert [tuple(r) for r in view] == [(1, 1, "rules@1.0.0")]
