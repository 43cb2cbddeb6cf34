"""Migration 0007 on a real PostgreSQL: facts are a versioned set per environment, every
change announces itself, expiry is judged by time, and a snapshot's facts never change."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.errors import InvalidInputError
from evaluator_sidecar.store.models import TemporalFact
from evaluator_sidecar.store.temporal_facts import FACTS_CHANNEL

pytestmark = pytest.mark.integration

MakeSnapshot = Callable[..., Awaitable[int]]


async def test_every_change_gives_the_environment_a_higher_version(client: PKGClient) -> None:
    assert await client.facts_version("prod") == 0
    created = await client.create_temporal_fact(
        TemporalFact("guest:Ben", "hasTemporaryAccess", "lounge", created_by="front-desk")
    )
    after_create = await client.facts_version("prod")
    assert after_create > 0
    expired = await client.expire_temporal_fact(created, actor="front-desk")
    assert expired > after_create
    second = await client.create_temporal_fact(TemporalFact("guest:Ann", "loyaltyPoints", 8000))
    after_second = await client.facts_version("prod")
    deleted = await client.delete_temporal_fact(second)
    assert after_create < expired < after_second < deleted == await client.facts_version("prod")
    # Other environments' versions did not move.
    versions = await client.facts_versions()
    assert (versions["staging"], versions["dev"]) == (0, 0)
    actions = [row["action"] for row in await client.get_audit_log(entity_type="fact")]
    assert {"fact.created", "fact.expired", "fact.deleted"} <= set(actions)


async def test_a_fact_belongs_to_the_clients_environment_unless_it_names_one(
    client: PKGClient,
) -> None:
    await client.create_temporal_fact(TemporalFact("door:7", "locked", True))
    await client.create_temporal_fact(TemporalFact("door:7", "locked", False, env="staging"))
    prod = await client.environment_facts("prod")
    staging = await client.environment_facts("staging")
    assert [f["object"] for f in prod["facts"]] == [True]
    assert [f["object"] for f in staging["facts"]] == [False]
    assert prod["version"] == await client.facts_version("prod") > 0
    assert staging["version"] == await client.facts_version("staging") > 0


async def test_each_change_sends_a_notify_with_its_environment(
    client: PKGClient, migrated_dsn: str
) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(migrated_dsn)
    await listener.add_listener(
        FACTS_CHANNEL, lambda _c, _p, _ch, payload: received.put_nowait(str(payload))
    )
    try:
        fact_id = await client.create_temporal_fact(TemporalFact("s", "p", 1, env="dev"))
        await client.expire_temporal_fact(fact_id)
        await client.delete_temporal_fact(fact_id)
        got = [await asyncio.wait_for(received.get(), timeout=5) for _ in range(3)]
        assert got == ["dev", "dev", "dev"]
    finally:
        await listener.close()


async def test_a_change_made_in_sql_by_hand_is_versioned_too(
    client: PKGClient, sql: asyncpg.Connection
) -> None:
    before = await client.facts_version("prod")
    await sql.execute(
        "INSERT INTO pkg_facts (env, subject, predicate, object) "
        "VALUES ('prod', 'guest:Cy', 'isVip', 'true')"
    )
    assert await client.facts_version("prod") > before


async def test_the_set_leaves_out_facts_already_expired_and_keeps_future_ones(
    client: PKGClient,
) -> None:
    now = datetime.now(UTC)
    await client.create_temporal_fact(
        TemporalFact(
            "g", "past", 1, valid_from=now - timedelta(days=2), valid_to=now - timedelta(days=1)
        )
    )
    await client.create_temporal_fact(
        TemporalFact("g", "future", 2, valid_from=now + timedelta(hours=1))
    )
    await client.create_temporal_fact(
        TemporalFact("g", "soon_over", 3, valid_to=now + timedelta(seconds=2))
    )
    facts = (await client.environment_facts("prod"))["facts"]
    assert sorted(f["predicate"] for f in facts) == ["future", "soon_over"]
    version = await client.facts_version("prod")
    # Expiry by time is judged where facts are evaluated: it changes no version.
    await asyncio.sleep(2.2)
    assert await client.facts_version("prod") == version
    facts = (await client.environment_facts("prod"))["facts"]
    assert [f["predicate"] for f in facts] == ["future"]


async def test_create_temporal_fact_refuses_a_snapshot_id(
    client: PKGClient, make_snapshot: MakeSnapshot
) -> None:
    snapshot_id = await make_snapshot("rules@1.0.0")
    with pytest.raises(InvalidInputError, match="immutable"):
        await client.create_temporal_fact(
            TemporalFact("guest:Ben", "hasTemporaryAccess", "spa", snapshot_id=snapshot_id)
        )


async def test_a_stored_snapshots_facts_cannot_be_changed_even_in_sql(
    client: PKGClient, sql: asyncpg.Connection, reference_spec: dict[str, object]
) -> None:
    snapshot_id = await client.store_snapshot_spec(reference_spec)
    info = await client.get_snapshot_by_id(snapshot_id)
    assert info is not None
    assert info.facts, "the reference snapshot carries facts in its spec"
    with pytest.raises(asyncpg.CheckViolationError, match="immutable"):
        await sql.execute(
            "INSERT INTO pkg_facts (snapshot_id, subject, predicate, object) "
            "VALUES ($1, 'guest:Eve', 'hasTemporaryAccess', '\"vault\"')",
            snapshot_id,
        )
    with pytest.raises(asyncpg.CheckViolationError, match="immutable"):
        await sql.execute(
            "UPDATE pkg_facts SET object = '\"x\"' WHERE snapshot_id = $1", snapshot_id
        )
    with pytest.raises(asyncpg.CheckViolationError, match="immutable"):
        await sql.execute("DELETE FROM pkg_facts WHERE snapshot_id = $1", snapshot_id)
    again = await client.get_snapshot_by_id(snapshot_id)
    assert again is not None
    assert (again.checksum, again.facts) == (info.checksum, info.facts)
