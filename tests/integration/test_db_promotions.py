"""Promotion, rollback and validation runs: the gates, the rows, and the audit rows they leave."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.errors import (
    ConflictError,
    EnvironmentMismatchError,
    IdempotencyConflictError,
    NotFoundError,
    NothingToRollBackError,
    ValidationRequiredError,
)

pytestmark = pytest.mark.integration

MakeSnapshot = Callable[..., Awaitable[int]]


async def _active(sql: asyncpg.Connection, env: str = "prod") -> list[str]:
    rows = await sql.fetch(
        "SELECT version FROM pkg_snapshots WHERE env = $1::pkg_env AND is_active", env
    )
    return [r["version"] for r in rows]


class TestPromotionGate:
    async def test_a_never_validated_snapshot_is_refused_with_what_to_do(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0", validated=False)
        with pytest.raises(ValidationRequiredError, match="never been validated") as caught:
            await client.promote_snapshot(snapshot_id, "ci")
        assert "create_validation_run" in str(caught.value)
        assert await _active(sql) == []
        assert await client.get_promotions() == []

    async def test_a_snapshot_whose_latest_run_failed_is_refused(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")  # one successful run
        run_id = await client.create_validation_run(snapshot_id)
        await client.finish_validation_run(run_id, False, {"passed": 0, "failed": 1})
        with pytest.raises(ValidationRequiredError, match=f"latest validation run \\({run_id}\\)"):
            await client.promote_snapshot(snapshot_id, "ci")

    async def test_a_snapshot_whose_latest_run_is_still_running_is_refused(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        await client.create_validation_run(snapshot_id)
        with pytest.raises(ValidationRequiredError, match="has not finished"):
            await client.promote_snapshot(snapshot_id, "ci")

    async def test_a_snapshot_of_another_environment_is_refused(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0", env="staging")
        with pytest.raises(EnvironmentMismatchError, match="belongs to environment staging"):
            await client.promote_snapshot(snapshot_id, "ci")  # the client's env is prod

    async def test_an_unknown_snapshot_is_not_found(self, client: PKGClient) -> None:
        with pytest.raises(NotFoundError, match="snapshot 999 does not exist"):
            await client.promote_snapshot(999, "ci")


class TestPromotion:
    async def test_promotion_switches_the_active_snapshot_and_records_from_and_to(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        first = await make_snapshot("rules@1.0.0")
        second = await make_snapshot("rules@1.1.0", tag="gold")
        p1 = await client.promote_snapshot(first, "alice", "initial")
        p2 = await client.promote_snapshot(second, "alice", "fixtures green", metrics={"p95": 50})
        assert await _active(sql) == ["rules@1.1.0"]
        promotions = await client.get_promotions()
        assert [(p["id"], p["from_version"], p["to_version"], p["action"]) for p in promotions] == [
            (p2, "rules@1.0.0", "rules@1.1.0", "promote"),
            (p1, None, "rules@1.0.0", "promote"),
        ]
        assert promotions[0]["metrics"] == {"p95": 50}
        assert promotions[0]["reason"] == "fixtures green"
        audit = await client.get_audit_log(action="snapshot.promoted")
        assert [a["details"]["promotion_id"] for a in audit] == [p1, p2]
        assert audit[1]["details"] == {
            "promotion_id": p2,
            "env": "prod",
            "from_version": "rules@1.0.0",
            "to_version": "rules@1.1.0",
            "reason": "fixtures green",
            "metrics": {"p95": 50},
        }
        assert audit[1]["actor"] == "alice"

    async def test_a_retried_promotion_with_its_key_returns_the_first_promotion(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        first = await client.promote_snapshot(snapshot_id, "op", idempotency_key="promo-1")
        again = await client.promote_snapshot(snapshot_id, "op", idempotency_key="promo-1")
        assert again == first
        assert len(await client.get_promotions()) == 1
        assert len(await client.get_audit_log(action="snapshot.promoted")) == 1
        other = await make_snapshot("rules@2.0.0", tag="gold")
        with pytest.raises(IdempotencyConflictError, match="promo-1"):
            await client.promote_snapshot(other, "op", idempotency_key="promo-1")

    async def test_concurrent_promotions_in_one_environment_leave_one_active_and_a_linear_history(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        ids = [await make_snapshot(f"rules@1.{i}.0", tag=f"t{i}") for i in range(4)]
        await asyncio.gather(*(client.promote_snapshot(i, "op") for i in ids))
        assert len(await _active(sql)) == 1
        history = list(reversed(await client.get_promotions()))
        assert history[0]["from_version"] is None
        for before, after in itertools.pairwise(history):
            assert after["from_version"] == before["to_version"]
        assert await _active(sql) == [history[-1]["to_version"]]

    async def test_create_promotion_records_without_activating(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        promotion_id = await client.create_promotion(
            snapshot_id,
            "canary-bot",
            "promote",
            "canary aborted",
            {"errors": 12},
            success=False,
            idempotency_key="canary-7",
        )
        assert await _active(sql) == []
        again = await client.create_promotion(
            snapshot_id, "canary-bot", "promote", idempotency_key="canary-7"
        )
        assert again == promotion_id
        [row] = await client.get_promotions(snapshot_id)
        assert (row["success"], row["reason"], row["metrics"]) == (
            False,
            "canary aborted",
            {"errors": 12},
        )
        [audit] = await client.get_audit_log(action="promotion.recorded")
        assert audit["entity_id"] == str(promotion_id)
        with pytest.raises(ValueError, match="not one of promote, rollback"):
            await client.create_promotion(snapshot_id, "x", "demote")


class TestRollback:
    async def test_rollback_returns_to_the_previous_version_then_further_back(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        v1 = await make_snapshot("rules@1.0.0")
        v2 = await make_snapshot("rules@1.1.0", tag="b")
        v3 = await make_snapshot("rules@1.2.0", tag="c")
        for snapshot_id in (v1, v2, v3):
            await client.promote_snapshot(snapshot_id, "ci")
        first = await client.rollback_snapshot(actor="pager", reason="errors spiked")
        assert await _active(sql) == ["rules@1.1.0"]
        await client.rollback_snapshot(actor="pager", reason="still bad")
        assert await _active(sql) == ["rules@1.0.0"]
        with pytest.raises(NothingToRollBackError, match="nothing to roll back to"):
            await client.rollback_snapshot(actor="pager")
        [latest, older] = [p for p in await client.get_promotions() if p["action"] == "rollback"]
        assert older["id"] == first
        assert (older["from_version"], older["to_version"]) == ("rules@1.2.0", "rules@1.1.0")
        assert (latest["from_version"], latest["to_version"]) == ("rules@1.1.0", "rules@1.0.0")
        actions = [a["action"] for a in await client.get_audit_log(entity_type="snapshot")]
        assert actions.count("snapshot.rolled_back") == 2

    async def test_rollback_to_a_named_snapshot_and_retry_with_a_key(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        v1 = await make_snapshot("rules@1.0.0")
        v2 = await make_snapshot("rules@1.1.0", tag="b")
        v3 = await make_snapshot("rules@1.2.0", tag="c")
        for snapshot_id in (v1, v2, v3):
            await client.promote_snapshot(snapshot_id, "ci")
        first = await client.rollback_snapshot(
            actor="op", to_snapshot_id=v1, idempotency_key="rb-1"
        )
        again = await client.rollback_snapshot(actor="op", idempotency_key="rb-1")
        assert again == first
        assert await _active(sql) == ["rules@1.0.0"]

    async def test_an_environment_without_an_active_snapshot_has_nothing_to_roll_back(
        self, client: PKGClient
    ) -> None:
        with pytest.raises(NothingToRollBackError, match="no active snapshot"):
            await client.rollback_snapshot("staging", actor="op")


class TestValidationRuns:
    async def test_runs_open_and_finish_with_audit_rows_that_fingerprint_the_report(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0", validated=False)
        fixtures = await client.get_validation_fixtures(snapshot_id)
        assert [f["name"] for f in fixtures] == ["tagged"]
        run_id = await client.create_validation_run(snapshot_id)
        [running] = await client.get_validation_runs(snapshot_id)
        assert (running["id"], running["success"], running["finished_at"]) == (run_id, None, None)
        report = {"passed": 1, "failed": 0, "fixtures": [{"name": "tagged", "passed": True}]}
        await client.finish_validation_run(run_id, True, report)
        [done] = await client.get_validation_runs(snapshot_id)
        assert done["success"] is True
        assert done["report"] == report
        assert done["finished_at"] >= done["started_at"]
        started, finished = await client.get_audit_log(entity_type="validation_run")
        assert (started["action"], finished["action"]) == (
            "validation.started",
            "validation.finished",
        )
        stored_text = await sql.fetchval(
            "SELECT report::text FROM pkg_validation_runs WHERE id = $1", run_id
        )
        assert (
            finished["details"]["report_sha256"] == hashlib.sha256(stored_text.encode()).hexdigest()
        )

    async def test_finishing_twice_is_a_no_op_unless_the_outcome_differs(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0", validated=False)
        run_id = await client.create_validation_run(snapshot_id)
        await client.finish_validation_run(run_id, True, {"passed": 1})
        await client.finish_validation_run(run_id, True, {"passed": 1})
        assert len(await client.get_audit_log(action="validation.finished")) == 1
        with pytest.raises(ConflictError, match="already finished"):
            await client.finish_validation_run(run_id, False)
        with pytest.raises(NotFoundError, match="run 4242 does not exist"):
            await client.finish_validation_run(4242, True)

    async def test_a_run_for_an_unknown_snapshot_is_not_found(self, client: PKGClient) -> None:
        with pytest.raises(NotFoundError):
            await client.create_validation_run(777)

    async def test_validate_snapshot_runs_the_fixtures_with_the_real_engine(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0", validated=False)
        outcome = await client.validate_snapshot(snapshot_id, actor="operator")
        assert outcome.success
        assert (outcome.report["passed"], outcome.report["failed"]) == (1, 0)
        assert await client.promote_snapshot(snapshot_id, "operator") > 0

    async def test_a_failing_fixture_fails_the_run_and_blocks_promotion(
        self, client: PKGClient
    ) -> None:
        snapshot_id = await client.store_snapshot(
            version="rules@9.0.0",
            env="prod",
            engine="native",
            rules=[{"rule_id": "r", "rule_name": "r", "emissions": [{"subtask_type": "a"}]}],
            fixtures=[{"name": "wrong", "input": {}, "expect": {"subtasks": ["b"]}}],
        )
        outcome = await client.validate_snapshot(snapshot_id)
        assert not outcome.success
        assert outcome.report["failed"] == 1
        [run] = await client.get_validation_runs(snapshot_id)
        assert run["success"] is False
        with pytest.raises(ValidationRequiredError):
            await client.promote_snapshot(snapshot_id, "ci")

    async def test_a_runner_that_crashes_closes_the_run_as_failed_and_propagates(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0", validated=False)

        def broken_runner(snapshot: PKGSnapshotData) -> tuple[bool, dict[str, object]]:
            raise RuntimeError(f"engine for {snapshot.version} is missing")

        with pytest.raises(RuntimeError, match="missing"):
            await client.validate_snapshot(snapshot_id, runner=broken_runner)
        [run] = await client.get_validation_runs(snapshot_id)
        assert run["success"] is False
        assert run["report"] == {"error": "RuntimeError: engine for rules@1.0.0 is missing"}
