"""The sidecar's least-privilege identities, on the real servers.

Redis: the ACL user of ``evaluator_sidecar.signals.acl`` may read desired states,
subscribe to ``pkg_updates`` and write heartbeats, and is refused a write of a
desired state, a PUBLISH, a script and any other key. PostgreSQL: a login in the
role ``pkg_sidecar_reader`` (migration 0008) reads a whole snapshot and is refused
every write. Then a real ``pkg-sidecar`` process runs under both identities,
activates a snapshot, follows an ``activate:`` and heartbeats.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError
from sidecar_fixtures import (
    Sidecar,
    create_database,
    drop_database,
    run,
    spec,
    store_snapshots,
    wait_for,
)

from evaluator_sidecar.signals.acl import SIDECAR_ACL_RULES, sidecar_acl_line
from evaluator_sidecar.store.client import PKGClient
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def acl_user(redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    """A sidecar ACL user on the test bed's Redis: (name, password); deleted afterwards."""
    name, password = f"pkg-sidecar-{uuid.uuid4().hex[:8]}", secrets.token_hex(16)
    line = sidecar_acl_line(name, password)

    async def admin(*args: str) -> Any:
        client = Redis.from_url(redis_server.url())
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()

    # ACL SETUSER takes the ACL file's rules as arguments: the line without "user NAME".
    run(admin("ACL", "SETUSER", name, "reset", *line.split()[2:]))
    yield name, password
    run(admin("ACL", "DELUSER", name))


def user_url(redis_server: RedisServer, user: tuple[str, str], db: int = 0) -> str:
    return f"redis://{user[0]}:{user[1]}@127.0.0.1:{redis_server.port}/{db}"


@pytest.fixture
def reader_dsn(postgres_server: PostgresServer, pkg_template_db: str) -> Iterator[tuple[str, str]]:
    """(admin DSN, sidecar DSN) of a fresh migrated database; the sidecar's login is a
    member of pkg_sidecar_reader only."""
    dsn = create_database(postgres_server, pkg_template_db)
    login = f"pkg_sidecar_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres_server.dsn())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run(admin(f"CREATE ROLE {login} LOGIN IN ROLE pkg_sidecar_reader"))
    database = dsn.rsplit("/", 1)[1]
    yield dsn, f"postgresql://{login}@127.0.0.1:{postgres_server.port}/{database}"
    drop_database(postgres_server, dsn)
    run(admin(f"DROP ROLE {login}"))


# ------------------------------------------------------------------------------- Redis


def test_the_acl_rules_are_the_ones_the_readme_and_the_chart_give() -> None:
    readme = (REPO / "README.md").read_text()
    values = (REPO / "helm" / "pkg-operator" / "values.yaml").read_text()
    assert f"user pkg-sidecar {SIDECAR_ACL_RULES} >" in readme
    assert f'sidecarRules: "{SIDECAR_ACL_RULES}"' in values


def test_the_sidecar_user_reads_levels_and_writes_heartbeats_only(
    redis_server: RedisServer, acl_user: tuple[str, str]
) -> None:
    async def go() -> None:
        admin = Redis.from_url(redis_server.url())
        sidecar = Redis.from_url(user_url(redis_server, acl_user))
        try:
            await admin.set("pkg:desired:prod", '{"epoch": 1}')
            # Allowed: what a sidecar does.
            assert await sidecar.get("pkg:desired:prod") == b'{"epoch": 1}'
            assert await sidecar.mget(["pkg:desired:prod", "pkg:facts:x"]) == [
                b'{"epoch": 1}',
                None,
            ]
            assert await sidecar.set("pkg:hb:prod:acl-device", "{}", ex=5)
            assert await sidecar.xadd("pkg:heartbeats", {"hb": "{}"}, maxlen=100, approximate=True)
            pubsub = sidecar.pubsub()
            await pubsub.subscribe("pkg_updates")
            await pubsub.aclose()
            # Refused: rewriting the fleet's desired state or telling it what to run.
            refused = [
                sidecar.set("pkg:desired:prod", '{"epoch": 999}'),
                sidecar.delete("pkg:desired:prod"),
                sidecar.publish("pkg_updates", "activate:rules@6.6.6"),
                sidecar.set("pkg:epoch", "9223372036854775807"),
                sidecar.eval("return redis.call('SET', KEYS[1], 'x')", 1, "pkg:desired:prod"),
                sidecar.get("other:key"),
                sidecar.flushall(),
            ]
            for call in refused:
                with pytest.raises(NoPermissionError):
                    await call
            pubsub = sidecar.pubsub()
            await pubsub.subscribe("another_channel")
            with pytest.raises(NoPermissionError):  # the refusal is the reply to SUBSCRIBE
                await pubsub.get_message(timeout=2)
            await pubsub.aclose()
            assert await admin.get("pkg:desired:prod") == b'{"epoch": 1}'
        finally:
            await admin.delete("pkg:desired:prod", "pkg:hb:prod:acl-device")
            await admin.aclose()
            await sidecar.aclose()

    run(go())


