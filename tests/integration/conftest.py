"""Fixtures for the PostgreSQL integration tests: migrated databases made cheaply.

The migrations run once per session into a template database; every test that
needs a migrated database gets its own copy (CREATE DATABASE ... TEMPLATE),
dropped afterwards. Tests that need an empty database get one too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from evaluator_sidecar.policy import resource
from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.migrations import apply_migrations
from pkg_testbed.postgres import PostgresServer

REFERENCE_SNAPSHOT = Path(__file__).resolve().parents[1] / "data" / "reference-snapshot.yaml"


async def _admin(server: PostgresServer) -> asyncpg.Connection:
    return await asyncpg.connect(server.dsn())


@pytest.fixture(scope="session")
async def pkg_template_db(postgres_server: PostgresServer) -> str:
    """The name of a database migrated once per session, used as a template."""
    name = f"pkg_template_{uuid.uuid4().hex[:8]}"
    admin = await _admin(postgres_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await apply_migrations(postgres_server.dsn(name))
    return name


async def _fresh_database(server: PostgresServer, template: str | None) -> str:
    name = f"pkg_test_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    admin = await _admin(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    return name


async def _drop_database(server: PostgresServer, name: str) -> None:
    admin = await _admin(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def migrated_dsn(postgres_server: PostgresServer, pkg_template_db: str) -> AsyncIterator[str]:
    """A DSN of a freshly migrated database of this test's own."""
    name = await _fresh_database(postgres_server, pkg_template_db)
    yield postgres_server.dsn(name)
    await _drop_database(postgres_server, name)


@pytest.fixture
async def empty_dsn(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A DSN of an empty database of this test's own."""
    name = await _fresh_database(postgres_server, None)
    yield postgres_server.dsn(name)
    await _drop_database(postgres_server, name)


@pytest.fixture
async def client(migrated_dsn: str) -> AsyncIterator[PKGClient]:
    """A PKGClient (environment prod) on a freshly migrated database."""
    pkg = PKGClient(migrated_dsn, env="prod", max_size=4)
    await pkg.open()
    yield pkg
    await pkg.close()


@pytest.fixture
async def sql(migrated_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the same database, for looking behind the client's back."""
    conn = await asyncpg.connect(migrated_dsn)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def reference_spec() -> dict[str, Any]:
    """The shared reference PolicySnapshot's spec (every condition type, operator, relation)."""
    documents = resource.load_documents(REFERENCE_SNAPSHOT.read_text(encoding="utf-8"))
    spec: dict[str, Any] = resource.select_policy_snapshot(documents)["spec"]
    return spec


def simple_rules(tag: str = "vip", subtask: str = "escalate") -> list[dict[str, Any]]:
    """One rule: tag ``tag`` emits ``subtask``."""
    return [
        {
            "rule_id": "rule-001",
            "rule_name": f"{tag}_rule",
            "priority": 10,
            "conditions": [{"condition_type": "TAG", "condition_key": tag, "operator": "EXISTS"}],
            "emissions": [{"subtask_type": subtask, "subtask_name": f"{subtask}_{tag}"}],
        }
    ]


class SnapshotFactory:
    """Stores small native snapshots (and, when asked, a successful validation run)."""

    def __init__(self, client: PKGClient) -> None:
        self.client = client

    async def __call__(
        self,
        version: str,
        *,
        env: str = "prod",
        tag: str = "vip",
        validated: bool = True,
        uid: str | None = None,
    ) -> int:
        snapshot_id = await self.client.store_snapshot(
            version=version,
            env=env,
            engine="native",
            rules=simple_rules(tag),
            subtask_types=[{"name": "escalate", "default_params": {"level": "low"}}],
            fixtures=[
                {
                    "name": "tagged",
                    "input": {"tags": [tag]},
                    "expect": {"subtasks": [f"escalate_{tag}"]},
                }
            ],
            resource_uid=uid,
        )
        if validated:
            run_id = await self.client.create_validation_run(snapshot_id)
            await self.client.finish_validation_run(run_id, True, {"passed": 1, "failed": 0})
        return snapshot_id


@pytest.fixture
def make_snapshot(client: PKGClient) -> SnapshotFactory:
    """``await make_snapshot("rules@1.0.0")`` stores a validated native snapshot; its id."""
    return SnapshotFactory(client)
