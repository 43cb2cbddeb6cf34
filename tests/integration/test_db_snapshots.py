"""Snapshots in PostgreSQL: storing (idempotently), reading back in the rule form, archiving."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from evaluator_sidecar.policy import resource
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.resource import content_checksum
from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.errors import (
    ChecksumMismatchError,
    ConflictError,
    SnapshotArchivedError,
    SnapshotInUseError,
    VersionOwnedError,
)
from evaluator_sidecar.store.models import TemporalFact
from evaluator_sidecar.store.snapshot_rows import InvalidSnapshotError

pytestmark = pytest.mark.integration

MakeSnapshot = Callable[..., Awaitable[int]]

CONTENT_TABLES = (
    "pkg_snapshots",
    "pkg_subtask_types",
    "pkg_policy_rules",
    "pkg_rule_conditions",
    "pkg_rule_emissions",
    "pkg_snapshot_artifacts",
    "pkg_facts",
    "pkg_validation_fixtures",
    "pkg_audit_log",
)

REFERENCE_RESOURCE_HEAD = {
    "apiVersion": "pkg.seedcore.io/v1alpha1",
    "kind": "PolicySnapshot",
    "metadata": {"name": "reference-1-0-0"},
}

# A tiny valid WebAssembly module (magic number and version only): enough bytes to store.
WASM = b"\x00asm\x01\x00\x00\x00"


async def _counts(sql: asyncpg.Connection) -> dict[str, int]:
    counts = {}
    for table in CONTENT_TABLES:
        counts[table] = await sql.fetchval(f"SELECT count(*) FROM {table}")
    return counts


class TestStoringAndReadingBack:
    async def test_the_reference_snapshot_reads_back_and_passes_its_own_fixtures(
        self, client: PKGClient, reference_spec: dict[str, Any]
    ) -> None:
        snapshot_id = await client.store_snapshot_spec(
            reference_spec,
            resource_uid="uid-ref",
            resource_namespace="team-a",
            resource_name="reference-1-0-0",
        )
        loaded = await client.get_snapshot_by_version(reference_spec["version"])
        assert loaded is not None
        assert loaded.id == snapshot_id
        assert await client.snapshot_resource(loaded.version) == ("team-a", "reference-1-0-0")
        assert loaded.env == "dev"
        assert loaded.engine == "native"
        assert loaded.checksum == content_checksum(reference_spec)
        assert [r["rule_id"] for r in loaded.rules] == [
            r["rule_id"] for r in reference_spec["rules"]
        ]
        assert loaded.subtask_types == reference_spec["subtaskTypes"]
        assert loaded.facts == reference_spec["facts"]
        assert loaded.fixtures == [
            {"name": f["name"], "input": f.get("input", {}), "expect": f["expect"]}
            for f in reference_spec["fixtures"]
        ]
        # The stored form drives the real engine exactly as the YAML does, fixture by fixture.
        from_yaml = PKGEvaluator(
            resource.snapshot_from_resource({**REFERENCE_RESOURCE_HEAD, "spec": reference_spec})
        )
        from_db = PKGEvaluator(loaded)
        for fixture in loaded.fixtures:
            assert from_db.evaluate(fixture["input"]) == from_yaml.evaluate(fixture["input"]), (
                fixture["name"]
            )

    async def test_a_snapshot_loaded_from_its_resource_is_stored_as_is(
        self, client: PKGClient, reference_spec: dict[str, Any]
    ) -> None:
        loaded = resource.snapshot_from_resource(
            {**REFERENCE_RESOURCE_HEAD, "spec": reference_spec}
        )
        snapshot_id = await client.store_snapshot(loaded, resource_uid="uid-ref")
        # The same content by its parts is the same snapshot.
        assert (
            await client.store_snapshot_spec(reference_spec, resource_uid="uid-ref") == snapshot_id
        )
        again = await client.get_snapshot_by_id(snapshot_id)
        assert again is not None
        assert (again.version, again.checksum) == (loaded.version, loaded.checksum)
        with pytest.raises(ValueError, match="not both"):
            await client.store_snapshot(loaded, version="other@1")

    async def test_rules_come_back_in_the_evaluators_form_with_defaults_filled(
        self, client: PKGClient
    ) -> None:
        await client.store_snapshot(
            version="rules@1.0.0",
            env="prod",
            engine="native",
            subtask_types=[{"name": "notify", "default_params": {"channel": "email"}}],
            rules=[
                {
                    "rule_id": "rule-9",
                    "rule_name": "signal_band",
                    "rule_source": "x2 >= 0.8",
                    "conditions": [
                        {
                            "condition_type": "SIGNAL",
                            "condition_key": "x2",
                            "operator": ">=",
                            "value": 0.8,
                        },
                        {
                            "condition_type": "TAG",
                            "condition_key": "t",
                            "operator": "IN",
                            "value": ["a", "b"],
                        },
                    ],
                    "emissions": [
                        {"subtask_type": "notify"},
                        {
                            "subtask_type": "page",
                            "subtask_name": "page_oncall",
                            "relationship_type": "GATE",
                            "params": {"who": "sre"},
                            "position": 5,
                        },
                    ],
                }
            ],
        )
        loaded = await client.get_snapshot_by_version("rules@1.0.0")
        assert loaded is not None
        assert loaded.rules == [
            {
                "rule_id": "rule-9",
                "rule_name": "signal_band",
                "priority": 0,
                "disabled": False,
                "rule_source": "x2 >= 0.8",
                "conditions": [
                    {
                        "condition_type": "SIGNAL",
                        "condition_key": "x2",
                        "operator": ">=",
                        "value": "0.8",
                        "position": 0,
                    },
                    {
                        "condition_type": "TAG",
                        "condition_key": "t",
                        "operator": "IN",
                        "value": '["a", "b"]',
                        "position": 1,
                    },
                ],
                "emissions": [
                    {
                        "subtask_type": "notify",
                        "subtask_name": "notify",
                        "relationship_type": "EMITS",
                        "params": {},
                        "position": 0,
                        "default_params": {"channel": "email"},
                    },
                    {
                        "subtask_type": "page",
                        "subtask_name": "page_oncall",
                        "relationship_type": "GATE",
                        "params": {"who": "sre"},
                        "position": 5,
                        "default_params": {},
                    },
                ],
            }
        ]
        # 'page' was never declared: it exists for the emission but is not listed.
        assert loaded.subtask_types == [{"name": "notify", "default_params": {"channel": "email"}}]

    async def test_a_wasm_snapshot_keeps_its_artifact_bytes_data_and_entrypoint(
        self, client: PKGClient
    ) -> None:
        snapshot_id = await client.store_snapshot(
            version="policy@2.0.0",
            env="staging",
            engine="wasm",
            wasm_artifact=WASM,
            entrypoint="pkg/result",
            data={"limits": {"max": 3}},
        )
        loaded = await client.get_snapshot_by_id(snapshot_id)
        assert loaded is not None
        assert loaded.wasm_artifact == WASM
        assert loaded.checksum == hashlib.sha256(WASM).hexdigest()
        assert loaded.entrypoint == "pkg/result"
        assert loaded.data == {"limits": {"max": 3}}
        assert loaded.rules == []

    async def test_the_active_artifact_of_an_environment_comes_with_its_bytes(
        self, client: PKGClient
    ) -> None:
        assert await client.get_active_artifact("staging") is None
        snapshot_id = await client.store_snapshot(
            version="policy@2.0.0", env="staging", engine="wasm", wasm_artifact=WASM
        )
        run_id = await client.create_validation_run(snapshot_id)
        await client.finish_validation_run(run_id, True)
        await client.promote_snapshot(snapshot_id, "ci", env="staging")
        artifact = await client.get_active_artifact("staging")
        assert artifact is not None
        assert artifact["artifact_type"] == "wasm_pack"
        assert (artifact["snapshot_id"], artifact["version"]) == (snapshot_id, "policy@2.0.0")
        assert (artifact["size_bytes"], artifact["artifact_bytes"]) == (len(WASM), WASM)
        assert artifact["sha256"] == hashlib.sha256(WASM).hexdigest()
        assert await client.get_active_artifact("prod") is None

    async def test_a_wasm_checksum_that_is_not_the_artifacts_is_refused(
        self, client: PKGClient, sql: asyncpg.Connection
    ) -> None:
        with pytest.raises(ChecksumMismatchError, match="not the sha256 of its wasm artifact"):
            await client.store_snapshot(
                version="policy@2.0.1",
                env="prod",
                engine="wasm",
                wasm_artifact=WASM,
                checksum="sha256:" + "ab" * 32,
            )
        assert await sql.fetchval("SELECT count(*) FROM pkg_snapshots") == 0

    async def test_every_problem_of_a_malformed_snapshot_is_listed_and_nothing_is_written(
        self, client: PKGClient, sql: asyncpg.Connection
    ) -> None:
        with pytest.raises(InvalidSnapshotError) as caught:
            await client.store_snapshot(
                version="bad@1",
                env="qa",
                engine="native",
                rules=[
                    {
                        "rule_id": "r1",
                        "rule_name": "x",
                        "conditions": [
                            {"condition_type": "COLOR", "condition_key": "k", "operator": "~"}
                        ],
                    },
                    {"rule_id": "r1", "rule_name": "y", "colour": "blue"},
                ],
            )
        problems = "\n".join(caught.value.problems)
        assert "env: must be one of prod, staging, dev" in problems
        assert "rules[0].conditions[0].condition_type" in problems
        assert "rules[0].conditions[0].operator" in problems
        assert "rules[1]: unknown key 'colour'" in problems
        assert "rules[1].rule_id: rule_id 'r1' is also used at rules[0].rule_id" in problems
        assert await sql.fetchval("SELECT count(*) FROM pkg_snapshots") == 0

    async def test_active_snapshot_is_read_for_the_clients_environment(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        assert await client.get_active_snapshot() is None
        prod_id = await make_snapshot("rules@1.0.0", env="prod")
        staging_id = await make_snapshot("rules@1.0.0-rc", env="staging")
        await client.promote_snapshot(prod_id, "ci")
        await client.promote_snapshot(staging_id, "ci", env="staging")
        active = await client.get_active_snapshot()
        assert active is not None
        assert (active.id, active.version) == (prod_id, "rules@1.0.0")
        staging = await client.snapshots.get_active_snapshot("staging")
        assert staging is not None
        assert staging.id == staging_id

    async def test_history_questions_the_operator_asks(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        older = await make_snapshot("rules@1.0.0")
        newer = await make_snapshot("rules@1.1.0", tag="gold")
        assert not await client.was_ever_active(older)
        assert not await client.newer_snapshot_promoted(older, "prod")
        await client.promote_snapshot(newer, "ci")
        assert await client.newer_snapshot_promoted(older, "prod")
        assert not await client.newer_snapshot_promoted(newer)
        assert not await client.newer_snapshot_promoted(older, "staging")
        await client.promote_snapshot(older, "ci")
        assert await client.was_ever_active(newer)
        assert await client.snapshot_resource("rules@1.0.0") is None  # not from a resource

    async def test_snapshot_rows_are_found_by_uid_and_listed_newest_first(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        await make_snapshot("rules@1.0.0", uid="uid-1")
        await make_snapshot("rules@1.1.0", uid="uid-2")
        info = await client.get_snapshot_info(resource_uid="uid-2")
        assert info is not None
        assert info["version"] == "rules@1.1.0"
        assert not info["is_active"]
        assert [s["version"] for s in await client.list_snapshots()] == [
            "rules@1.1.0",
            "rules@1.0.0",
        ]


class TestIdempotentStore:
    async def test_storing_the_same_snapshot_twice_returns_the_same_id_and_writes_nothing(
        self, client: PKGClient, sql: asyncpg.Connection, reference_spec: dict[str, Any]
    ) -> None:
        first = await client.store_snapshot_spec(reference_spec, resource_uid="uid-ref")
        before = await _counts(sql)
        assert await client.store_snapshot_spec(reference_spec, resource_uid="uid-ref") == first
        assert await _counts(sql) == before

    async def test_the_same_version_with_other_content_is_a_conflict(
        self, client: PKGClient, sql: asyncpg.Connection, reference_spec: dict[str, Any]
    ) -> None:
        await client.store_snapshot_spec(reference_spec, resource_uid="uid-ref")
        before = await _counts(sql)
        changed = copy.deepcopy(reference_spec)
        changed["rules"][0]["priority"] = 99
        with pytest.raises(ConflictError, match="different content"):
            await client.store_snapshot_spec(changed, resource_uid="uid-ref")
        assert await _counts(sql) == before

    async def test_one_resource_uid_cannot_store_a_second_version(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        await make_snapshot("rules@1.0.0", uid="uid-1", validated=False)
        with pytest.raises(ConflictError, match="immutable"):
            await make_snapshot("rules@1.0.1", uid="uid-1", validated=False)

    async def test_a_version_owned_by_a_live_resource_is_refused_to_another_one(
        self, client: PKGClient, sql: asyncpg.Connection, reference_spec: dict[str, Any]
    ) -> None:
        first = await client.store_snapshot_spec(
            reference_spec, resource_uid="uid-a", resource_namespace="ns", resource_name="a"
        )
        before = await _counts(sql)
        with pytest.raises(VersionOwnedError, match="already belongs to PolicySnapshot ns/a") as e:
            await client.store_snapshot_spec(
                reference_spec, resource_uid="uid-b", resource_namespace="ns2", resource_name="b"
            )
        assert (e.value.owner_uid, e.value.owner_namespace, e.value.owner_name) == (
            "uid-a", "ns", "a"
        )  # fmt: skip
        assert await _counts(sql) == before
        row = await sql.fetchrow(
            "SELECT uid, resource_namespace, resource_name FROM pkg_snapshots WHERE id = $1", first
        )
        assert tuple(row) == ("uid-a", "ns", "a")

    async def test_a_recreated_resource_takes_over_its_identical_snapshot_once_archived(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0", uid="uid-old", validated=False)
        await client.archive_snapshot(snapshot_id, reason="its resource was deleted")
        again = await make_snapshot("rules@1.0.0", uid="uid-new", validated=False)
        assert again == snapshot_id
        info = await client.get_snapshot_info(resource_uid="uid-new")
        assert info is not None
        assert info["id"] == snapshot_id
        actions = [r["action"] for r in await client.get_audit_log(snapshot_id=snapshot_id)]
        assert actions == [
            "snapshot.stored", "snapshot.archived", "snapshot.reclaimed", "snapshot.restored"
        ]  # fmt: skip

    async def test_a_caller_that_saw_the_owner_gone_may_reclaim_its_version(
        self, client: PKGClient, reference_spec: dict[str, Any]
    ) -> None:
        first = await client.store_snapshot_spec(reference_spec, resource_uid="uid-gone")
        with pytest.raises(VersionOwnedError):
            await client.store_snapshot_spec(
                reference_spec, resource_uid="uid-new", reclaim_from="uid-other"
            )
        again = await client.store_snapshot_spec(
            reference_spec, resource_uid="uid-new", reclaim_from="uid-gone"
        )
        assert again == first
        info = await client.get_snapshot_info(resource_uid="uid-new")
        assert info is not None
        assert info["id"] == first

    async def test_concurrent_stores_of_one_snapshot_write_it_once(
        self, client: PKGClient, sql: asyncpg.Connection, reference_spec: dict[str, Any]
    ) -> None:
        import asyncio

        results = await asyncio.gather(
            *(client.store_snapshot_spec(reference_spec, resource_uid="uid-ref") for _ in range(4))
        )
        assert len(set(results)) == 1
        assert await sql.fetchval("SELECT count(*) FROM pkg_snapshots") == 1
        assert await sql.fetchval("SELECT count(*) FROM pkg_policy_rules") == len(
            reference_spec["rules"]
        )


class TestParameterizedSql:
    async def test_a_rule_named_like_an_injection_is_stored_and_read_back_verbatim(
        self, client: PKGClient, sql: asyncpg.Connection
    ) -> None:
        evil = "'; DROP TABLE pkg_snapshots; --"
        rules = [
            {
                "rule_id": evil,
                "rule_name": evil,
                "conditions": [
                    {
                        "condition_type": "VALUE",
                        "condition_key": evil,
                        "operator": "=",
                        "value": evil,
                    }
                ],
                "emissions": [{"subtask_type": evil, "subtask_name": evil, "params": {evil: evil}}],
            }
        ]
        await client.store_snapshot(version=evil, env="dev", engine="native", rules=rules)
        loaded = await client.get_snapshot_by_version(evil)
        assert loaded is not None
        rule = loaded.rules[0]
        assert (rule["rule_id"], rule["rule_name"]) == (evil, evil)
        assert rule["conditions"][0]["value"] == evil
        assert rule["emissions"][0]["params"] == {evil: evil}
        assert await sql.fetchval("SELECT to_regclass('pkg_snapshots') IS NOT NULL")
        assert (await client.get_snapshot_info(version=evil) or {}).get("version") == evil


class TestSoftDelete:
    async def test_an_archived_snapshot_is_hidden_by_default_and_keeps_its_history(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        old_id = await make_snapshot("rules@1.0.0")
        new_id = await make_snapshot("rules@1.1.0", tag="gold")
        await client.promote_snapshot(old_id, "ci")
        await client.promote_snapshot(new_id, "ci")
        audit_before = await client.get_audit_log(snapshot_id=old_id)

        assert await client.archive_snapshot(old_id, actor="ci", reason="superseded") is True
        assert await client.archive_snapshot(old_id, actor="ci") is False

        assert await client.get_snapshot_by_version("rules@1.0.0") is None
        assert await client.get_snapshot_by_id(old_id) is None
        hidden = await client.get_snapshot_by_version("rules@1.0.0", include_archived=True)
        assert hidden is not None
        assert len(hidden.rules) == 1
        assert [s["version"] for s in await client.list_snapshots()] == ["rules@1.1.0"]
        assert len(await client.list_snapshots(include_archived=True)) == 2
        assert [p["to_version"] for p in await client.get_promotions(old_id)] == ["rules@1.0.0"]
        assert len(await client.get_validation_runs(old_id)) == 1
        audit_after = await client.get_audit_log(snapshot_id=old_id)
        assert audit_after[: len(audit_before)] == audit_before
        assert audit_after[-1]["action"] == "snapshot.archived"
        assert audit_after[-1]["details"] == {"version": "rules@1.0.0", "reason": "superseded"}

    async def test_the_active_snapshot_cannot_be_archived(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        await client.promote_snapshot(snapshot_id, "ci")
        with pytest.raises(SnapshotInUseError, match="active snapshot of prod") as caught:
            await client.archive_snapshot(snapshot_id)
        assert "Promote another snapshot" in str(caught.value)

    async def test_a_deployed_snapshot_cannot_be_archived(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        await client.upsert_deployment(snapshot_id=snapshot_id, target="router", percent=10)
        with pytest.raises(SnapshotInUseError, match="still deployed to router/global"):
            await client.archive_snapshot(snapshot_id)

    async def test_an_archived_snapshot_cannot_be_promoted_until_restored(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0")
        await client.archive_snapshot(snapshot_id)
        with pytest.raises(SnapshotArchivedError, match="restore_snapshot"):
            await client.promote_snapshot(snapshot_id, "ci")
        with pytest.raises(SnapshotArchivedError):
            await client.upsert_deployment(snapshot_id=snapshot_id, target="router", percent=10)
        assert await client.restore_snapshot(snapshot_id, actor="ci") is True
        assert await client.promote_snapshot(snapshot_id, "ci") > 0

    async def test_storing_an_archived_snapshot_again_restores_it(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        snapshot_id = await make_snapshot("rules@1.0.0", validated=False)
        await client.archive_snapshot(snapshot_id)
        assert await make_snapshot("rules@1.0.0", validated=False) == snapshot_id
        assert await client.get_snapshot_by_id(snapshot_id) is not None


class TestTemporalFacts:
    async def test_facts_are_returned_while_valid(self, client: PKGClient) -> None:
        now = datetime.now(UTC)
        current = await client.create_temporal_fact(
            TemporalFact(
                "guest:Ben",
                "hasTemporaryAccess",
                {"service": "lounge"},
                valid_from=now - timedelta(minutes=1),
                valid_to=now + timedelta(hours=2),
                created_by="front-desk",
            )
        )
        await client.create_temporal_fact(
            TemporalFact(
                "guest:Ben",
                "hasTemporaryAccess",
                {"service": "spa"},
                valid_from=now - timedelta(days=2),
                valid_to=now - timedelta(days=1),
            )
        )
        await client.create_temporal_fact(TemporalFact("guest:Ann", "loyaltyPoints", 8000))
        valid = await client.get_temporal_facts("guest:Ben", "hasTemporaryAccess")
        assert [(f["id"], f["object"]) for f in valid] == [(current, {"service": "lounge"})]
        yesterday = now - timedelta(days=1, hours=12)
        past = await client.get_temporal_facts("guest:Ben", valid_at=yesterday)
        assert [f["object"] for f in past] == [{"service": "spa"}]
        everything = await client.get_temporal_facts(include_invalid=True)
        assert len(everything) == 3
        audit = await client.get_audit_log(entity_type="fact", entity_id=current)
        assert audit[0]["actor"] == "front-desk"

    async def test_an_empty_window_is_refused(self, client: PKGClient) -> None:
        now = datetime.now(UTC)
        with pytest.raises(ValueError, match="later than"):
            await client.create_temporal_fact(
                TemporalFact("s", "p", 1, valid_from=now, valid_to=now - timedelta(seconds=1))
            )