# ------------------------------------------------------------------------------ PostgreSQL


def test_the_reader_role_reads_a_snapshot_and_is_refused_every_write(
    reader_dsn: tuple[str, str],
) -> None:
    admin_dsn, sidecar_dsn = reader_dsn
    version = f"rules@1.0.0-ro-{uuid.uuid4().hex[:6]}"
    store_snapshots(admin_dsn, [spec(version)], promote=version)

    async def go() -> None:
        async with PKGClient(sidecar_dsn, env="prod", max_size=1) as client:
            snapshot = await client.get_active_snapshot()
            assert snapshot is not None
            assert snapshot.version == version
            assert (await client.get_snapshot_by_version(version)) is not None
        conn = await asyncpg.connect(sidecar_dsn)
        try:
            for sql in (
                "UPDATE pkg_snapshots SET is_active = false",
                "INSERT INTO pkg_facts (snapshot_id, subject, predicate, object) "
                "SELECT id, 's', 'p', '{}'::jsonb FROM pkg_snapshots LIMIT 1",
                "DELETE FROM pkg_policy_rules",
                "SELECT * FROM pkg_promotions",
                "SELECT * FROM pkg_audit_log",
                "SELECT nextval('pkg_desired_epoch_seq')",
                "CREATE TABLE pkg_sneaky (id int)",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(sql)
            snapshot_id = await conn.fetchval("SELECT id FROM pkg_snapshots LIMIT 1")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("SELECT pkg_rollback_snapshot($1::pkg_env, 'x', 'x')", "prod")
            assert snapshot_id is not None
        finally:
            await conn.close()

    run(go())


def test_migration_0008_runs_again_on_a_server_where_the_role_exists(
    postgres_server: PostgresServer, pkg_template_db: str
) -> None:
    # The role is the server's, the grants each database's: a second database (here a
    # copy of the template, re-running the migration's body) keeps both.
    dsn = create_database(postgres_server, pkg_template_db)
    body = (REPO / "migrations" / "0008_pkg_sidecar_reader.sql").read_text()
    body = body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")

    async def go() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await conn.execute(body)
            return list(
                await conn.fetch(
                    "SELECT table_name FROM information_schema.role_table_grants "
                    "WHERE grantee = 'pkg_sidecar_reader' ORDER BY 1"
                )
            )
        finally:
            await conn.close()

    try:
        tables = [row["table_name"] for row in run(go())]
    finally:
        drop_database(postgres_server, dsn)
    assert tables == sorted(
        [
            "pkg_facts",
            "pkg_facts_versions",
            "pkg_policy_rules",
            "pkg_rule_conditions",
            "pkg_rule_emissions",
            "pkg_snapshot_artifacts",
            "pkg_snapshots",
            "pkg_subtask_types",
            "pkg_validation_fixtures",
        ]
    )


# --------------------------------------------------------------------- a real sidecar


def test_a_sidecar_under_both_identities_activates_follows_and_heartbeats(
    tmp_path: Path,
    redis_server: RedisServer,
    acl_user: tuple[str, str],
    reader_dsn: tuple[str, str],
) -> None:
    admin_dsn, sidecar_dsn = reader_dsn
    tag = uuid.uuid4().hex[:6]
    v1, v2 = f"rules@1.0.0-lp-{tag}", f"rules@2.0.0-lp-{tag}"
    store_snapshots(admin_dsn, [spec(v1), spec(v2)], promote=v1)
    device = f"lp-{tag}"
    sidecar = Sidecar(
        tmp_path,
        device_id=device,
        database_url=sidecar_dsn,
        redis_url=user_url(redis_server, acl_user),
        target=f"lp-{tag}",
    ).start()

    async def admin(*args: Any) -> Any:
        client = Redis.from_url(redis_server.url())
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()

    def heartbeat() -> dict[str, Any]:
        raw = run(admin("GET", f"pkg:hb:prod:{device}"))
        return {} if raw is None else dict(json.loads(raw))

    try:
        wait_for(lambda: sidecar.version() == v1, timeout=30, what=f"the sidecar to run {v1}")

        wait_for(
            lambda: heartbeat().get("version") == v1,
            timeout=15,
            what="a heartbeat reporting v1",
        )
        run(admin("PUBLISH", "pkg_updates", f"activate:{v2}"))
        wait_for(lambda: sidecar.version() == v2, timeout=30, what=f"the sidecar to run {v2}")
        assert sidecar.evaluated_version() == v2
        wait_for(
            lambda: heartbeat().get("version") == v2,
            timeout=15,
            what="a heartbeat reporting v2",
        )
        # The one refusal a sidecar meets is the epoch floor, skipped from then on.
        refused = [line for line in sidecar.log().splitlines() if "NOPERM" in line]
        assert all("epoch_floor_not_permitted" in line for line in refused), refused
    finally:
        sidecar.stop()
