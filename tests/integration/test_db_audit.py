"""The audit chain: every governance write appends a link; edits and deletions are detected."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.errors import IdempotencyConflictError, InvalidInputError

pytestmark = pytest.mark.integration

MakeSnapshot = Callable[..., Awaitable[int]]


async def _history(client: PKGClient, make_snapshot: MakeSnapshot) -> None:
    """A little of everything: stores, validation runs, promotions, a rollback, a rollout step."""
    first = await make_snapshot("rules@1.0.0")
    second = await make_snapshot("rules@1.1.0", tag="gold")
    await client.promote_snapshot(first, "ci")
    await client.promote_snapshot(second, "ci")
    await client.rollback_snapshot(actor="pager", reason="errors")
    await client.upsert_deployment(snapshot_id=first, target="router", percent=10, step=0)
    await client.append_audit(
        "rollout.paused",
        actor="pkg-operator",
        entity_type="rollout",
        entity_id="router-canary",
        details={"why": "gate: manual approval", "ünïcode": "✓"},
    )


async def _sql_verdict(sql: asyncpg.Connection) -> asyncpg.Record:
    row = await sql.fetchrow("SELECT * FROM pkg_verify_audit_chain()")
    assert row is not None
    return row


async def _bypassing_guards(sql: asyncpg.Connection, statement: str, *args: object) -> None:
    # What a superuser (or a restore) can do: the append-only triggers do not fire.
    async with sql.transaction():
        await sql.execute("SET LOCAL session_replication_role = replica")
        await sql.execute(statement, *args)


class TestAppending:
    async def test_every_governance_write_appends_a_link_and_the_chain_verifies(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        await _history(client, make_snapshot)
        rows = await client.get_audit_log(limit=1000)
        assert [r["id"] for r in rows] == list(range(1, len(rows) + 1))
        assert rows[0]["prev_hash"] == "0" * 64
        for before, after in itertools.pairwise(rows):
            assert after["prev_hash"] == before["hash"]
        actions = {r["action"] for r in rows}
        assert {
            "snapshot.stored",
            "validation.started",
            "validation.finished",
            "snapshot.promoted",
            "snapshot.rolled_back",
            "deployment.step",
            "rollout.paused",
        } <= actions
        report = await client.verify_audit_chain()
        assert report.ok, report
        assert report.rows_checked == len(rows)
        verdict = await _sql_verdict(sql)
        assert (verdict["ok"], verdict["rows_checked"]) == (True, len(rows))

    async def test_concurrent_appends_form_one_linear_chain(
        self, client: PKGClient, sql: asyncpg.Connection
    ) -> None:
        await asyncio.gather(
            *(
                client.append_audit("operator.tick", actor="op", entity_type="op", entity_id=i)
                for i in range(25)
            )
        )
        report = await client.verify_audit_chain()
        assert (report.ok, report.rows_checked) == (True, 25)

    async def test_a_retried_event_with_its_key_is_written_once(self, client: PKGClient) -> None:
        async def pause(entity_id: str) -> int:
            return await client.append_audit(
                "rollout.paused",
                actor="op",
                entity_type="rollout",
                entity_id=entity_id,
                idempotency_key="pause-1",
            )

        first = await pause("r1")
        again = await pause("r1")
        assert again == first
        assert len(await client.get_audit_log()) == 1
        with pytest.raises(IdempotencyConflictError, match="pause-1"):
            await pause("r2")

    async def test_an_action_that_is_not_a_dotted_name_is_refused(self, client: PKGClient) -> None:
        with pytest.raises(InvalidInputError, match="dotted lowercase name"):
            await client.append_audit("Paused", actor="op", entity_type="rollout", entity_id="r")

    async def test_plain_sql_cannot_change_or_delete_history(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        await make_snapshot("rules@1.0.0")
        for statement in (
            "UPDATE pkg_audit_log SET actor = 'mallory' WHERE id = 1",
            "DELETE FROM pkg_audit_log WHERE id = 1",
            "TRUNCATE pkg_audit_log CASCADE",
            "UPDATE pkg_audit_head SET last_id = 0",
        ):
            with pytest.raises(asyncpg.PostgresError, match="append-only") as caught:
                await sql.execute(statement)
            assert caught.value.sqlstate == "PKG09"
        assert (await client.verify_audit_chain()).ok


class TestTamperDetection:
    async def test_an_edited_row_is_reported_with_its_id_and_both_hashes(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        await _history(client, make_snapshot)
        target = await sql.fetchrow(
            "SELECT id, hash FROM pkg_audit_log WHERE action = 'snapshot.promoted' LIMIT 1"
        )
        assert target is not None
        await _bypassing_guards(
            sql,
            "UPDATE pkg_audit_log SET details = details || $2::jsonb WHERE id = $1",
            target["id"],
            '{"reason": "nothing to see"}',
        )
        report = await client.verify_audit_chain()
        assert not report.ok
        assert report.first_break is not None
        assert (report.first_break.row_id, report.first_break.problem) == (
            target["id"],
            "hash_mismatch",
        )
        assert report.first_break.stored == target["hash"]
        assert report.first_break.expected != target["hash"]
        assert report.rows_checked == target["id"] - 1
        assert f"row {target['id']}" in str(report)
        verdict = await _sql_verdict(sql)
        assert (verdict["ok"], verdict["broken_id"], verdict["problem"]) == (
            False,
            target["id"],
            "hash_mismatch",
        )
        assert (verdict["expected"], verdict["stored"]) == (
            report.first_break.expected,
            target["hash"],
        )

    async def test_a_deleted_row_is_reported_at_the_row_after_it(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        await _history(client, make_snapshot)
        rows = await client.get_audit_log(limit=1000)
        victim, follower = rows[3], rows[4]
        await _bypassing_guards(sql, "DELETE FROM pkg_audit_log WHERE id = $1", victim["id"])
        report = await client.verify_audit_chain()
        assert report.first_break is not None
        assert (report.first_break.row_id, report.first_break.problem) == (
            follower["id"],
            "missing_rows",
        )
        assert report.first_break.expected == rows[2]["hash"]
        assert report.first_break.stored == victim["hash"]
        verdict = await _sql_verdict(sql)
        assert (verdict["broken_id"], verdict["problem"]) == (follower["id"], "missing_rows")

    async def test_a_rewritten_row_with_a_recomputed_hash_breaks_the_next_link(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        await _history(client, make_snapshot)
        await _bypassing_guards(
            sql,
            "UPDATE pkg_audit_log SET actor = 'mallory', hash = pkg_audit_hash(prev_hash, id, "
            "created_at, action, 'mallory', entity_type, entity_id, snapshot_id, details, "
            "idempotency_key) WHERE id = 2",
        )
        report = await client.verify_audit_chain()
        assert report.first_break is not None
        assert (report.first_break.row_id, report.first_break.problem) == (3, "prev_hash_mismatch")

    async def test_rows_cut_off_the_end_are_reported_against_the_head(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        await _history(client, make_snapshot)
        last = await sql.fetchval("SELECT max(id) FROM pkg_audit_log")
        await _bypassing_guards(sql, "DELETE FROM pkg_audit_log WHERE id = $1", last)
        report = await client.verify_audit_chain()
        assert report.first_break is not None
        assert (report.first_break.row_id, report.first_break.problem) == (last, "head_mismatch")
        assert (await _sql_verdict(sql))["problem"] == "head_mismatch"

    async def test_verification_pages_through_long_chains(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        await _history(client, make_snapshot)
        total = len(await client.get_audit_log(limit=1000))
        report = await client.audit.verify_audit_chain(page_size=3)
        assert (report.ok, report.rows_checked) == (True, total)
