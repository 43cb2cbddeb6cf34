"""A real pkg-sidecar keeps its environment's last good fact set on disk, and serves it
when PostgreSQL is down at start; a fact set read from PostgreSQL shows in answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sidecar_fixtures import (
    Sidecar,
    clear_protocol_keys,
    create_database,
    drop_database,
    run,
    spec,
    store_snapshots,
    wait_for,
)

from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.models import TemporalFact
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.procs import free_port
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration

LOUNGE = {
    "rule_id": "rule-lounge",
    "rule_name": "lounge_access",
    "priority": 5,
    "conditions": [
        {
            "condition_type": "FACT",
            "condition_key": "guest:Ben hasTemporaryAccess",
            "operator": "=",
            "value": "lounge",
        }
    ],
    "emissions": [{"subtask_type": "open", "subtask_name": "open_lounge"}],
}


def lounge_spec(version: str) -> dict[str, Any]:
    body = spec(version)
    body["rules"].append(LOUNGE)
    return body


def add_fact(dsn: str) -> int:
    async def go() -> int:
        async with PKGClient(dsn, env="prod", max_size=1) as client:
            await client.create_temporal_fact(
                TemporalFact("guest:Ben", "hasTemporaryAccess", "lounge")
            )
            return await client.facts_version("prod")

    return run(go())


def opened(sidecar: Sidecar) -> tuple[bool, int] | None:
    """Does the answer open the lounge, and with which facts version (None: no answer yet)."""
    status, body = sidecar.post("/v1/evaluate", {})
    if status != 200:
        return None
    return [s["name"] for s in body["subtasks"]] == ["open_lounge"], body["facts_version"]


def test_the_last_good_fact_set_is_served_from_disk_when_postgresql_is_down(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    pkg_template_db: str,
    tmp_path: Path,
) -> None:
    clear_protocol_keys(redis_server.url())
    dsn = create_database(postgres_server, pkg_template_db)
    try:
        store_snapshots(dsn, [lounge_spec("rules@facts-1")], promote="rules@facts-1")
        version = add_fact(dsn)
        first = Sidecar(
            tmp_path,
            device_id="facts-cache-1",
            database_url=dsn,
            redis_url=redis_server.url(),
            target="factscache",
        ).start()
        try:
            # No operator here, so no facts level: the resync asks PostgreSQL.
            wait_for(lambda: opened(first) == (True, version), timeout=8, what="facts loaded")
            assert first.health()["facts_source"] == "postgres"
        finally:
            first.stop()
    finally:
        drop_database(postgres_server, dsn)

    second = Sidecar(
        tmp_path,
        device_id="facts-cache-1",
        database_url=f"postgresql://pkg@127.0.0.1:{free_port()}/pkg",
        redis_url=redis_server.url(),
        target="factscache",
    ).start()
    try:
        wait_for(lambda: second.version() == "rules@facts-1", timeout=10, what="snapshot from disk")
        assert opened(second) == (True, version)
        health = second.health()
        assert (health["facts_source"], health["facts_version"], health["facts_count"]) == (
            "disk_cache",
            version,
            1,
        )
        # The resyncs keep failing to reach PostgreSQL: the held set stays, and says why.
        wait_for(lambda: second.health()["facts_error"] is not None, timeout=10, what="facts_error")
        assert opened(second) == (True, version)
    finally:
        second.stop()
